"""Video frames in and out (OpenCV), as RGB uint8 arrays."""

from __future__ import annotations

import abc
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


class _FrameWriter(abc.ABC):
    """What both writers share: `write` checks each frame against `size`, appends it and counts
    it in `frames`; a `with` block closes the file."""

    path: str
    size: tuple[int, int]
    frames: int

    def write(self, frame: np.ndarray) -> None:
        """Appends one [H, W, 3] uint8 RGB frame of the writer's size."""
        if (frame.shape[1], frame.shape[0]) != self.size or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame {frame.shape} {frame.dtype} does not match size {self.size}"
            )
        self._append(frame)
        self.frames += 1

    @abc.abstractmethod
    def _append(self, frame: np.ndarray) -> None:
        """Writes one checked frame to the file."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finishes the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter(_FrameWriter):
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

    def _append(self, frame: np.ndarray) -> None:
        self._writer.write(np.ascontiguousarray(frame[:, :, ::-1]))

    def close(self) -> None:
        """Finishes the file."""
        self._writer.release()


CODECS = ("mp4v", "h264")  # `open_writer`'s choices: OpenCV's MPEG-4 part 2, or H.264


class H264Writer(_FrameWriter):
    """Writes [H, W, 3] uint8 RGB frames as H.264 (libx264, yuv420p, `+faststart`): the mp4 that
    browsers play. Needs the `video` extra (`imageio-ffmpeg`, whose wheel ships an ffmpeg).
    yuv420p needs even sides, so an odd last row or column is repeated once.

    Args and `frames`: as `VideoWriter`'s (the suffix must be .mp4, .mov or .mkv).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
        self.path = os.fspath(path)
        suffix = os.path.splitext(self.path)[1].lower()
        if suffix not in (".mp4", ".mov", ".mkv"):
            raise ValueError(f"{self.path}: H.264 needs an .mp4, .mov or .mkv file")
        try:
            import imageio_ffmpeg
        except ImportError:
            raise ValueError(
                f"{self.path}: H.264 output needs imageio-ffmpeg: pip install -e '.[video]'"
            ) from None
        self.size = tuple(size)
        self.frames = 0
        self._pad = (self.size[1] % 2, self.size[0] % 2)  # rows, columns to repeat
        even = (self.size[0] + self._pad[1], self.size[1] + self._pad[0])
        self._frames = imageio_ffmpeg.write_frames(
            self.path,
            even,
            fps=float(fps),
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            output_params=["-movflags", "+faststart"],
        )
        self._frames.send(None)

    def _append(self, frame: np.ndarray) -> None:
        padded = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        self._frames.send(np.ascontiguousarray(padded))

    def close(self) -> None:
        """Finishes the file."""
        self._frames.close()


def open_writer(path: str | os.PathLike, fps: float, size: tuple[int, int], codec: str = "mp4v"):
    """A `VideoWriter` (`codec='mp4v'`: OpenCV's, by the suffix) or an `H264Writer` ('h264')."""
    if codec not in CODECS:
        raise ValueError(f"unknown video codec {codec!r}; expected one of {CODECS}")
    return H264Writer(path, fps, size) if codec == "h264" else VideoWriter(path, fps, size)
