"""16-bit depth PNGs round-trip their values."""

import os

import numpy as np
import pytest
from PIL import Image

from dajax.io.depth_png import read_depth_png16, write_depth_png16


def test_round_trip_within_half_a_code(tmp_path):
    depth = np.random.RandomState(0).uniform(0.3, 12.0, (20, 30)).astype(np.float32)
    scale, offset = write_depth_png16(tmp_path / "d.png", depth, quantity="depth_m")
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    back = read_depth_png16(tmp_path / "d.png")
    assert np.abs(back - depth).max() <= 0.5 / scale + 1e-6
    assert offset == pytest.approx(depth.min())


def test_sidecar_json_is_used_without_the_text_chunk(tmp_path):
    depth = np.linspace(0, 1, 50, dtype=np.float32).reshape(5, 10)
    scale, _ = write_depth_png16(tmp_path / "d.png", depth)
    codes = np.asarray(Image.open(tmp_path / "d.png"))
    Image.fromarray(codes).save(tmp_path / "d.png")  # re-save drops the text chunk
    assert np.abs(read_depth_png16(tmp_path / "d.png") - depth).max() <= 0.5 / scale + 1e-6
    os.remove(tmp_path / "d.json")
    with pytest.raises(ValueError, match="sidecar"):
        read_depth_png16(tmp_path / "d.png")


def test_constant_and_non_finite_maps(tmp_path):
    write_depth_png16(tmp_path / "c.png", np.full((4, 4), 2.5))
    np.testing.assert_allclose(read_depth_png16(tmp_path / "c.png"), 2.5)
    with pytest.raises(ValueError, match="NaN/Inf"):
        write_depth_png16(tmp_path / "n.png", np.array([[1.0, np.nan]]))
