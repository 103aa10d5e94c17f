"""Video frames in and out (OpenCV), as RGB uint8 arrays."""

from __future__ import annotations

import os

import cv2
import numpy as np

from dajax.io.images import check_pixels

FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mov": "mp4v", ".mkv": "mp4v"}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


class VideoReader:
    """Iterates a video's frames as [H, W, 3] uint8 RGB.

    `frame_count` is what the container declares, `frames_read` what was decoded so far;
    `shortfall()` says when decoding stopped early (a truncated file). Raises ValueError naming
    the file when it cannot be opened, holds no frames, or its frames are over the pixel budget
    of `dajax.io.images.MAX_PIXELS`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise ValueError(f"{self.path}: no such video file")
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise ValueError(f"{self.path}: cannot open as a video")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frames_read = 0
        if self.width == 0 or self.height == 0:
            raise ValueError(f"{self.path}: video has no frames")
        check_pixels(self.width, self.height, self.path)  # the images' budget, per frame

    def __iter__(self):
        while True:
            ok, frame = self._cap.read()
            if not ok:
                return
            self.frames_read += 1
            yield np.ascontiguousarray(frame[:, :, ::-1])

    def shortfall(self) -> str | None:
        """After iterating: a one-line warning naming the file when fewer frames decoded than
        the container declares, else None."""
        if self.frames_read >= self.frame_count:
            return None
        return (
            f"{self.path}: decoded {self.frames_read} of the {self.frame_count} frames the "
            "file declares (truncated or damaged?)"
        )

    def close(self) -> None:
        """Releases the file."""
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Writes [H, W, 3] uint8 RGB frames (mp4v for .mp4/.mov/.mkv, MJPG for .avi).

    Args:
      path: output file; its suffix picks the codec.
      fps: frames per second.
      size: (width, height) of every frame.

    `frames` counts the frames written.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        self.path = os.fspath(path)
        suffix = os.path.splitext(self.path)[1].lower()
        if suffix not in FOURCC:
            raise ValueError(f"{self.path}: unsupported video type; use one of {tuple(FOURCC)}")
        self.size = tuple(size)
        self.frames = 0
        fourcc = cv2.VideoWriter_fourcc(*FOURCC[suffix])
        self._writer = cv2.VideoWriter(self.path, fourcc, float(fps), self.size)
        if not self._writer.isOpened():
            raise ValueError(f"{self.path}: cannot open for writing ({FOURCC[suffix]} codec)")

    def write(self, frame: np.ndarray) -> None:
        """Appends one RGB frame of the writer's size."""
        if (frame.shape[1], frame.shape[0]) != self.size or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame {frame.shape} {frame.dtype} does not match size {self.size}"
            )
        self._writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        self.frames += 1

    def close(self) -> None:
        """Finishes the file."""
        self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
