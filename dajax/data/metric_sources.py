"""Depth Anything V2's own metric training sets: Hypersim (indoor) and Virtual KITTI 2 (outdoor).

Both read V2's split lists (`metric_depth/dataset/splits/{hypersim,vkitti2}/*.txt`): one
`rgb_path depth_path` pair per line. Relative paths are joined onto `root`; absolute ones are
used as written (V2's own lists hold absolute paths of its authors' machine: rewrite their
prefix, e.g. with `sed`, to where the data lives here). Records are the common
`{image [H, W, 3] uint8 RGB, depth [H, W] float32 metres, mask [H, W] bool, source}` of
`dajax.data.rgbd_sources.make_record`. A missing list file or root, or a malformed line,
fails when the source is built; an unreadable frame fails when read, naming its file.
"""

from __future__ import annotations

import os

import numpy as np

from dajax.data.rgbd_sources import _require, make_record, read_depth_png
from dajax.io.images import read_image

# Hypersim renders every frame on a 1024 x 768 grid with a 60-degree horizontal field of view:
# focal = 512 / tan(30 deg) = 886.81 pixels, principal point at the image centre.
HYPERSIM_SHAPE = (768, 1024)
HYPERSIM_FOCAL = 886.81
VKITTI2_DEPTH_SCALE = 100.0  # the depth PNGs hold centimetres
VKITTI2_SKY_DEPTH = 655.35  # metres: the largest 16-bit value, which the renderer gives the sky


def read_pair_list(list_file: str, root: str) -> list[tuple[str, str]]:
    """`rgb_path depth_path` lines -> [(image path, depth path)], joined onto `root`.

    Raises:
      FileNotFoundError: a missing list file or root; ValueError: a line without exactly two
        fields (naming `list_file:line`), or a list without pairs.
    """
    _require(list_file, "split list file")
    if root:
        _require(root, "data root")
    pairs = []
    with open(list_file) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(
                    f"{list_file}:{number}: expected 'rgb_path depth_path', "
                    f"got {len(fields)} fields"
                )
            pairs.append((os.path.join(root, fields[0]), os.path.join(root, fields[1])))
    if not pairs:
        raise ValueError(f"{list_file}: no 'rgb_path depth_path' lines")
    return pairs


def distance_to_planar_depth(distance: np.ndarray, focal: float) -> np.ndarray:
    """[H, W] distance from the camera centre -> [H, W] planar depth z (same units).

    The pixel in column c and row r looks along the ray (x, y, focal) with x = c + 0.5 - W/2,
    y = r + 0.5 - H/2 (pixel centres; principal point at the image centre, focal in pixels);
    the point at distance d along that ray has z = d * focal / |(x, y, focal)|.
    """
    h, w = distance.shape
    x = np.arange(w) + 0.5 - w / 2
    y = np.arange(h) + 0.5 - h / 2
    ray_length = np.sqrt(x[None, :] ** 2 + y[:, None] ** 2 + focal**2)
    return (np.asarray(distance, np.float64) * (focal / ray_length)).astype(np.float32)


def read_hypersim_distance(path: str) -> np.ndarray:
    """A Hypersim `frame.NNNN.depth_meters.hdf5` -> [768, 1024] float32 distance in metres from
    the camera centre (not planar depth); NaN where nothing was rendered.

    Raises:
      FileNotFoundError or ValueError naming `path`: missing, not HDF5, no `dataset`, or not
        on Hypersim's 768 x 1024 grid (the one `HYPERSIM_FOCAL` belongs to).
    """
    import h5py

    _require(path, "Hypersim depth file")
    try:
        with h5py.File(path, "r") as f:
            if "dataset" not in f:
                raise ValueError(f"{path}: expected an HDF5 dataset 'dataset', got {list(f)}")
            distance = np.asarray(f["dataset"], np.float32)
    except OSError as err:
        raise ValueError(f"{path}: not an HDF5 file: {err}") from err
    if distance.shape != HYPERSIM_SHAPE:
        raise ValueError(
            f"{path}: distances of shape {distance.shape}, expected {HYPERSIM_SHAPE} (the grid "
            f"whose focal length is {HYPERSIM_FOCAL} px)"
        )
    return distance


class Hypersim:
    """Hypersim frames from a V2 split list of `tonemap.jpg depth_meters.hdf5` pairs.

    As V2's `metric_depth/dataset/hypersim.py`, each depth file's distances from the camera
    centre become planar depth (`distance_to_planar_depth` with `HYPERSIM_FOCAL`); NaN (no
    geometry, e.g. through windows) is masked. Depth is not capped here: the metric loss keeps
    `min_depth <= depth <= max_depth` (20 m in V2). No sky information: sky pixels (NaN) stay
    invalid (no loss).
    """

    def __init__(self, list_file: str, root: str = ""):
        self.pairs = read_pair_list(list_file, root)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        image_path, depth_path = self.pairs[i]
        depth = distance_to_planar_depth(read_hypersim_distance(depth_path), HYPERSIM_FOCAL)
        return make_record(read_image(image_path), depth, f"{image_path} + {depth_path}")


class VirtualKITTI2:
    """Virtual KITTI 2 frames from a V2 split list of `rgb_NNNNN.jpg depth_NNNNN.png` pairs.

    Depth PNGs are 16-bit planar depth in centimetres (metres = value / 100); as V2's
    `metric_depth/dataset/vkitti2.py`, depth beyond `max_depth` metres is masked. The sky is
    stored as 65535 (655.35 m): records carry it as `sky [H, W] bool`, so relative training
    supervises it as disparity 0, while metric targets and evaluation leave it invalid.
    """

    def __init__(self, list_file: str, root: str = "", max_depth: float = 80.0):
        self.pairs = read_pair_list(list_file, root)
        self.max_depth = max_depth

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        image_path, depth_path = self.pairs[i]
        depth = read_depth_png(depth_path, VKITTI2_DEPTH_SCALE)
        source = f"{image_path} + {depth_path}"
        record = make_record(read_image(image_path), depth, source, None, self.max_depth)
        record["sky"] = depth >= VKITTI2_SKY_DEPTH
        return record
