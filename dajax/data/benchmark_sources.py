"""Readers for the zero-shot depth benchmarks in their native formats: Sintel, DDAD, ETH3D, DIODE.

Each reader is a random-access source: `len(reader)` and `reader[i]` →
`{image [H, W, 3] uint8 RGB, depth [H, W] float32 metres, mask [H, W] bool, source: str}`
(the common record of `dajax.data.rgbd_sources.make_record`: NaN, Inf and non-positive depth
is masked and set to 0). Readers pair their files when built: a missing folder raises
FileNotFoundError, an empty set or a depth file without its image raises ValueError, each
naming the path; a file that cannot be decoded raises ValueError naming it when read.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from dajax.data.rgbd_sources import make_record
from dajax.io.images import read_image

DPT_TAG = 202021.25
DPT_HEADER_BYTES = 12
DDAD_DEPTH_KEYS = ("depth", "velodyne_depth")
ETH3D_HEIGHT, ETH3D_WIDTH = 4032, 6048
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def read_dpt(path: str | os.PathLike) -> np.ndarray:
    """Reads a Sintel `.dpt` depth file.

    Format: float32 tag 202021.25, int32 width, int32 height (little-endian), then
    height × width float32 depths, row-major.

    Returns:
      [height, width] float32 depth (Sintel units, metres).

    Raises:
      ValueError: wrong tag, implausible size or truncated file, naming the path.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < DPT_HEADER_BYTES:
        raise ValueError(f"{path}: {len(data)} bytes, too short for a .dpt header")
    tag = np.frombuffer(data, "<f4", 1)[0]
    width, height = (int(v) for v in np.frombuffer(data, "<i4", 2, offset=4))
    if tag != np.float32(DPT_TAG):
        raise ValueError(f"{path}: .dpt tag {tag} != {DPT_TAG} (wrong format or byte order)")
    expected = DPT_HEADER_BYTES + 4 * width * height
    if width <= 0 or height <= 0 or len(data) != expected:
        raise ValueError(
            f"{path}: header says {width}x{height} ({expected} bytes), file has {len(data)}"
        )
    depth = np.frombuffer(data, "<f4", width * height, DPT_HEADER_BYTES)
    return depth.reshape(height, width).copy()


def write_dpt(path: str | os.PathLike, depth: np.ndarray) -> None:
    """Writes [H, W] depth (metres) as a Sintel `.dpt` file; the inverse of `read_dpt`."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    height, width = depth.shape
    with open(path, "wb") as f:
        f.write(np.float32(DPT_TAG).astype("<f4").tobytes())
        f.write(np.array([width, height], "<i4").tobytes())
        f.write(depth.astype("<f4").tobytes())


def read_eth3d_depth(
    path: str | os.PathLike, height: int = ETH3D_HEIGHT, width: int = ETH3D_WIDTH
) -> np.ndarray:
    """Reads an ETH3D ground-truth depth map: raw little-endian float32, no header.

    Returns:
      [height, width] float32 metres; invalid pixels are inf (or 0) as stored.

    Raises:
      ValueError: the file size is not height × width × 4 bytes, naming the path.
    """
    path = os.fspath(path)
    depth = np.fromfile(path, "<f4")
    if depth.size != height * width:
        raise ValueError(
            f"{path}: {depth.size * 4} bytes, expected {height}x{width} float32 "
            f"({height * width * 4} bytes); pass height/width for other sizes"
        )
    return depth.reshape(height, width)


def load_npz_depth(path: str | os.PathLike, keys: tuple[str, ...] = DDAD_DEPTH_KEYS) -> np.ndarray:
    """The depth map stored under the first of `keys` present in an `.npz` file.

    Returns:
      [H, W] float32 metres (a trailing channel of size 1 is dropped).

    Raises:
      ValueError: unreadable file, or none of `keys` in it (the keys found are listed).
    """
    path = os.fspath(path)
    with _load_npy(path) as archive:
        found = [k for k in keys if k in archive.files]
        if not found:
            raise ValueError(f"{path}: no depth key {list(keys)}; keys are {archive.files}")
        return _squeeze_channel(archive[found[0]], path)


def _load_npy(path: str):
    """np.load with decoding failures re-raised as ValueError naming the file."""
    try:
        return np.load(path)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: not a readable .npy/.npz file ({e})") from e


def _squeeze_channel(depth: np.ndarray, path: str) -> np.ndarray:
    """[H, W, 1] or [H, W] → [H, W] float32."""
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must be [H, W] or [H, W, 1], got {depth.shape}")
    return depth.astype(np.float32)


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: {what} folder not found")


def _pair_files(
    depth_dir: str, depth_suffix: str, image_dir: str, image_suffixes: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(image, depth) paths: every `*depth_suffix` file under depth_dir (recursively) with the
    image at the same relative path in image_dir, its suffix swapped for one of
    image_suffixes. Sorted by depth path.

    Raises:
      FileNotFoundError: a folder is missing.
      ValueError: a depth file has no image.
    """
    _require_dir(depth_dir, "depth")
    _require_dir(image_dir, "image")
    pairs, unmatched = [], []
    for directory, _, files in os.walk(depth_dir):
        for name in files:
            if not name.endswith(depth_suffix) or name.startswith("."):
                continue
            depth = os.path.join(directory, name)
            rel = os.path.relpath(depth, depth_dir)
            stem = rel[: len(rel) - len(depth_suffix)]
            images = [os.path.join(image_dir, stem + s) for s in image_suffixes]
            image = next((p for p in images if os.path.isfile(p)), None)
            if image is None:
                unmatched.append(depth)
            else:
                pairs.append((image, depth))
    if unmatched:
        raise ValueError(
            f"{image_dir}: no image for {len(unmatched)} depth file(s) of {depth_dir}, "
            f"e.g. {', '.join(sorted(unmatched)[:3])}"
        )
    return sorted(pairs, key=lambda p: p[1])


def _require_pairs(pairs: list, root: str, what: str) -> list:
    if not pairs:
        raise ValueError(f"{root}: no {what} pairs found")
    return pairs


class _Benchmark:
    """Shared record building; subclasses set `pairs` [(image, depth)] and define
    `_read_depth(path) -> [H, W] float32 metres` (invalid pixels 0, NaN or inf)."""

    pairs: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        """The i-th record: image [H, W, 3] uint8, depth [H, W] float32 m, mask [H, W] bool."""
        image_path, depth_path = self.pairs[i]
        depth = self._read_depth(depth_path)
        return make_record(read_image(image_path), depth, f"{image_path} + {depth_path}")


class Sintel(_Benchmark):
    """MPI Sintel training set with ground-truth depth.

    No sky information: sky pixels stay invalid (not scored).

    Get the images from http://sintel.is.tue.mpg.de/downloads (`MPI-Sintel-complete.zip`,
    `training/final` and `training/clean`) and the depth from http://sintel.is.tue.mpg.de/depth
    (`MPI-Sintel-depth-training-*.zip`, `training/depth`). Unpack both into one folder:

        root/final/<scene>/frame_0001.png   (or root/clean/...)
        root/depth/<scene>/frame_0001.dpt

    Args:
      root: that folder (usually `.../training`).
      render_pass: 'final' (the benchmark's usual choice) or 'clean'.
    """

    def __init__(self, root: str, render_pass: str = "final"):
        if render_pass not in ("final", "clean"):
            raise ValueError(f"render_pass must be 'final' or 'clean', got {render_pass!r}")
        _require_dir(root, "Sintel root")
        pairs = _pair_files(
            os.path.join(root, "depth"), ".dpt", os.path.join(root, render_pass), (".png",)
        )
        self.pairs = _require_pairs(pairs, root, "Sintel image/.dpt")

    def _read_depth(self, path: str) -> np.ndarray:
        return read_dpt(path)


class DDAD(_Benchmark):
    """DDAD (Dense Depth for Autonomous Driving) validation frames with projected LiDAR depth.

    No sky information: sky pixels stay invalid (not scored).

    DDAD (https://github.com/TRI-ML/DDAD) ships in TRI's DGP format; export the validation
    frames (e.g. with the `dgp` library, LiDAR projected into the camera) to one `.npz` per
    frame holding sparse depth in metres under `depth` or `velodyne_depth` (0 = no return),
    plus the camera image as JPEG/PNG at the same relative path:

        root/rgb/<...>/<frame>.jpg   (or .png)
        root/depth/<...>/<frame>.npz

    Args:
      root: that folder.
      image_dir, depth_dir: the sub-folder names, if your export uses others.
    """

    def __init__(self, root: str, image_dir: str = "rgb", depth_dir: str = "depth"):
        _require_dir(root, "DDAD root")
        pairs = _pair_files(
            os.path.join(root, depth_dir), ".npz", os.path.join(root, image_dir), IMAGE_SUFFIXES
        )
        self.pairs = _require_pairs(pairs, root, "DDAD image/.npz")

    def _read_depth(self, path: str) -> np.ndarray:
        return load_npz_depth(path)


class ETH3D(_Benchmark):
    """ETH3D high-resolution multi-view training scenes (undistorted DSLR images).

    No sky information: sky pixels stay invalid (not scored).

    Get `multi_view_training_dslr_undistorted.7z` and `multi_view_training_dslr_depth.7z`
    from https://www.eth3d.net/datasets and unpack both into one folder. Depth maps are raw
    float32 files named like their images (6048 × 4032, inf = invalid):

        root/<scene>/images/dslr_images_undistorted/DSC_0001.JPG
        root/<scene>/ground_truth_depth/dslr_images/DSC_0001.JPG   (raw float32 depth)

    Args:
      root: that folder.
      height, width: the depth-map size in pixels (images must match it).
    """

    IMAGE_SUBDIR = os.path.join("images", "dslr_images_undistorted")
    DEPTH_SUBDIR = os.path.join("ground_truth_depth", "dslr_images")

    def __init__(self, root: str, height: int = ETH3D_HEIGHT, width: int = ETH3D_WIDTH):
        _require_dir(root, "ETH3D root")
        scenes = sorted(
            s for s in os.listdir(root) if os.path.isdir(os.path.join(root, s, self.DEPTH_SUBDIR))
        )
        pairs = [
            pair
            for s in scenes
            for pair in _pair_files(
                os.path.join(root, s, self.DEPTH_SUBDIR),
                "",
                os.path.join(root, s, self.IMAGE_SUBDIR),
                ("",),
            )
        ]
        self.pairs = _require_pairs(pairs, root, f"ETH3D <scene>/{self.DEPTH_SUBDIR}")
        self.height, self.width = height, width

    def _read_depth(self, path: str) -> np.ndarray:
        return read_eth3d_depth(path, self.height, self.width)


class DIODE(_Benchmark):
    """DIODE validation set (indoor and outdoor laser scans).

    No sky information: sky pixels stay invalid (not scored).

    Get `val.tar.gz` from https://diode-dataset.org/ and unpack it; every scan folder holds,
    per view, `<stem>.png`, `<stem>_depth.npy` ([H, W, 1] metres) and `<stem>_depth_mask.npy`
    ([H, W], 1 = valid):

        root/{indoors,outdoor}/scene_*/scan_*/<stem>.png  (+ _depth.npy, _depth_mask.npy)

    Args:
      root: `val/`, or any folder below it (e.g. `val/indoors`); searched recursively.
    """

    DEPTH_SUFFIX, MASK_SUFFIX = "_depth.npy", "_depth_mask.npy"

    def __init__(self, root: str):
        _require_dir(root, "DIODE root")
        pairs = _pair_files(root, self.DEPTH_SUFFIX, root, (".png",))
        self.pairs = _require_pairs(pairs, root, "DIODE <stem>.png/<stem>_depth.npy")
        missing = [d for _, d in self.pairs if not os.path.isfile(self._mask_path(d))]
        if missing:
            raise FileNotFoundError(f"{self._mask_path(missing[0])}: depth mask not found")

    def _mask_path(self, depth_path: str) -> str:
        return depth_path[: -len(self.DEPTH_SUFFIX)] + self.MASK_SUFFIX

    def _read_depth(self, path: str) -> np.ndarray:
        depth = _squeeze_channel(_load_npy(path), path)
        mask = _squeeze_channel(_load_npy(self._mask_path(path)), path) > 0
        if mask.shape != depth.shape:
            raise ValueError(f"{path}: depth {depth.shape} and mask {mask.shape} differ")
        return np.where(mask, depth, 0.0).astype(np.float32)
