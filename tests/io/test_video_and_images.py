"""Video round trip and image decoding of unusual files."""

import cv2
import numpy as np
import pytest

from dajax.io.images import ImageReadError, decode_image, read_image
from dajax.io.video import VideoReader, VideoWriter
from tests.io.hostile_images import png_header


def test_video_round_trip(tmp_path):
    path = tmp_path / "clip.avi"
    frames = [np.full((32, 48, 3), (10 * i, 100, 200), np.uint8) for i in range(5)]
    with VideoWriter(path, fps=10, size=(48, 32)) as writer:
        for frame in frames:
            writer.write(frame)
    with VideoReader(path) as reader:
        assert (reader.width, reader.height) == (48, 32)
        back = list(reader)
    assert len(back) == 5
    assert np.abs(back[3].astype(int) - frames[3]).mean() < 8  # MJPG is lossy


def test_video_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no such video"):
        VideoReader(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="junk.mp4"):
        VideoReader(tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match="unsupported video type"):
        VideoWriter(tmp_path / "x.gif", 10, (8, 8))


@pytest.mark.parametrize(
    "array, expect",
    [
        (np.full((4, 4), 77, np.uint8), np.full((4, 4, 3), 77)),  # grayscale
        (np.full((4, 4, 4), (10, 20, 30, 255), np.uint8), np.full((4, 4, 3), (30, 20, 10))),
        (np.full((4, 4), 257 * 200, np.uint16), np.full((4, 4, 3), 200)),  # 16-bit
    ],
    ids=["gray", "bgra", "uint16"],
)
def test_unusual_pngs_become_rgb_uint8(tmp_path, array, expect):
    path = str(tmp_path / "x.png")
    cv2.imwrite(path, array)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (4, 4, 3)
    np.testing.assert_array_equal(image, expect)


def test_unreadable_images_name_the_file(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="empty"):
        decode_image(b"", "empty.png")


def test_exif_orientation_is_applied_as_cv2_imread_does(tmp_path):
    from PIL import Image

    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :5] = 255  # a white band on the left of the stored pixels
    photo = Image.fromarray(pixels)
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo.save(tmp_path / "p.jpg", quality=100, exif=exif)
    image = read_image(tmp_path / "p.jpg")
    assert image.shape == (20, 10, 3)  # as people see the photo
    np.testing.assert_array_equal(image, cv2.imread(str(tmp_path / "p.jpg"))[:, :, ::-1])
    assert image[:5].mean() > 200 and image[-5:].mean() < 50  # the band is now on top
    from dajax.io.images import as_rgb_image

    with Image.open(tmp_path / "p.jpg") as opened:
        np.testing.assert_array_equal(as_rgb_image(opened), image)


@pytest.mark.parametrize(
    "width, height, needle",
    [
        (100_000, 100_000, "more than 178956970 pixels, over the budget"),  # PIL's own limit
        (9000, 9000, "9000x9000 is 81000000 pixels, over the budget of 67108864"),
        (2_000_000, 1, "not a decodable image"),  # within budget, past OpenCV's width limit
    ],
)
def test_images_over_the_pixel_budget_are_refused_from_the_header(tmp_path, width, height, needle):
    """Issue 31 #3: a 74-byte PNG claiming 100000x100000 raised cv2.error, and a 1 MB PNG of
    20000x20000 took predict to 17 GiB; the header is now read first."""
    import resource
    import time

    path = tmp_path / "lying.png"
    path.write_bytes(png_header(width, height))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and needle in message


def test_the_pixel_budget_is_a_parameter_and_covers_pil_images(tmp_path):
    from PIL import Image

    from dajax.io.images import MAX_PIXELS, as_rgb_image

    path = str(tmp_path / "x.png")
    cv2.imwrite(path, np.zeros((20, 30, 3), np.uint8))
    assert read_image(path).shape == (20, 30, 3)
    with pytest.raises(ImageReadError, match=r"x.png: 30x20 is 600 pixels, over the budget of 599"):
        read_image(path, max_pixels=599)
    big = Image.new("L", (1, MAX_PIXELS + 1))  # never decoded: refused from its size
    with pytest.raises(ImageReadError, match="a PIL image: 1x67108865"):
        as_rgb_image(big)


def test_only_regular_files_of_a_bounded_size_are_read(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(ImageReadError, match=r"fifo.png: not a regular file"):
        read_image(tmp_path / "fifo.png")
    (tmp_path / "big.png").write_bytes(bytes(1601))
    with pytest.raises(ImageReadError, match=r"big.png: 1601 bytes, more than an image within"):
        read_image(tmp_path / "big.png", max_pixels=100)


def test_a_truncated_video_says_how_many_frames_it_lost(tmp_path):
    path = tmp_path / "clip.avi"
    with VideoWriter(path, fps=5, size=(42, 28)) as writer:
        for i in range(30):
            writer.write(np.random.RandomState(i).randint(0, 256, (28, 42, 3), np.uint8))
    with VideoReader(path) as reader:
        assert len(list(reader)) == 30 and reader.shortfall() is None
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(cut) as reader:
        decoded = len(list(reader))
        assert 0 < decoded < 30 == reader.frame_count
        assert reader.shortfall() == (
            f"{cut}: decoded {decoded} of the 30 frames the file declares (truncated or damaged?)"
        )
