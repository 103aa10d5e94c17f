"""Video round trip and image decoding of unusual files."""

import cv2
import numpy as np
import pytest

from dajax.io.images import ImageReadError, decode_image, read_image
from dajax.io.video import VideoReader, VideoWriter


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
