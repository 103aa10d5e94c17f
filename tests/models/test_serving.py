"""`jax.export` serving artifacts: symbolic batch, reload without the model code."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from hf_oracle import tiny_config

from dajax import serving
from dajax.models import DepthAnything, init_params

RELOAD = """
import sys, numpy as np
from dajax.serving import load_served
run = load_served(sys.argv[1])
for b in (1, 3):
    x = np.load(sys.argv[2])[:b]
    np.save(sys.argv[3] + f"_{b}.npy", np.asarray(run(x)))
assert not any(m.startswith("dajax.models") or m == "flax" for m in sys.modules), "model code"
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = tiny_config()
    params = init_params(DepthAnything(config), jax.random.key(0))
    out = tmp_path_factory.mktemp("served")
    serving.export_network(config, params, str(out), 28, 42)
    return config, params, out


@pytest.mark.slow
def test_reloads_in_a_fresh_process_without_model_code(exported, tmp_path):
    config, params, out = exported
    x = np.random.default_rng(0).normal(size=(3, 28, 42, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, "-c", RELOAD, str(out), str(tmp_path / "x.npy"), str(tmp_path / "y")],
        check=True,
        env=env,
    )
    want = np.asarray(DepthAnything(config).apply({"params": params}, x))
    for b in (1, 3):
        got = np.load(tmp_path / f"y_{b}.npy")
        assert got.shape == (b, 28, 42)
        np.testing.assert_allclose(got, want[:b], rtol=1e-5, atol=1e-6)


def test_wrong_input_and_missing_files_are_named(exported, tmp_path):
    _, _, out = exported
    run = serving.load_served(str(out))
    with pytest.raises(ValueError, match=r"expects \[B, 28, 42, 3\]"):
        run(np.zeros((1, 28, 28, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="model.jaxexport"):
        serving.load_served(str(tmp_path))


@pytest.mark.slow
def test_bfloat16_export_round_trips_the_weights(tmp_path):
    config = tiny_config()
    params = init_params(DepthAnything(config), jax.random.key(1))
    serving.export_network(config, params, str(tmp_path), 28, 28, dtype="bfloat16")
    x = np.random.default_rng(1).normal(size=(2, 28, 28, 3)).astype(np.float32)
    got = np.asarray(serving.load_served(str(tmp_path))(x))
    want = np.asarray(DepthAnything(config).apply({"params": params}, x))
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    with pytest.raises(ValueError, match="multiples of 14"):
        serving.export_network(config, params, str(tmp_path), 30, 28)


@pytest.mark.perf
@pytest.mark.slow
def test_attention_is_chosen_per_platform_when_lowered(tmp_path):
    """168² gives 145 tokens, more than one query block: on a CPU the graph runs the blocked
    kernel (a loop over query blocks), on CUDA XLA's plain attention; both from one export."""
    config = tiny_config()
    params = init_params(DepthAnything(config), jax.random.key(2))
    loops = {}
    for platforms in (("cpu",), ("cuda",), ("cpu", "cuda")):
        out = tmp_path / "_".join(platforms)
        serving.export_network(config, params, str(out), 168, 168, platforms=platforms)
        with open(out / serving.GRAPH_FILE, "rb") as f:
            module = jax.export.deserialize(bytearray(f.read())).mlir_module()
        loops[platforms] = module.count("stablehlo.while")
    assert loops[("cuda",)] == 0 < loops[("cpu",)] <= loops[("cpu", "cuda")]
    x = np.random.default_rng(2).normal(size=(2, 168, 168, 3)).astype(np.float32)
    got = np.asarray(serving.load_served(str(tmp_path / "cpu_cuda"))(x))
    model = DepthAnything(config, attention="chunked")
    want = np.asarray(model.apply({"params": params}, x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
