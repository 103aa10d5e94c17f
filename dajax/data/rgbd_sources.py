"""Labeled RGB-D sources in their native formats, as random-access (grain) sources.

Every source yields `{image [H, W, 3] uint8 RGB, depth [H, W] float32 metres, mask [H, W]
bool, source: str}`. Depth values that are NaN, Inf, non-positive or outside the source's
validity range are masked and set to 0, never passed on. Sources check their files when they
are built (missing paths, empty sets, unmatched pairs fail there with the file named); a record
whose image and depth sizes differ fails when read, naming both files.
"""

from __future__ import annotations

import logging
import os
import re

import cv2
import numpy as np

from dajax.io.images import IMAGE_EXTENSIONS, read_image

log = logging.getLogger("dajax")


def make_record(
    image: np.ndarray,
    depth: np.ndarray,
    source: str,
    min_depth: float | None = None,
    max_depth: float | None = None,
) -> dict:
    """The common record; depth outside (0, inf) or [min_depth, max_depth] is masked.

    Args:
      image: [H, W, 3] uint8 RGB.
      depth: [H, W] metres (any float dtype).
      source: the file(s) the record came from, for error messages and logs.
    """
    depth = np.asarray(depth, np.float32)
    if depth.shape != image.shape[:2]:
        raise ValueError(f"{source}: image {image.shape[:2]} and depth {depth.shape} differ")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(depth) & (depth > 0)
        if min_depth is not None:
            mask &= depth >= min_depth
        if max_depth is not None:
            mask &= depth <= max_depth
    return {
        "image": np.ascontiguousarray(image, np.uint8),
        "depth": np.where(mask, depth, 0.0).astype(np.float32),
        "mask": mask,
        "source": source,
    }


def _require(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: {what} not found")


# ---- NYU Depth v2 ---------------------------------------------------------------------------


def read_nyu_splits(splits_path: str) -> dict[str, np.ndarray]:
    """`splits.mat` -> {'train': 0-based indices (795), 'test': 0-based indices (654)}."""
    import scipy.io

    _require(splits_path, "NYUv2 splits file")
    mat = scipy.io.loadmat(splits_path)
    missing = {"trainNdxs", "testNdxs"} - set(mat)
    if missing:
        raise ValueError(f"{splits_path}: missing {sorted(missing)} (is this NYUv2 splits.mat?)")
    return {
        "train": np.asarray(mat["trainNdxs"]).reshape(-1).astype(np.int64) - 1,
        "test": np.asarray(mat["testNdxs"]).reshape(-1).astype(np.int64) - 1,
    }


class NYUv2Labeled:
    """`nyu_depth_v2_labeled.mat` (MATLAB v7.3 = HDF5): 1449 RGB-D frames, 480 × 640.

    No sky information: sky pixels stay invalid (no loss).

    The file stores `images` as (N, 3, 640, 480) uint8 and `depths` as (N, 640, 480) float32
    metres — width before height — so each frame is transposed on read. `split` selects the
    official train (795) / test (654) frames from `splits.mat` (1-based MATLAB indices), or
    'all'. Get both files from the NYU Depth v2 site (cs.nyu.edu/~silberman/datasets).
    """

    def __init__(self, mat_path: str, split: str = "all", splits_path: str | None = None):
        import h5py

        _require(mat_path, "NYUv2 labeled .mat file")
        self.mat_path = mat_path
        try:
            with h5py.File(mat_path, "r") as f:
                missing = {"images", "depths"} - set(f)
                if missing:
                    raise ValueError(f"{mat_path}: missing datasets {sorted(missing)}")
                count = f["images"].shape[0]
                if f["images"].shape[1] != 3 or f["depths"].shape != (
                    count,
                    *f["images"].shape[2:],
                ):
                    raise ValueError(
                        f"{mat_path}: images {f['images'].shape} / depths {f['depths'].shape} "
                        "are not in the (N, 3, W, H) / (N, W, H) layout"
                    )
        except OSError as err:
            raise ValueError(f"{mat_path}: not an HDF5 (MATLAB v7.3) file: {err}") from err
        if split == "all":
            self.indices = np.arange(count)
        elif split in ("train", "test"):
            if splits_path is None:
                raise ValueError(f"split={split!r} needs splits_path (NYUv2 splits.mat)")
            self.indices = read_nyu_splits(splits_path)[split]
            if self.indices.min() < 0 or self.indices.max() >= count:
                raise ValueError(f"{splits_path}: indices outside the {count} frames")
        else:
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self._file = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        import h5py

        if self._file is None:  # opened lazily, once per worker process
            self._file = h5py.File(self.mat_path, "r")
        frame = int(self.indices[i])
        image = self._file["images"][frame].transpose(2, 1, 0)
        depth = self._file["depths"][frame].T
        return make_record(image, depth, f"{self.mat_path}[{frame}]")

    def __getstate__(self):
        return {**self.__dict__, "_file": None}


class NYUv2H5Tree:
    """The 47k-frame NYUv2 training set as a tree of `.h5` files (searched recursively).

    No sky information: sky pixels stay invalid (no loss).

    Each file holds `rgb` (3 × 480 × 640 uint8) and `depth` (480 × 640 float32 metres).
    """

    def __init__(self, root: str):
        _require(root, "NYUv2 h5 folder")
        self.paths = sorted(
            os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".h5")
        )
        if not self.paths:
            raise ValueError(f"{root}: no .h5 files")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        import h5py

        path = self.paths[i]
        with h5py.File(path, "r") as f:
            if "rgb" not in f or "depth" not in f:
                raise ValueError(f"{path}: expected datasets 'rgb' and 'depth', got {list(f)}")
            image = np.asarray(f["rgb"]).transpose(1, 2, 0)
            depth = np.asarray(f["depth"])
        return make_record(image, depth, path)


# ---- KITTI ----------------------------------------------------------------------------------


def read_depth_png(path: str, scale: float) -> np.ndarray:
    """16-bit PNG -> [H, W] float32 metres (`value / scale`; 0 stays 0 = invalid)."""
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"{path}: unreadable depth PNG")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(
            f"{path}: expected a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}"
        )
    return raw.astype(np.float32) / scale


class KITTIList:
    """KITTI Eigen split from a list file of `image_path depth_path focal` lines (the official
    metric-depth repo's `train_test_inputs/*.txt`). Depth PNGs store metres × 256, 0 = invalid;
    lines whose depth is `None` (no ground truth) are skipped and counted. Records also carry
    `focal` (pixels).

    No sky information: sky pixels stay invalid (no loss).
    """

    def __init__(self, list_file: str, data_root: str, depth_root: str, max_depth: float = 80.0):
        _require(list_file, "KITTI list file")
        _require(data_root, "KITTI image root")
        _require(depth_root, "KITTI depth root")
        self.data_root, self.depth_root, self.max_depth = data_root, depth_root, max_depth
        self.items: list[tuple[str, str, float]] = []
        skipped = 0
        with open(list_file) as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 3:
                    raise ValueError(f"{list_file}:{number}: expected 'image depth focal'")
                if fields[1] == "None":
                    skipped += 1
                    continue
                self.items.append((fields[0], fields[1], float(fields[2])))
        if skipped:
            log.info("%s: skipped %d lines without ground truth", list_file, skipped)
        if not self.items:
            raise ValueError(f"{list_file}: no lines with ground-truth depth")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        image_rel, depth_rel, focal = self.items[i]
        image_path = os.path.join(self.data_root, image_rel.lstrip("/"))
        depth_path = os.path.join(self.depth_root, depth_rel.lstrip("/"))
        image = read_image(image_path)
        depth = read_depth_png(depth_path, 256.0)
        record = make_record(image, depth, f"{image_path} + {depth_path}", None, self.max_depth)
        record["focal"] = np.float32(focal)
        return record


# ---- generic paired folders -----------------------------------------------------------------


def read_pfm(path: str) -> np.ndarray:
    """A grayscale PFM file (`Pf`) -> [H, W] float32, top row first."""
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header != b"Pf":
            raise ValueError(f"{path}: not a grayscale PFM (header {header[:8]!r})")
        dims = f.readline()
        while dims.startswith(b"#"):
            dims = f.readline()
        match = re.fullmatch(rb"\s*(\d+)\s+(\d+)\s*", dims)
        if match is None:
            raise ValueError(f"{path}: bad PFM size line {dims[:40]!r}")
        width, height = int(match[1]), int(match[2])
        scale = float(f.readline())
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    if data.size != width * height:
        raise ValueError(f"{path}: {data.size} values for a {width}x{height} PFM")
    return np.flipud(data.reshape(height, width)).astype(np.float32)


def write_pfm(path: str, array: np.ndarray) -> None:
    """[H, W] float32 -> little-endian grayscale PFM (rows stored bottom to top)."""
    array = np.asarray(array, np.float32)
    with open(path, "wb") as f:
        f.write(b"Pf\n%d %d\n-1.0\n" % (array.shape[1], array.shape[0]))
        f.write(np.flipud(array).astype("<f4").tobytes())


DEPTH_FORMATS = {"npy": ".npy", "png16": ".png", "pfm": ".pfm"}


class PairedFolders:
    """Images and depth maps in two folders, matched by file stem (searched recursively).

    No sky information: sky pixels stay invalid (no loss).

    Args:
      image_dir: JPEG/PNG/WebP images.
      depth_dir: depth files: `.npy` ([H, W] metres), 16-bit `.png` (metres = value /
        `depth_scale`) or `.pfm`.
      depth_format: 'npy', 'png16' or 'pfm'.
      min_depth, max_depth: optional validity range in metres.
      disparity: the files hold disparity (bigger = nearer) rather than depth; it is
        converted to 1 / disparity so records stay in metres-like depth.
    """

    def __init__(
        self,
        image_dir: str,
        depth_dir: str,
        depth_format: str = "npy",
        depth_scale: float = 1000.0,
        min_depth: float | None = None,
        max_depth: float | None = None,
        disparity: bool = False,
    ):
        if depth_format not in DEPTH_FORMATS:
            raise ValueError(f"depth_format must be one of {list(DEPTH_FORMATS)}")
        _require(image_dir, "image folder")
        _require(depth_dir, "depth folder")
        images = files_by_stem(image_dir, IMAGE_EXTENSIONS)
        depths = files_by_stem(depth_dir, (DEPTH_FORMATS[depth_format],))
        if not images:
            raise ValueError(f"{image_dir}: no images")
        unmatched = sorted(set(images) - set(depths))
        if unmatched:
            raise ValueError(
                f"{depth_dir}: no {DEPTH_FORMATS[depth_format]} depth for {len(unmatched)} "
                f"image(s) of {image_dir}, e.g. {', '.join(unmatched[:3])}"
            )
        self.pairs = [(images[s], depths[s]) for s in sorted(images)]
        self.depth_format, self.depth_scale = depth_format, depth_scale
        self.min_depth, self.max_depth, self.disparity = min_depth, max_depth, disparity

    def __len__(self) -> int:
        return len(self.pairs)

    def _read_depth(self, path: str) -> np.ndarray:
        if self.depth_format == "npy":
            depth = np.load(path)
            return depth[..., 0] if depth.ndim == 3 and depth.shape[-1] == 1 else depth
        if self.depth_format == "png16":
            return read_depth_png(path, self.depth_scale)
        return read_pfm(path)

    def __getitem__(self, i: int) -> dict:
        image_path, depth_path = self.pairs[i]
        depth = self._read_depth(depth_path).astype(np.float32)
        if self.disparity:
            with np.errstate(divide="ignore"):
                depth = np.where(depth > 0, 1.0 / depth, 0.0)
        return make_record(
            read_image(image_path),
            depth,
            f"{image_path} + {depth_path}",
            self.min_depth,
            self.max_depth,
        )


def files_by_stem(root: str, extensions: tuple[str, ...]) -> dict[str, str]:
    """{path relative to `root` without its extension: path} of the files below `root`
    (recursively) whose names end in one of `extensions` (any case).

    Raises:
      ValueError: two files share a stem (both named).
    """
    found = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(extensions):
                path = os.path.join(directory, name)
                stem = os.path.relpath(path, root).rsplit(".", 1)[0]
                if stem in found:
                    raise ValueError(
                        f"{path}: same stem as {found[stem]}; pairs would be ambiguous"
                    )
                found[stem] = path
    return found


# ---- TFDS -----------------------------------------------------------------------------------


class TFDSDepth:
    """A TFDS dataset prepared in ArrayRecord format, read through `tfds.data_source`.

    No sky information: sky pixels stay invalid (no loss).

    Args:
      name: the TFDS name (e.g. 'nyu_depth_v2').
      split: e.g. 'train', 'validation'.
      data_dir: where `tfds build` wrote it (TFDS' default when None).
      image_key, depth_key: feature names holding the RGB image and the depth in metres.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_dir: str | None = None,
        image_key: str = "image",
        depth_key: str = "depth",
    ):
        import tensorflow_datasets as tfds

        try:
            self._source = tfds.data_source(name, split=split, data_dir=data_dir)
        except Exception as err:  # TFDS raises several types for missing/unprepared sets
            raise ValueError(
                f"tfds {name}[{split}] in {data_dir or 'the default data dir'}: {err} "
                "(prepare it with `tfds build --file_format=array_record`)"
            ) from err
        if len(self._source) == 0:
            raise ValueError(f"tfds {name}[{split}]: empty")
        self.name, self.split = name, split
        self.image_key, self.depth_key = image_key, depth_key

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i: int) -> dict:
        example = self._source[i]
        depth = np.asarray(example[self.depth_key], np.float32)
        depth = depth[..., 0] if depth.ndim == 3 else depth
        return make_record(np.asarray(example[self.image_key]), depth, f"{self.name}[{i}]")
