"""grain input pipelines: labeled mixtures, unlabeled/pseudo-labeled sets, student batches.

Batch sizes are global: every process builds the same stream (seeded shuffle, repeat, a
picklable random transform seeded per record), cut into global batches, and takes its
contiguous share of each: process p of P gets rows [p·b, (p+1)·b) of every global batch,
b = global / P. Records outside a process's share are never read or transformed there. So a
run sees the same images in the same steps on 1 process or on 32, and the config's numbers
(batch, steps, schedule) mean the same thing on both. Iterators are checkpointable
(`get_state` / `set_state`), and `StudentBatches` combines the labeled and unlabeled
iterators into one whose state holds both, so a resumed run sees exactly the batches an
uninterrupted one would have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grain
import jax
import numpy as np

from dajax import sharding
from dajax.data.transforms import LabeledTrainTransform, UnlabeledTrainTransform


def _records(source) -> grain.MapDataset:
    ds = grain.MapDataset.source(source)
    if len(ds) == 0:
        raise ValueError(f"{type(source).__name__}: the data source is empty")
    return ds


def _finish(ds: grain.MapDataset, global_batch: int, workers: int, name: str):
    """This process's share of each global batch of the record stream `ds` (an IterDataset);
    `name` is the config field of `global_batch`, for the error when it does not divide."""
    share = sharding.process_batch_size(global_batch, name)
    mine = ds.batch(share, drop_remainder=True)[jax.process_index() :: jax.process_count()]
    it = mine.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
    if workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it


def labeled_dataset(
    sources: Sequence,
    weights: Sequence[float] | None,
    *,
    size: int,
    batch_size: int,
    seed: int,
    flip: bool = True,
    target: str = "disparity",
    workers: int = 0,
) -> grain.IterDataset:
    """This process's share `{image [b,S,S,3] uint8, target [b,S,S] float32, mask [b,S,S]}`
    of each global batch (b = batch_size / process count).

    Args:
      sources: labeled random-access sources (records with image/depth/mask).
      weights: mixture weights (None = equal weights).
      size: square crop side (518 in the paper).
      batch_size: the global batch, over all processes.
      seed: shuffling and augmentation seed.
      flip: random horizontal flips.
      target: 'disparity' (normalised, relative training) or 'depth' (metres, metric).
      workers: grain worker processes (0 = in-process threads).
    """
    parts = [_records(s).seed(seed + i).shuffle().repeat() for i, s in enumerate(sources)]
    mixed = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
    mixed = mixed.random_map(LabeledTrainTransform(size, flip, target), seed=seed)
    return _finish(mixed, batch_size, workers, "config.data.labeled_batch")


def batch_plan(name: str, global_batch: int, records: int, steps: int) -> str:
    """One log line: a stream's global and per-process batch, and what `steps` steps read.

    Args:
      name: the stream ('labeled', 'unlabeled').
      global_batch: images per step over all processes.
      records: the size of the data behind the stream (its epoch).
      steps: the run's step count.

    Raises:
      ValueError: when the processes and devices cannot share `global_batch` equally (called at
        a stage's start-up, this is the run's first check of its batch).
    """
    share = sharding.process_batch_size(global_batch, f"config.data.{name}_batch", devices=True)
    seen = global_batch * steps
    return (
        f"{name}: global batch {global_batch} ({share} per process "
        f"x {jax.process_count()}); {steps} steps read {seen:,} images = "
        f"{seen / max(records, 1):.2f} epochs over {records:,}"
    )


def unlabeled_dataset(
    source, *, size: int, batch_size: int, seed: int, workers: int = 0
) -> grain.IterDataset:
    """This process's share `{image [b,S,S,3] uint8}` (+ `pseudo [b,S,S]` when labeled) of each
    global batch of `batch_size` (b = batch_size / process count)."""
    ds = _records(source).seed(seed).shuffle().repeat()
    ds = ds.random_map(UnlabeledTrainTransform(size), seed=seed + 1)
    return _finish(ds, batch_size, workers, "config.data.unlabeled_batch")


class StudentBatches:
    """Joins a labeled and an unlabeled iterator: yields `{'labeled': ..., 'unlabeled': ...}`
    flattened to `l_<key>` / `u_<key>` so each value is a batch array. `labeled=None` (V2's
    student, pseudo-labels only) yields the `u_<key>` arrays alone.

    Its state (for grain's Orbax handler) is the JSON of its members' states.
    """

    _PREFIXES = {"labeled": "l_", "unlabeled": "u_"}

    def __init__(self, labeled: grain.IterDataset | None, unlabeled: grain.IterDataset):
        members = {"labeled": labeled, "unlabeled": unlabeled}
        self._members = {name: iter(ds) for name, ds in members.items() if ds is not None}

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return {
            f"{self._PREFIXES[name]}{k}": v
            for name, it in self._members.items()
            for k, v in next(it).items()
        }

    def get_state(self) -> bytes:
        """The members' positions, as JSON bytes."""
        return json.dumps({name: it.get_state() for name, it in self._members.items()}).encode()

    def set_state(self, state: bytes) -> None:
        """Restores the positions saved by `get_state` (of batches with the same members)."""
        decoded = json.loads(state)
        if set(decoded) != set(self._members):
            raise ValueError(
                f"the checkpointed input state holds {sorted(decoded)} iterators but this run "
                f"reads {sorted(self._members)}: resume with the config the run started with"
            )
        for name, it in self._members.items():
            it.set_state(decoded[name])

    def start_prefetch(self) -> None:
        """Called by grain's checkpoint handler after a restore."""
        for it in self._members.values():
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()
