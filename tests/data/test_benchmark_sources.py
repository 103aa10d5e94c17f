"""Zero-shot benchmark readers on tiny files in each benchmark's native format."""

import os

import cv2
import numpy as np
import pytest

from dajax.data.benchmark_sources import (
    DDAD,
    DIODE,
    ETH3D,
    Sintel,
    load_npz_depth,
    read_dpt,
    read_eth3d_depth,
    write_dpt,
)

H, W = 6, 8


def write_image(path, seed: int) -> np.ndarray:
    """Writes a random RGB image as PNG (lossless, whatever the extension says); returns it."""
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, data = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    with open(path, "wb") as f:
        f.write(data.tobytes())
    return rgb


def random_depth(seed: int) -> np.ndarray:
    depth = np.random.default_rng(seed).uniform(0.5, 50.0, (H, W)).astype(np.float32)
    depth[0, 0], depth[0, 1] = 0.0, np.inf  # two invalid pixels
    return depth


def check_record(record, rgb, depth, valid):
    assert record["image"].dtype == np.uint8 and record["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(record["image"], rgb)
    assert record["depth"].dtype == np.float32 and record["mask"].dtype == bool
    np.testing.assert_array_equal(record["mask"], valid)
    np.testing.assert_array_equal(record["depth"][valid], depth[valid])
    assert (record["depth"][~valid] == 0).all()
    assert isinstance(record["source"], str)


# ---- Sintel ---------------------------------------------------------------------------------


def test_dpt_roundtrip_and_layout(tmp_path):
    depth = random_depth(0)
    write_dpt(tmp_path / "a.dpt", depth)
    raw = (tmp_path / "a.dpt").read_bytes()
    assert np.frombuffer(raw[:4], "<f4")[0] == np.float32(202021.25)
    assert tuple(np.frombuffer(raw[4:12], "<i4")) == (W, H)
    assert len(raw) == 12 + 4 * H * W
    np.testing.assert_array_equal(read_dpt(tmp_path / "a.dpt"), depth)


def test_dpt_errors(tmp_path):
    write_dpt(tmp_path / "a.dpt", random_depth(0))
    raw = (tmp_path / "a.dpt").read_bytes()
    (tmp_path / "truncated.dpt").write_bytes(raw[:-4])
    (tmp_path / "tag.dpt").write_bytes(np.float32(1.0).tobytes() + raw[4:])
    (tmp_path / "short.dpt").write_bytes(raw[:6])
    for name, match in [("truncated", "header says"), ("tag", "tag"), ("short", "too short")]:
        with pytest.raises(ValueError, match=f"{name}.dpt.*{match}"):
            read_dpt(tmp_path / f"{name}.dpt")
    with pytest.raises(FileNotFoundError):
        read_dpt(tmp_path / "missing.dpt")


def make_sintel(root):
    frames = {}
    for i, (scene, frame) in enumerate([("alley_1", "frame_0001"), ("bamboo_2", "frame_0002")]):
        rgb = write_image(os.path.join(root, "final", scene, frame + ".png"), i)
        depth = random_depth(i)
        os.makedirs(os.path.join(root, "depth", scene), exist_ok=True)
        write_dpt(os.path.join(root, "depth", scene, frame + ".dpt"), depth)
        frames[scene] = (rgb, depth)
    return frames


def test_sintel(tmp_path):
    frames = make_sintel(tmp_path)
    reader = Sintel(str(tmp_path))
    assert len(reader) == 2
    for i, scene in enumerate(["alley_1", "bamboo_2"]):
        rgb, depth = frames[scene]
        record = reader[i]
        assert scene in record["source"]
        check_record(record, rgb, depth, np.isfinite(depth) & (depth > 0))
    with pytest.raises(FileNotFoundError, match="clean"):
        Sintel(str(tmp_path), render_pass="clean")
    with pytest.raises(ValueError, match="render_pass"):
        Sintel(str(tmp_path), render_pass="albedo")


def test_sintel_depth_without_image(tmp_path):
    make_sintel(tmp_path)
    os.remove(tmp_path / "final" / "alley_1" / "frame_0001.png")
    with pytest.raises(ValueError, match="frame_0001.dpt"):
        Sintel(str(tmp_path))


# ---- DDAD -----------------------------------------------------------------------------------


def test_ddad(tmp_path):
    rgb_a = write_image(str(tmp_path / "rgb" / "000150" / "a.jpg"), 0)
    rgb_b = write_image(str(tmp_path / "rgb" / "000150" / "b.png"), 1)
    depth_a, depth_b = random_depth(0), random_depth(1)
    os.makedirs(tmp_path / "depth" / "000150")
    np.savez(tmp_path / "depth" / "000150" / "a.npz", depth=depth_a)
    np.savez(tmp_path / "depth" / "000150" / "b.npz", velodyne_depth=depth_b[..., None])
    reader = DDAD(str(tmp_path))
    assert len(reader) == 2
    check_record(reader[0], rgb_a, depth_a, np.isfinite(depth_a) & (depth_a > 0))
    check_record(reader[1], rgb_b, depth_b, np.isfinite(depth_b) & (depth_b > 0))


def test_ddad_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", lidar=np.ones((H, W)), points=np.ones(3))
    with pytest.raises(ValueError, match=r"bad.npz.*\['lidar', 'points'\]"):
        load_npz_depth(tmp_path / "bad.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="corrupt.npz"):
        load_npz_depth(tmp_path / "corrupt.npz")
    with pytest.raises(FileNotFoundError, match="depth folder"):
        DDAD(str(tmp_path))
    os.makedirs(tmp_path / "depth")
    with pytest.raises(FileNotFoundError, match="rgb: image folder"):
        DDAD(str(tmp_path))
    os.makedirs(tmp_path / "rgb")
    with pytest.raises(ValueError, match="no DDAD"):
        DDAD(str(tmp_path))


# ---- ETH3D ----------------------------------------------------------------------------------


def write_eth3d(root, scene, name, seed):
    rgb = write_image(os.path.join(root, scene, ETH3D.IMAGE_SUBDIR, name), seed)
    depth = random_depth(seed)
    depth_path = os.path.join(root, scene, ETH3D.DEPTH_SUBDIR, name)
    os.makedirs(os.path.dirname(depth_path), exist_ok=True)
    depth.astype("<f4").tofile(depth_path)
    return rgb, depth, depth_path


def test_eth3d(tmp_path):
    a = write_eth3d(tmp_path, "courtyard", "DSC_0286.JPG", 0)
    b = write_eth3d(tmp_path, "delivery_area", "DSC_0711.JPG", 1)
    reader = ETH3D(str(tmp_path), height=H, width=W)
    assert len(reader) == 2
    for i, (rgb, depth, _) in enumerate([a, b]):
        check_record(reader[i], rgb, depth, np.isfinite(depth) & (depth > 0))
    np.testing.assert_array_equal(read_eth3d_depth(a[2], H, W), a[1])


def test_eth3d_wrong_size(tmp_path):
    _, _, depth_path = write_eth3d(tmp_path, "courtyard", "DSC_0286.JPG", 0)
    with pytest.raises(ValueError, match="DSC_0286.JPG.*expected 4032x6048"):
        ETH3D(str(tmp_path))[0]  # default size: 6048 x 4032
    with pytest.raises(ValueError, match="no ETH3D"):
        ETH3D(str(tmp_path / "courtyard"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ETH3D(str(tmp_path / "nowhere"))
    assert os.path.getsize(depth_path) == H * W * 4


# ---- DIODE ----------------------------------------------------------------------------------


def write_diode(folder, stem, seed):
    rgb = write_image(os.path.join(folder, stem + ".png"), seed)
    depth = np.abs(random_depth(seed))
    depth[0, 1] = 3.0  # DIODE marks invalid pixels with the mask, not the value
    mask = np.ones((H, W), np.float32)
    mask[2, 3] = mask[4, 5] = 0.0
    np.save(os.path.join(folder, stem + "_depth.npy"), depth[..., None])
    np.save(os.path.join(folder, stem + "_depth_mask.npy"), mask)
    return rgb, depth, (mask > 0) & (depth > 0)


def test_diode(tmp_path):
    scan = str(tmp_path / "val" / "indoors" / "scene_00019" / "scan_00183")
    a = write_diode(scan, "00019_00183_indoors_000_010", 0)
    b = write_diode(scan, "00019_00183_indoors_000_020", 1)
    reader = DIODE(str(tmp_path / "val"))
    assert len(reader) == 2
    for i, (rgb, depth, valid) in enumerate([a, b]):
        assert valid.sum() == H * W - 3
        check_record(reader[i], rgb, depth, valid)


def test_diode_errors(tmp_path):
    write_diode(str(tmp_path), "x", 0)
    os.remove(tmp_path / "x_depth_mask.npy")
    with pytest.raises(FileNotFoundError, match="x_depth_mask.npy"):
        DIODE(str(tmp_path))
    write_diode(str(tmp_path), "x", 0)
    (tmp_path / "x_depth.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x_depth.npy"):
        DIODE(str(tmp_path))[0]
    os.remove(tmp_path / "x.png")
    with pytest.raises(ValueError, match="x_depth.npy"):
        DIODE(str(tmp_path))


def test_unreadable_image(tmp_path):
    make_sintel(tmp_path)
    (tmp_path / "final" / "alley_1" / "frame_0001.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="frame_0001.png"):
        Sintel(str(tmp_path))[0]
