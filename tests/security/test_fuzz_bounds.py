"""Issue 31's classes of hostile input (`hostile.py`): every case is refused in one line naming
its file, within `harness.PER_FILE_S` seconds and under `harness.RSS_LIMIT_MIB`, in a child
that is killed from outside past either; the valid case of each class still loads.

Keys and bombs go to the `.pth` reader, headers to the safetensors reader (address space
capped at 1 GiB, peak RSS asserted lower), shard folders to `read_tensors` and config folders
to `load_depth_anything` (one jax child for both).
"""

import time

import jax
import numpy as np
import pytest
from harness import READER_ERRORS, judge, run_cases, write_cases
from hostile import (
    SECRET,
    TINY_CONFIG,
    bomb_cases,
    config_cases,
    header_cases,
    key_cases,
    shard_cases,
    small_cases,
)

PEAK_RSS_MIB = 400  # numpy-only children
GENERATORS = {"keys": key_cases, "bombs": bomb_cases, "small": small_cases}


def _check(kind, cases, peak_mib=None) -> list[dict]:
    start = time.perf_counter()
    results = run_cases(kind, [c.path for c in cases])
    problems = judge(results, cases, allowed=None if kind == "model" else READER_ERRORS)
    assert len(results) == len(cases)
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
    peak = max(r.get("peak_rss_mib", 0) for r in results)
    if peak_mib is not None:
        assert peak < peak_mib, f"child peak RSS {peak:.0f} MiB"
    print(f"{kind}: {len(cases)} cases in {time.perf_counter() - start:.1f}s, peak {peak:.0f} MiB")
    return results


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.slow
def test_hostile_pickles_are_refused_in_one_line(name, tmp_path):
    _check("pth", write_cases(tmp_path, GENERATORS[name](), ".pth"), PEAK_RSS_MIB)


def test_oversized_safetensors_headers_are_refused(tmp_path):
    _check("safetensors", header_cases(str(tmp_path)), PEAK_RSS_MIB)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """(official tensors, Orbax params folder) of the model `TINY_CONFIG` describes."""
    from dajax import checkpoints
    from dajax.models import DepthAnything, ModelConfig, param_shapes
    from dajax.weights.depth_anything_keys import flax_to_official

    config = ModelConfig.from_dict(TINY_CONFIG)
    shapes = param_shapes(DepthAnything(config))
    params = jax.tree.map(lambda s: np.full(s.shape, 0.01, s.dtype), shapes)
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    checkpoints.save_inference_params(folder, params, config)
    return flax_to_official(params), str(folder / "params")


@pytest.mark.slow
def test_shards_and_config_files_are_refused(tmp_path, tiny_checkpoint):
    (tmp_path / "shards").mkdir()
    (tmp_path / "configs").mkdir()
    cases = shard_cases(str(tmp_path / "shards"))
    cases += config_cases(str(tmp_path / "configs"), *tiny_checkpoint)
    results = _check("model", cases)
    leaks = (SECRET[:6].decode(), str(int.from_bytes(SECRET[:8], "little")))
    for r in results:  # no file bytes in messages, as text or as a number
        assert not any(leak in (r["message"] or "") for leak in leaks), r
