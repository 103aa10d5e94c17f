"""Point clouds from metric depth: pinhole back-projection and PLY files.

Camera frame as in OpenCV: x right, y down, z forward (metres). A pixel (u, v) (column, row;
centres at integer coordinates, as in calibration files) with depth z maps to
`((u − cx)·z / fx, (v − cy)·z / fy, z)`.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

PLY_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
)

PLY_TYPES = {"f": "float", "u": "uchar"}  # numpy dtype kind -> PLY property type


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: focal lengths fx, fy and principal point cx, cy."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, fov_x_degrees: float) -> Intrinsics:
        """Square pixels, principal point at the image centre, horizontal field of view."""
        if not 0 < fov_x_degrees < 180:
            raise ValueError(f"field of view must be in (0, 180) degrees, got {fov_x_degrees}")
        f = 0.5 * width / math.tan(math.radians(fov_x_degrees) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2)

    @classmethod
    def from_focal(cls, width: int, height: int, fx: float, fy: float | None = None):
        """Given focal length(s) in pixels, principal point at the image centre."""
        if fx <= 0 or (fy is not None and fy <= 0):
            raise ValueError(f"focal lengths must be > 0 pixels, got fx={fx}, fy={fy}")
        return cls(fx, fy or fx, (width - 1) / 2, (height - 1) / 2)


def depth_to_points(
    depth: np.ndarray, intrinsics: Intrinsics, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Back-projects a depth map.

    Args:
      depth: [H, W] metres (z along the optical axis, not distance along the ray).
      intrinsics: the camera's pinhole intrinsics (pixels).
      mask: [H, W] bool, pixels to keep; default finite depth > 0.

    Returns:
      points [N, 3] float32 metres in the camera frame, and the kept pixels' flat indices [N]
      (row-major into [H, W]) to pick colours with.
    """
    depth = np.asarray(depth, np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    rows, cols = np.nonzero(keep)
    z = depth[rows, cols]
    x = (cols - intrinsics.cx) * z / intrinsics.fx
    y = (rows - intrinsics.cy) * z / intrinsics.fy
    return np.stack([x, y, z], axis=1).astype(np.float32), rows * depth.shape[1] + cols


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None):
    """Writes a binary little-endian PLY of coloured vertices.

    Args:
      points: [N, 3] float metres.
      colors: [N, 3] uint8 RGB; default mid grey.
    """
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got shape {points.shape}")
    if colors is None:
        colors = np.full(points.shape, 128, np.uint8)
    colors = np.asarray(colors)
    if colors.shape != points.shape or colors.dtype != np.uint8:
        raise ValueError(
            f"colors must be [N, 3] uint8 like points, got {colors.shape} {colors.dtype}"
        )
    vertices = np.empty(len(points), PLY_VERTEX)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colors[:, i]
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by dajax (metres, OpenCV camera frame)",
        f"element vertex {len(points)}",
        *(
            f"property {'float' if t.kind == 'f' else 'uchar'} {n}"
            for n, (t, _) in PLY_VERTEX.fields.items()
        ),
        "end_header",
    ]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertices.tobytes())


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads a PLY written by `write_ply`: (points [N, 3] float32, colors [N, 3] uint8)."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian PLY files are read")
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    body = data[end + len(b"end_header\n") :]
    if len(body) != count * PLY_VERTEX.itemsize:
        raise ValueError(f"{path}: {count} vertices need {count * PLY_VERTEX.itemsize} bytes")
    vertices = np.frombuffer(body, PLY_VERTEX)
    points = np.stack([vertices[a] for a in "xyz"], axis=1)
    colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1)
    return points, colors
