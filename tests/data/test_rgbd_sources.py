"""Native-format labeled readers on tiny files written here: NYUv2 .mat (+ splits), the h5
tree, KITTI lists, paired folders (npy, 16-bit PNG, PFM), TFDS ArrayRecord."""

import cv2
import h5py
import ml_collections
import numpy as np
import pytest
import scipy.io

from dajax.data import rgbd_sources
from dajax.data.registry import build_source


def _coded_image(h, w, frame=0):
    """RGB whose red = row, green = column, blue = frame: any transposition shows."""
    rows, cols = np.mgrid[:h, :w]
    return np.stack([rows, cols, np.full_like(rows, frame)], -1).astype(np.uint8)


def _write_png(path, rgb):
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


def test_nyu_mat_transposes_frames_and_uses_one_based_splits(tmp_path):
    h, w, n = 6, 9, 5
    images = np.stack([_coded_image(h, w, i) for i in range(n)])  # N, H, W, 3
    depths = np.stack([np.full((h, w), i + 1.0, np.float32) for i in range(n)])
    depths[2, 0, 0] = np.nan
    with h5py.File(tmp_path / "nyu.mat", "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)  # N, C, W, H as MATLAB stores it
        f["depths"] = depths.transpose(0, 2, 1)  # N, W, H
    scipy.io.savemat(
        tmp_path / "splits.mat",
        {"trainNdxs": np.array([[1], [3], [4]]), "testNdxs": np.array([[2], [5]])},
    )
    test = rgbd_sources.NYUv2Labeled(
        str(tmp_path / "nyu.mat"), "test", str(tmp_path / "splits.mat")
    )
    assert len(test) == 2
    record = test[1]  # MATLAB index 5 = frame 4
    np.testing.assert_array_equal(record["image"], images[4])
    np.testing.assert_array_equal(record["depth"], 5.0)
    train = rgbd_sources.NYUv2Labeled(
        str(tmp_path / "nyu.mat"), "train", str(tmp_path / "splits.mat")
    )
    assert len(train) == 3 and train[2]["image"][0, 0, 2] == 3  # MATLAB 4 = frame 3
    nan_frame = rgbd_sources.NYUv2Labeled(str(tmp_path / "nyu.mat"))[2]
    assert not nan_frame["mask"][0, 0] and nan_frame["depth"][0, 0] == 0
    assert nan_frame["mask"].sum() == h * w - 1
    with pytest.raises(ValueError, match="needs splits_path"):
        rgbd_sources.NYUv2Labeled(str(tmp_path / "nyu.mat"), "train")
    (tmp_path / "bad.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(ValueError, match="bad.mat: not an HDF5"):
        rgbd_sources.NYUv2Labeled(str(tmp_path / "bad.mat"))


def test_nyu_h5_tree(tmp_path):
    (tmp_path / "scene_b").mkdir()
    for i, path in enumerate([tmp_path / "a.h5", tmp_path / "scene_b" / "00001.h5"]):
        with h5py.File(path, "w") as f:
            f["rgb"] = _coded_image(4, 7, i).transpose(2, 0, 1)
            f["depth"] = np.full((4, 7), 2.5 + i, np.float32)
    source = build_source(ml_collections.ConfigDict({"kind": "nyu_h5", "path": str(tmp_path)}))
    assert len(source) == 2
    np.testing.assert_array_equal(source[1]["image"], _coded_image(4, 7, 1))
    np.testing.assert_array_equal(source[1]["depth"], 3.5)


def test_kitti_list_reads_depth_over_256_with_zero_invalid(tmp_path):
    _write_png(tmp_path / "img.png", _coded_image(5, 8))
    raw = np.full((5, 8), 256 * 20, np.uint16)
    raw[0, :2] = 0
    raw[1, 0] = 256 * 90  # beyond the 80 m cap
    cv2.imwrite(str(tmp_path / "gt.png"), raw)
    (tmp_path / "list.txt").write_text("img.png gt.png 721.5\nimg.png None 721.5\n")
    source = rgbd_sources.KITTIList(str(tmp_path / "list.txt"), str(tmp_path), str(tmp_path))
    assert len(source) == 1
    record = source[0]
    assert record["focal"] == pytest.approx(721.5)
    assert record["depth"][2, 2] == 20.0 and record["mask"].sum() == 40 - 3
    np.testing.assert_array_equal(record["image"], _coded_image(5, 8))


@pytest.mark.parametrize("fmt", ["npy", "png16", "pfm"])
def test_paired_folders_in_every_depth_format(tmp_path, fmt):
    (tmp_path / "rgb").mkdir(), (tmp_path / "depth").mkdir()
    depth = np.linspace(0.5, 4.0, 5 * 6, dtype=np.float32).reshape(5, 6)
    for stem in ("x", "y"):
        _write_png(tmp_path / "rgb" / f"{stem}.png", _coded_image(5, 6))
        if fmt == "npy":
            np.save(tmp_path / "depth" / f"{stem}.npy", depth)
        elif fmt == "png16":
            cv2.imwrite(str(tmp_path / "depth" / f"{stem}.png"), (depth * 1000).astype(np.uint16))
        else:
            rgbd_sources.write_pfm(str(tmp_path / "depth" / f"{stem}.pfm"), depth)
    source = rgbd_sources.PairedFolders(
        str(tmp_path / "rgb"), str(tmp_path / "depth"), fmt, max_depth=3.0
    )
    record = source[1]
    assert len(source) == 2 and record["source"].startswith(str(tmp_path / "rgb" / "y.png"))
    want = depth[depth <= 3.0]
    np.testing.assert_allclose(record["depth"][record["mask"]], want, atol=1e-3)  # png: 1 mm
    assert record["mask"].sum() == (depth <= 3.0).sum()


def test_pfm_rows_are_top_first_and_endianness_follows_the_scale_sign(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    rgbd_sources.write_pfm(str(tmp_path / "a.pfm"), array)
    np.testing.assert_array_equal(rgbd_sources.read_pfm(str(tmp_path / "a.pfm")), array)
    big = b"Pf\n4 3\n1.0\n" + np.flipud(array).astype(">f4").tobytes()
    (tmp_path / "b.pfm").write_bytes(big)
    np.testing.assert_array_equal(rgbd_sources.read_pfm(str(tmp_path / "b.pfm")), array)


def test_paired_folder_errors_name_the_files(tmp_path):
    (tmp_path / "rgb").mkdir(), (tmp_path / "depth").mkdir()
    _write_png(tmp_path / "rgb" / "a.png", _coded_image(5, 6))
    _write_png(tmp_path / "rgb" / "b.png", _coded_image(5, 6))
    np.save(tmp_path / "depth" / "a.npy", np.ones((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"depth: no \.npy depth for 1 image\(s\).*e\.g\. b"):
        rgbd_sources.PairedFolders(str(tmp_path / "rgb"), str(tmp_path / "depth"))
    (tmp_path / "rgb" / "b.png").unlink()
    source = rgbd_sources.PairedFolders(str(tmp_path / "rgb"), str(tmp_path / "depth"))
    with pytest.raises(ValueError, match=r"a\.png \+ .*a\.npy: image \(5, 6\) and depth \(4, 6\)"):
        source[0]
    _write_png(tmp_path / "rgb" / "a.jpg", _coded_image(5, 6))
    with pytest.raises(ValueError, match=r"a\.(jpg|png): same stem as"):
        rgbd_sources.PairedFolders(str(tmp_path / "rgb"), str(tmp_path / "depth"))
    with pytest.raises(FileNotFoundError, match="nowhere: image folder not found"):
        rgbd_sources.PairedFolders(str(tmp_path / "nowhere"), str(tmp_path / "depth"))


def test_tfds_array_record_dataset(tmp_path):
    import tensorflow_datasets as tfds

    class TinyDepth(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Tensor(shape=(4, 5, 3), dtype=np.uint8),
                        "depth": tfds.features.Tensor(shape=(4, 5), dtype=np.float32),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(3):
                yield (
                    i,
                    {"image": _coded_image(4, 5, i), "depth": np.full((4, 5), i + 1.0, np.float32)},
                )

    TinyDepth(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    spec = {"kind": "tfds", "name": "tiny_depth", "split": "train", "data_dir": str(tmp_path)}
    source = build_source(ml_collections.ConfigDict(spec))
    assert len(source) == 3
    depths = sorted(float(source[i]["depth"][0, 0]) for i in range(3))
    assert depths == [1.0, 2.0, 3.0]
    record = source[0]
    np.testing.assert_array_equal(
        record["image"], _coded_image(4, 5, int(record["depth"][0, 0]) - 1)
    )
    with pytest.raises(ValueError, match="tfds no_such_set"):
        rgbd_sources.TFDSDepth("no_such_set", "train", data_dir=str(tmp_path))
