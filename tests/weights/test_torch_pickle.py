"""The torch-free `.pth` reader: exact tensors, wrappers, and refusal of pickled code."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from dajax.weights.torch_pickle import (
    CheckpointFormatError,
    UnsafeCheckpointError,
    load_pth,
    load_state_dict,
)


def test_tensors_of_every_dtype_views_and_shared_storage(tmp_path):
    base = torch.randn(10, 6)
    saved = {
        "f32": base,
        "view": base[2:5, 1:4],  # storage offset + strides, shares `base`'s storage
        "transposed": base.t(),
        "f16": torch.randn(3).half(),
        "bf16": torch.randn(4).bfloat16(),
        "f64": torch.randn(2).double(),
        "i64": torch.arange(4),
        "i8": torch.tensor([-3, 4], dtype=torch.int8),
        "u8": torch.tensor([250], dtype=torch.uint8),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    torch.save(saved, tmp_path / "t.pth")
    loaded = load_pth(tmp_path / "t.pth")
    for name, tensor in saved.items():
        expect = tensor.detach().float().numpy()
        assert loaded[name].shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(loaded[name].astype(np.float32), expect, err_msg=name)
    assert loaded["bf16"].dtype.name == "bfloat16" and loaded["i8"].dtype == np.int8


def test_state_dict_unwraps_and_flattens(tmp_path):
    torch.save(
        {"model": {"module.a": torch.ones(2), "sub": {"b": torch.zeros(1)}}, "epoch": 3},
        tmp_path / "w.pth",
    )
    sd = load_state_dict(tmp_path / "w.pth")
    assert sorted(sd) == ["a", "sub.b"]


def _malicious_pth(path, marker):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"echo pwned > {marker}",))

    buf = io.BytesIO()
    pickle.Pickler(buf, protocol=2).dump({"weight": Exploit()})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    _malicious_pth(tmp_path / "evil.pth", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*(posix|os)\.system"):
        load_pth(tmp_path / "evil.pth")
    assert not marker.exists()


def test_corrupt_and_legacy_files(tmp_path):
    (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointFormatError, match="legacy"):
        load_pth(tmp_path / "legacy.pth")
    torch.save({"a": torch.ones(100)}, tmp_path / "ok.pth")
    with (
        zipfile.ZipFile(tmp_path / "ok.pth") as src,
        zipfile.ZipFile(tmp_path / "nostorage.pth", "w") as dst,
    ):
        for item in src.namelist():
            if "/data/" not in item:
                dst.writestr(item, src.read(item))
    with pytest.raises(CheckpointFormatError, match="missing storage"):
        load_pth(tmp_path / "nostorage.pth")
    with zipfile.ZipFile(tmp_path / "nopkl.pth", "w") as z:
        z.writestr("archive/version", "3")
    with pytest.raises(CheckpointFormatError, match="no data.pkl"):
        load_pth(tmp_path / "nopkl.pth")


def test_training_checkpoints_with_int_keys_and_module_metadata_load(tmp_path):
    """The key rule (short strs, bounded ints, flat tuples of them) and the object budget keep
    what torch writes: `state_dict()` OrderedDicts with `_metadata` (REDUCE + BUILD + SETITEMS)
    and optimiser states keyed by parameter number."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3},
        tmp_path / "train.pth",
    )
    loaded = load_pth(tmp_path / "train.pth")
    assert sorted(loaded["optimizer"]["state"]) == [0, 1, 2, 3]
    assert sorted(load_state_dict(tmp_path / "train.pth")) == [
        "0.bias", "0.weight", "1.bias", "1.weight",
    ]  # fmt: skip


def test_booleans_other_than_zero_and_one_are_refused(tmp_path):
    """Issue 31 #5: safetensors refused them, `.pth` bool storages took any byte."""
    torch.save({"mask": torch.tensor([True, False, True])}, tmp_path / "b.pth")
    with zipfile.ZipFile(tmp_path / "b.pth") as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    storage = next(name for name in members if "/data/" in name)
    members[storage] = b"\x01\x07\x01"
    with zipfile.ZipFile(tmp_path / "bad.pth", "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    np.testing.assert_array_equal(load_pth(tmp_path / "b.pth")["mask"], [True, False, True])
    with pytest.raises(CheckpointFormatError, match="holds booleans other than 0 and 1"):
        load_pth(tmp_path / "bad.pth")
