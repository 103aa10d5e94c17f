"""Each hostile-checkpoint defect of issue 22 (#1, #2, #7, #8), reproduced.

Repros that crashed, hung or exhausted memory in the old reader run in a child process
(`harness.run_cases`: killed from outside past a time or memory limit) so they fail as tests,
not as a dead test runner.
"""

import json
import os
import pickle
import time

import numpy as np
import pytest
from harness import run_cases
from pth_builder import Call, Raw, Shared, base_checkpoint, dumps, tensor, write_pth

from dajax.weights.safetensors_io import SafetensorsError, load_safetensors
from dajax.weights.torch_pickle import CheckpointFormatError, load_pth, load_state_dict


def _load_in_child(path) -> dict:
    """The child's result for one file (`harness.run_cases`: time and memory policed)."""
    (result,) = run_cases("pth", [str(path)])
    assert result["outcome"] in ("ok", "error"), result
    return result


def _assert_refused(result: dict, path, *needles):
    assert result["outcome"] == "error", result
    assert result["error_type"] == "CheckpointFormatError", result
    assert result["message"].startswith(f"{path}: ") and "\n" not in result["message"]
    for needle in needles:
        assert needle in result["message"], result["message"]


def test_negative_stride_is_refused_not_a_segfault(tmp_path):
    """Issue 22 #1: this ~700-byte file made the old reader segfault (rc 139)."""
    path = write_pth(
        tmp_path / "seg.pth",
        dumps({"w": tensor("0", 4, 3, (1000,), (-(2**31),))}),
        {"0": bytes(16)},
    )
    assert os.path.getsize(path) < 1000
    _assert_refused(_load_in_child(path), path, "stride -2147483648")


def test_negative_offset_does_not_read_outside_the_storage(tmp_path):
    path = write_pth(
        tmp_path / "neg.pth", dumps({"w": tensor("0", 4, -1000, (4,), (1,))}), {"0": bytes(16)}
    )
    with pytest.raises(CheckpointFormatError, match="offset -1000 is outside"):
        load_pth(path)


def test_view_past_the_storage_end_is_refused(tmp_path):
    path = write_pth(
        tmp_path / "past.pth", dumps({"w": tensor("0", 4, 1, (2, 2), (2, 1))}), {"0": bytes(16)}
    )
    with pytest.raises(CheckpointFormatError, match="reaches element 4 of a storage of 4"):
        load_pth(path)


def test_stride_zero_blow_up_is_refused_before_allocating(tmp_path):
    """Issue 22 #2: 4 bytes of storage declared as a 4 GiB tensor."""
    path = write_pth(
        tmp_path / "zero.pth",
        dumps({"w": tensor("0", 1, 0, (2**15, 2**15), (0, 0))}),
        {"0": bytes(4)},
    )
    assert os.path.getsize(path) < 1000
    _assert_refused(_load_in_child(path), path, "4294967296 bytes")


def test_dicts_sharing_children_are_refused_at_once(tmp_path):
    """Issue 22 #2: 60 levels of dicts sharing one child are 2**60 entries as a tree."""
    node = {"w": tensor("0", 1, 0, (1,), (1,))}
    for _ in range(60):
        shared = Shared(node)
        node = {"a": shared, "b": shared}
    path = write_pth(tmp_path / "dag.pth", dumps({"model": node}), {"0": bytes(4)})
    assert os.path.getsize(path) < 2500
    result = _load_in_child(path)
    _assert_refused(result, path, "shared many times")
    assert result["seconds"] < 1


def test_tuple_keys_that_hash_forever_are_refused(tmp_path):
    node = (1,)
    for _ in range(60):
        shared = Shared(node)
        node = (shared, shared)
    path = write_pth(tmp_path / "hash.pth", dumps({node: 1}), {})
    _assert_refused(_load_in_child(path), path, "dict key of type tuple")


@pytest.mark.parametrize("opcodes", ["lists", "dicts"])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path, opcodes):
    """Issue 22 #2: 100k-deep nesting raised RecursionError."""
    n = 100_000
    raw = (
        Raw(pickle.EMPTY_LIST * n + pickle.APPEND * (n - 1))
        if opcodes == "lists"
        else Raw(b"}X\x01\x00\x00\x00k" * n + b"N" + pickle.SETITEM * n)
    )
    path = write_pth(tmp_path / "deep.pth", dumps({"model": raw}), {})
    with pytest.raises(CheckpointFormatError, match="nest deeper than 100 levels"):
        load_state_dict(path)


@pytest.mark.parametrize(
    "args, needle",
    [
        ((5, 0, (3,), (1,)), "storage is a int"),
        (("s", "0", (3,), (1,)), "storage is a str"),
        ((None, 0, None, (1,)), "storage is a NoneType"),
        (("s",), "with 1 argument; it takes"),
    ],
)
def test_wrong_argument_types_are_one_line(tmp_path, args, needle):
    """Issue 22 #7: TypeError / IndexError tracebacks from wrong argument types."""
    call = Call("torch._utils", "_rebuild_tensor_v2", args)
    path = write_pth(tmp_path / "types.pth", dumps({"w": call}), {})
    with pytest.raises(CheckpointFormatError, match=needle) as err:
        load_state_dict(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_truncated_download_is_called_truncated_with_its_size(tmp_path):
    """Issue 21 #5 / 22 #7: not "legacy pre-1.6"."""
    tree, storages, _ = base_checkpoint()
    full = write_pth(tmp_path / "full.pth", dumps(tree), storages).read_bytes()
    cut = tmp_path / "partial.pth"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(CheckpointFormatError) as err:
        load_pth(cut)
    msg = str(err.value)
    assert "truncated or corrupt" in msg and f"({len(full) // 2} bytes" in msg
    assert "legacy" not in msg and "partial download" in msg


def test_valid_checkpoint_built_by_hand_matches_torch(tmp_path):
    """The fuzz base file is a real torch checkpoint: torch.load reads the same tensors."""
    torch = pytest.importorskip("torch")
    tree, storages, expected = base_checkpoint()
    path = write_pth(tmp_path / "base.pth", dumps(tree), storages)
    ours, theirs = load_state_dict(path), torch.load(path, weights_only=True)["model"]
    for name, want in expected.items():
        np.testing.assert_array_equal(ours[name].astype(np.float32), want.astype(np.float32))
        np.testing.assert_array_equal(theirs[name].float().numpy(), want.astype(np.float32))


def test_real_size_pickle_loads_quickly(tmp_path):
    """The pure-Python unpickler costs little on a ViT-L-sized state dict (~600 tensors)."""
    torch = pytest.importorskip("torch")
    state = {f"blocks.{i}.w{j}": torch.zeros(2, 3) for i in range(150) for j in range(4)}
    torch.save(state, tmp_path / "many.pth")
    start = time.perf_counter()
    assert len(load_state_dict(tmp_path / "many.pth")) == 600
    assert time.perf_counter() - start < 2


def test_safetensors_overlapping_tensors_are_refused(tmp_path):
    """Issue 22 #8: a second tensor reading the same bytes as another dtype was accepted."""
    data = np.arange(4, dtype=np.float32).tobytes()
    header = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]},
    }
    text = json.dumps(header).encode()
    path = tmp_path / "overlap.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    with pytest.raises(SafetensorsError, match="overlap the tensor before it"):
        load_safetensors(path)


@pytest.mark.parametrize("shape", [[4.7], ["4"], [-2, -2], [2**62, 4, 1]])
def test_safetensors_shapes_must_be_counts(tmp_path, shape):
    text = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}}).encode()
    path = tmp_path / "shape.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + bytes(16))
    with pytest.raises(SafetensorsError, match="shape"):
        load_safetensors(path)


@pytest.mark.parametrize("cli", ["convert", "serving"])
def test_clis_print_one_line_for_the_segfault_file(tmp_path, capsys, cli):
    """Issue 22 #1 end to end: `python -m dajax.convert` / `dajax.serving --weights` exited
    with signal 11 on this file; now they exit non-zero with one line."""
    from dajax import convert, serving

    path = write_pth(
        tmp_path / "depth_anything_v2_vits.pth",
        dumps({"w": tensor("0", 4, 3, (1000,), (-(2**31),))}),
        {"0": bytes(16)},
    )
    out = str(tmp_path / "out")
    argv = [str(path), out] if cli == "convert" else ["--weights", str(path), "--out", out]
    assert (convert if cli == "convert" else serving).main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: ") and "\n" not in err, err


def test_keys_made_through_ordered_dict_are_checked_like_any_key(tmp_path):
    """Issue 31 #1: a ~1.7 KB file made a 100k-deep tuple the key of an OrderedDict through
    REDUCE, which the key rule never saw; hashing it crashed `predict` and `convert` (139)."""
    deep = Raw(b")" + b"\x85" * 100_000)
    call = Call("collections", "OrderedDict", ([(deep, 1)],))
    path = write_pth(tmp_path / "deep-key.pth", dumps({"w": call}), {})
    result = _load_in_child(path)
    _assert_refused(result, path, "dict key of type tuple breaks the key rule")
    assert result["seconds"] < 1


@pytest.mark.parametrize(
    "args, needle",
    [
        ((5,), "OrderedDict of a int, not of a dict or (key, value) pairs"),
        (([(1, 2, 3)],), "OrderedDict of something other than (key, value) pairs"),
        (({}, {}), "REDUCE calls collections.OrderedDict with 2 arguments; it takes (items=())"),
    ],
)
def test_malformed_ordered_dict_reduce_says_what_is_wrong(tmp_path, args, needle):
    """Issue 31 #5: every malformed REDUCE said "OrderedDict got 1 arguments it does not take"."""
    call = Call("collections", "OrderedDict", args)
    path = write_pth(tmp_path / "od.pth", dumps({"w": call}), {})
    with pytest.raises(CheckpointFormatError) as err:
        load_pth(path)
    assert str(err.value) == f"{path}: {needle}"
