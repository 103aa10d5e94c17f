"""V2's metric training sets on tiny files written here: Hypersim (distance h5 -> planar depth)
and Virtual KITTI 2 (16-bit PNG centimetres), read from `rgb_path depth_path` split lists."""

import cv2
import h5py
import ml_collections
import numpy as np
import pytest

from dajax.data import metric_sources
from dajax.data.metric_sources import HYPERSIM_FOCAL, HYPERSIM_SHAPE
from dajax.data.registry import build_source


def _coded_image(h, w):
    """RGB whose red = row, green = column (mod 256): any transposition shows."""
    rows, cols = np.mgrid[:h, :w]
    return np.stack([rows % 256, cols % 256, np.zeros_like(rows)], -1).astype(np.uint8)


def _write_png(path, rgb):
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def _plane_distance(z, shape, focal):
    """Distances from the camera centre to a fronto-parallel plane at depth z: z * |ray| / f."""
    h, w = shape
    x = np.arange(w) + 0.5 - w / 2
    y = np.arange(h) + 0.5 - h / 2
    return z * np.sqrt(x[None, :] ** 2 + y[:, None] ** 2 + focal**2) / focal


def test_distance_to_planar_depth_closed_form():
    distance = np.full((3, 4), 6.0, np.float32)  # rays through x = -1.5..1.5, y = -1..1
    depth = metric_sources.distance_to_planar_depth(distance, focal=2.0)
    assert depth.dtype == np.float32 and depth.shape == (3, 4)
    assert depth[1, 1] == pytest.approx(6 * 2 / np.sqrt(0.5**2 + 0**2 + 4))
    assert depth[0, 0] == pytest.approx(6 * 2 / np.sqrt(1.5**2 + 1**2 + 4))
    assert depth[2, 3] == pytest.approx(depth[0, 0])  # symmetric about the centre
    plane = _plane_distance(5.0, HYPERSIM_SHAPE, HYPERSIM_FOCAL)
    flat = metric_sources.distance_to_planar_depth(plane, HYPERSIM_FOCAL)
    np.testing.assert_allclose(flat, 5.0, rtol=1e-6)


def _hypersim_frame(folder, name, distance):
    _write_png(folder / f"{name}.tonemap.png", _coded_image(*HYPERSIM_SHAPE))
    with h5py.File(folder / f"{name}.depth_meters.hdf5", "w") as f:
        f["dataset"] = distance.astype(np.float16)  # Hypersim stores float16
    return f"{name}.tonemap.png {name}.depth_meters.hdf5"


def test_hypersim_gives_planar_depth_with_nan_masked(tmp_path):
    distance = _plane_distance(4.0, HYPERSIM_SHAPE, HYPERSIM_FOCAL)
    distance[10, 20] = np.nan  # nothing rendered there
    line = _hypersim_frame(tmp_path, "frame.0000", distance)
    (tmp_path / "train.txt").write_text(f"\n{line}\n")
    spec = {"kind": "hypersim", "list_file": str(tmp_path / "train.txt"), "root": str(tmp_path)}
    source = build_source(ml_collections.ConfigDict(spec))
    record = source[0]
    assert len(source) == 1 and record["mask"].sum() == 768 * 1024 - 1
    assert not record["mask"][10, 20] and record["depth"][10, 20] == 0
    # planar depth 4 m everywhere, up to float16's storage of the distances (< 4.7 m here)
    np.testing.assert_allclose(record["depth"][record["mask"]], 4.0, atol=2e-3)
    np.testing.assert_array_equal(record["image"], _coded_image(*HYPERSIM_SHAPE))


def test_hypersim_refuses_other_grids_and_bad_files(tmp_path):
    line = _hypersim_frame(tmp_path, "small", np.ones((48, 64)))
    (tmp_path / "list.txt").write_text(line)
    source = metric_sources.Hypersim(str(tmp_path / "list.txt"), str(tmp_path))
    with pytest.raises(ValueError, match=r"small.depth_meters.hdf5: distances of shape \(48, 64\)"):
        source[0]
    with h5py.File(tmp_path / "wrong.hdf5", "w") as f:
        f["depth"] = np.ones(HYPERSIM_SHAPE, np.float16)
    (tmp_path / "not_h5.hdf5").write_bytes(b"not HDF5")
    with pytest.raises(ValueError, match=r"wrong.hdf5: expected an HDF5 dataset 'dataset'"):
        metric_sources.read_hypersim_distance(str(tmp_path / "wrong.hdf5"))
    with pytest.raises(ValueError, match="not_h5.hdf5: not an HDF5 file"):
        metric_sources.read_hypersim_distance(str(tmp_path / "not_h5.hdf5"))
    with pytest.raises(FileNotFoundError, match="gone.hdf5: Hypersim depth file not found"):
        metric_sources.read_hypersim_distance(str(tmp_path / "gone.hdf5"))


def test_vkitti2_reads_centimetres_and_masks_beyond_max_depth(tmp_path):
    _write_png(tmp_path / "rgb_00000.png", _coded_image(5, 8))
    raw = np.full((5, 8), 1234, np.uint16)  # 12.34 m
    raw[0, 0] = 65535  # sky
    raw[1, 1] = 8000  # exactly 80 m: kept
    raw[2, 2] = 8001  # beyond 80 m
    cv2.imwrite(str(tmp_path / "depth_00000.png"), raw)
    absolute = f"{tmp_path}/rgb_00000.png {tmp_path}/depth_00000.png"  # root not needed
    (tmp_path / "train.txt").write_text(absolute + "\n")
    spec = {"kind": "vkitti2", "list_file": str(tmp_path / "train.txt"), "max_depth": 80.0}
    record = build_source(ml_collections.ConfigDict(spec))[0]
    assert record["depth"][3, 3] == pytest.approx(12.34) and record["depth"][1, 1] == 80.0
    assert not record["mask"][0, 0] and not record["mask"][2, 2] and record["mask"].sum() == 38
    assert record["sky"][0, 0] and record["sky"].sum() == 1  # 65535 is the sky, not far ground
    np.testing.assert_array_equal(record["image"], _coded_image(5, 8))


def test_split_list_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "three.txt").write_text("a.jpg b.png\na.jpg b.png 721.5\n")
    with pytest.raises(ValueError, match=r"three.txt:2: expected 'rgb_path depth_path', got 3"):
        metric_sources.VirtualKITTI2(str(tmp_path / "three.txt"))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty.txt: no 'rgb_path depth_path' lines"):
        metric_sources.Hypersim(str(tmp_path / "empty.txt"))
    with pytest.raises(FileNotFoundError, match="missing.txt: split list file not found"):
        metric_sources.Hypersim(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="nowhere: data root not found"):
        metric_sources.Hypersim(str(tmp_path / "three.txt"), str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="'hypersim': 'list_file' is empty"):
        build_source(ml_collections.ConfigDict({"kind": "hypersim", "list_file": ""}))
