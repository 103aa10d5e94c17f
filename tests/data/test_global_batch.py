"""Batch sizes are global: any number of processes reads the same images in the same steps,
each process its contiguous share, and a batch they cannot share is refused in one line."""

import jax
import numpy as np
import pytest

from dajax import sharding
from dajax.data import pipeline


class _Numbered:
    """Records whose image carries the record index in pixel (0, 0)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = np.full((30, 30, 3), 7, np.uint8)
        image[..., 0] = i
        return {
            "image": image,
            "depth": np.ones((30, 30), np.float32) + i,
            "mask": image[..., 1] > 0,
        }


def _steps(monkeypatch, processes: int, steps: int = 4) -> list[dict]:
    """The batches of each step, the processes' shares joined in process order."""
    monkeypatch.setattr(jax, "process_count", lambda: processes)
    shares = []
    for p in range(processes):
        monkeypatch.setattr(jax, "process_index", lambda p=p: p)
        labeled = pipeline.labeled_dataset(
            [_Numbered(37), _Numbered(11)], [2.0, 1.0], size=28, batch_size=8, seed=3
        )
        unlabeled = pipeline.unlabeled_dataset(_Numbered(23), size=28, batch_size=16, seed=5)
        it = pipeline.StudentBatches(labeled, unlabeled)
        shares.append([next(it) for _ in range(steps)])
    return [
        {k: np.concatenate([s[step][k] for s in shares]) for k in shares[0][step]}
        for step in range(steps)
    ]


def test_one_two_and_four_processes_see_the_same_images_per_step(monkeypatch):
    one = _steps(monkeypatch, 1)
    for processes in (2, 4):
        many = _steps(monkeypatch, processes)
        for want, got in zip(one, many, strict=True):
            assert got["l_image"].shape[0] == 8 and got["u_image"].shape[0] == 16
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    images = np.concatenate([s["u_image"][:, 0, 0, 0] for s in one])
    assert len(set(images.tolist())) > 16  # the steps read different records


def test_a_global_batch_the_processes_or_devices_cannot_share_is_one_line(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(
        ValueError,
        match="config.data.labeled_batch: a global batch of 8 does not divide over 3 process",
    ):
        pipeline.labeled_dataset([_Numbered(5)], None, size=28, batch_size=8, seed=0)
    monkeypatch.setattr(jax, "process_count", lambda: 1)
    with pytest.raises(
        ValueError,
        match=r"over 1 process\(es\) and 8 device\(s\); set it to a "
        "multiple of 8",
    ):
        pipeline.batch_plan("unlabeled", 12, 100, 10)
    assert sharding.process_batch_size(16, devices=True) == 16


def test_the_batch_plan_counts_epochs_over_the_labeled_set():
    line = pipeline.batch_plan("labeled", 64, 1_500_000, 468_750)
    assert line == (
        "labeled: global batch 64 (64 per process x 1); 468750 steps read 30,000,000 images = "
        "20.00 epochs over 1,500,000"
    )
