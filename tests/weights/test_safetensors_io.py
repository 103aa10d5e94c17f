"""The NumPy safetensors reader/writer against the `safetensors` package."""

import numpy as np
import pytest
import safetensors.torch
import torch

from dajax.weights.safetensors_io import (
    SafetensorsError,
    load_safetensors,
    read_safetensors_metadata,
    save_safetensors,
)


def test_reads_files_written_by_safetensors(tmp_path):
    tensors = {
        "bf16": torch.randn(3, 4).bfloat16(),
        "f16": torch.randn(2).half(),
        "f32": torch.randn(2, 2, 2),
        "i64": torch.arange(5),
        "bool": torch.tensor([True, False]),
    }
    safetensors.torch.save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
    loaded = load_safetensors(tmp_path / "m.safetensors")
    for name, t in tensors.items():
        np.testing.assert_array_equal(loaded[name].astype(np.float32), t.float().numpy())
    assert read_safetensors_metadata(tmp_path / "m.safetensors") == {"format": "pt"}


def test_written_files_load_in_safetensors(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.int32)}
    save_safetensors(tmp_path / "o.safetensors", arrays, metadata={"k": "v"})
    back = safetensors.torch.load_file(tmp_path / "o.safetensors")
    np.testing.assert_array_equal(back["a"].numpy(), arrays["a"])
    assert back["b"].dtype == torch.int32


def test_truncated_and_corrupt_files_name_the_file(tmp_path):
    safetensors.torch.save_file({"w": torch.ones(64)}, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(SafetensorsError, match=r"cut\.safetensors.*truncated"):
        load_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(SafetensorsError, match="not valid JSON"):
        load_safetensors(tmp_path / "junk.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01")
    with pytest.raises(SafetensorsError, match="truncated"):
        load_safetensors(tmp_path / "tiny.safetensors")
