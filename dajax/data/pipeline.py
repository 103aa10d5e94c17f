"""grain input pipelines: labeled mixtures, unlabeled/pseudo-labeled sets, student batches.

Every pipeline is `MapDataset.source(...)[process_index::process_count]` (disjoint
per-process shards), seeded shuffle, repeat, a picklable random transform, a per-process
batch, then an `IterDataset` with optional multiprocess prefetch. Iterators are
checkpointable (`get_state` / `set_state`), and `StudentBatches` combines the labeled and
unlabeled iterators into one whose state holds both, so a resumed run sees exactly the
batches an uninterrupted one would have.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grain
import jax
import numpy as np

from dajax.data.transforms import LabeledTrainTransform, UnlabeledTrainTransform


def _process_shard(source) -> grain.MapDataset:
    ds = grain.MapDataset.source(source)
    if len(ds) == 0:
        raise ValueError(f"{type(source).__name__}: the data source is empty")
    shard = ds[jax.process_index() :: jax.process_count()]
    if len(shard) == 0:
        raise ValueError(
            f"{type(source).__name__}: {len(ds)} records cannot feed {jax.process_count()} "
            "processes"
        )
    return shard


def _finish(ds: grain.MapDataset, batch_size: int, workers: int) -> grain.IterDataset:
    it = ds.batch(batch_size, drop_remainder=True).to_iter_dataset(
        grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
    )
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
    """Per-process batches `{image [b,S,S,3] uint8, target [b,S,S] float32, mask [b,S,S]}`.

    Args:
      sources: labeled random-access sources (records with image/depth/mask).
      weights: mixture weights (None = equal weights).
      size: square crop side (518 in the paper).
      batch_size: per-process batch.
      seed: shuffling and augmentation seed.
      flip: random horizontal flips.
      target: 'disparity' (normalised, relative training) or 'depth' (metres, metric).
      workers: grain worker processes (0 = in-process threads).
    """
    parts = [_process_shard(s).seed(seed + i).shuffle().repeat() for i, s in enumerate(sources)]
    mixed = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
    mixed = mixed.random_map(LabeledTrainTransform(size, flip, target), seed=seed)
    return _finish(mixed, batch_size, workers)


def unlabeled_dataset(
    source, *, size: int, batch_size: int, seed: int, workers: int = 0
) -> grain.IterDataset:
    """Per-process batches `{image [b,S,S,3] uint8}` (+ `pseudo [b,S,S]` when labeled)."""
    ds = _process_shard(source).seed(seed).shuffle().repeat()
    ds = ds.random_map(UnlabeledTrainTransform(size), seed=seed + 1)
    return _finish(ds, batch_size, workers)


class StudentBatches:
    """Joins a labeled and an unlabeled iterator: yields `{'labeled': ..., 'unlabeled': ...}`
    flattened to `l_<key>` / `u_<key>` so each value is a batch array.

    Its state (for grain's Orbax handler) is the JSON of both member states.
    """

    def __init__(self, labeled: grain.IterDataset, unlabeled: grain.IterDataset):
        self._labeled, self._unlabeled = iter(labeled), iter(unlabeled)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = {f"l_{k}": v for k, v in next(self._labeled).items()}
        batch.update({f"u_{k}": v for k, v in next(self._unlabeled).items()})
        return batch

    def get_state(self) -> bytes:
        """Both iterators' positions, as JSON bytes."""
        state = {"labeled": self._labeled.get_state(), "unlabeled": self._unlabeled.get_state()}
        return json.dumps(state).encode()

    def set_state(self, state: bytes) -> None:
        """Restores the positions saved by `get_state`."""
        decoded = json.loads(state)
        self._labeled.set_state(decoded["labeled"])
        self._unlabeled.set_state(decoded["unlabeled"])

    def start_prefetch(self) -> None:
        """Called by grain's checkpoint handler after a restore."""
        for it in (self._labeled, self._unlabeled):
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()
