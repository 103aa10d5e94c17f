"""`python -m dajax.predict` end to end on a tiny converted checkpoint."""

import json
import os

import cv2
import numpy as np
import pytest
from hf_oracle import tiny_depth_anything

from dajax import convert, predict
from dajax.io.depth_png import read_depth_png16
from tests.io.hostile_images import png_header


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    tiny_depth_anything().save_pretrained(root / "hf")
    assert convert.main([str(root / "hf" / "model.safetensors"), str(root / "ckpt")]) == 0
    return str(root / "ckpt")


def test_folder_with_a_corrupt_file(tmp_path, weights, capsys):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    cv2.imwrite(str(inputs / "a.png"), rng.randint(0, 256, (30, 40, 3), np.uint8))
    cv2.imwrite(str(inputs / "sub" / "b.jpg"), rng.randint(0, 256, (25, 20, 3), np.uint8))
    (inputs / "broken.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "out"
    code = predict.main(
        [
            "--weights",
            weights,
            "--input",
            str(inputs),
            "--outdir",
            str(out),
            "--input-size",
            "42",
            "--save-npy",
            "--save-png16",
        ]
    )
    assert code == 1  # one file failed, the rest were written
    assert "broken.png" in capsys.readouterr().err
    side = cv2.imread(str(out / "a.png"))
    assert side.shape == (30, 2 * 40 + 50, 3)
    depth = np.load(out / "a.npy")
    assert depth.shape == (30, 40) and depth.dtype == np.float32
    assert np.load(out / "sub" / "b.npy").shape == (25, 20)  # the input tree is mirrored
    np.testing.assert_allclose(
        read_depth_png16(out / "a_16.png"), depth, atol=np.ptp(depth) / 65535 + 1e-7
    )
    assert json.loads((out / "a_16.json").read_text())["quantity"].startswith("disparity")


def test_pred_only_grayscale_and_list_file(tmp_path, weights):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((28, 28, 3), 90, np.uint8))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{img}\n")
    code = predict.main(
        [
            "--weights",
            weights,
            "--input",
            str(listing),
            "--outdir",
            str(tmp_path / "o"),
            "--input-size",
            "28",
            "--pred-only",
            "--grayscale",
        ]
    )
    assert code == 0
    out = cv2.imread(str(tmp_path / "o" / "x.png"))
    assert out.shape == (28, 28, 3) and (out[..., 0] == out[..., 1]).all()


def test_reference_implementation_writes_the_same_depth(tmp_path, weights, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.random.RandomState(1).randint(0, 256, (28, 42, 3), np.uint8))
    args = ["--weights", weights, "--input", str(img), "--input-size", "28", "--save-npy"]
    depth = {}
    for impl in ("fast", "reference"):
        out = tmp_path / impl
        assert predict.main([*args, "--outdir", str(out), "--impl", impl]) == 0
        depth[impl] = np.load(out / "x.npy")
    np.testing.assert_allclose(depth["reference"], depth["fast"], rtol=1e-4, atol=1e-5)
    bf16 = [*args, "--outdir", str(tmp_path / "bf16"), "--impl", "reference", "--dtype", "bfloat16"]
    assert predict.main(bf16) == 2
    assert "--impl reference computes in float32" in capsys.readouterr().err


def test_video_writes_a_depth_video(tmp_path, weights):
    from dajax.io.video import VideoReader, VideoWriter

    with VideoWriter(tmp_path / "clip.avi", 5, (42, 28)) as w:
        for i in range(3):
            w.write(np.full((28, 42, 3), 40 * i, np.uint8))
    code = predict.main(
        [
            "--weights",
            weights,
            "--input",
            str(tmp_path / "clip.avi"),
            "--video",
            "--outdir",
            str(tmp_path / "v"),
            "--input-size",
            "28",
        ]
    )
    assert code == 0
    with VideoReader(tmp_path / "v" / "clip_depth.mp4") as r:
        assert (r.width, r.height) == (2 * 42 + 50, 28) and len(list(r)) == 3


def test_h264_video_plays_in_browsers(tmp_path, weights):
    """`--codec h264`: an H.264 (avc1) mp4 of every frame, each side padded to even (the
    writer's odd sides are repeated once: 41 x 27 frames come back 42 x 28)."""
    from dajax.io.video import H264Writer, VideoReader, VideoWriter

    with H264Writer(tmp_path / "odd.mp4", 5, (41, 27)) as w:
        w.write(np.full((27, 41, 3), 200, np.uint8))
    with VideoReader(tmp_path / "odd.mp4") as r:
        (frame,) = list(r)
    assert frame.shape == (28, 42, 3) and abs(int(frame[-1, -1, 0]) - 200) < 8
    with VideoWriter(tmp_path / "clip.avi", 5, (42, 28)) as w:
        for i in range(3):
            w.write(np.full((28, 42, 3), 40 * i, np.uint8))
    args = ["--weights", weights, "--input", str(tmp_path / "clip.avi"), "--video"]
    args += ["--codec", "h264", "--outdir", str(tmp_path / "v"), "--input-size", "28"]
    assert predict.main(args) == 0
    out = tmp_path / "v" / "clip_depth.mp4"
    capture = cv2.VideoCapture(str(out))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    capture.release()
    assert fourcc in ("avc1", "h264")
    with VideoReader(out) as r:
        assert (r.width, r.height) == (2 * 42 + 50, 28) and len(list(r)) == 3


@pytest.mark.parametrize("flag", ["--save-npy", "--save-png16"])
def test_per_frame_data_flags_with_video_are_refused_in_one_line(tmp_path, weights, capsys, flag):
    args = ["--weights", weights, "--input", str(tmp_path / "clip.avi"), "--video", flag]
    assert predict.main(args + ["--outdir", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} write") and err.count("\n") == 1
    assert not (tmp_path / "v").exists()


def test_missing_weights_explain_where_to_get_them(tmp_path, capsys):
    image = str(tmp_path / "x.png")
    cv2.imwrite(image, np.zeros((8, 8, 3), np.uint8))
    out = str(tmp_path / "out")
    assert predict.main(["--input", image, "--outdir", out]) == 2
    assert "huggingface.co/depth-anything" in capsys.readouterr().err
    assert (
        predict.main(["--weights", str(tmp_path / "nope.pth"), "--input", image, "--outdir", out])
        == 2
    )
    assert "no such checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_on_built_in_scenes(tmp_path, capsys):
    code = predict.main(
        ["--demo", "--outdir", str(tmp_path), "--input-size", "28", "--arch", "vits", "--save-npy"]
    )
    assert code == 0
    assert "RANDOM" in capsys.readouterr().err
    assert np.load(tmp_path / "scene_0.npy").shape == (518, 518)
    assert (tmp_path / "inputs" / "scene_1.png").exists()


def test_metric_models_point_clouds_units_and_colours(tmp_path, weights, capsys):
    from dajax.inference import DepthEstimator
    from dajax.io.pointcloud import read_ply
    from dajax.visualize import colorize, default_cmap

    cv2.imwrite(str(tmp_path / "x.png"), np.full((28, 42, 3), 90, np.uint8))
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "x.png"), "--outdir", str(out), "--input-size", "28"]
    assert predict.main(["--weights", weights, "--ply", *args]) == 2  # relative checkpoint
    assert "--ply needs a metric model" in capsys.readouterr().err
    metric = tmp_path / "metric"
    tiny_depth_anything(metric=True, max_depth=20).save_pretrained(metric / "hf")
    assert convert.main([str(metric / "hf" / "model.safetensors"), str(metric / "ckpt")]) == 0
    flags = ["--weights", str(metric / "ckpt"), "--ply", "--focal", "30", "--save-npy", *args]
    assert predict.main([*flags, "--save-png16"]) == 0
    points, colors = read_ply(out / "x.ply")
    depth = np.load(out / "x.npy")
    assert points.shape == (28 * 42, 3) and (colors == 90).all()
    np.testing.assert_allclose(points[:, 2], depth.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(points[0, :2] / points[0, 2], [-20.5 / 30, -13.5 / 30], rtol=1e-5)
    # Issue 21 #2: metres are labelled as such, and near has disparity's near colour.
    meta = json.loads((out / "x_16.json").read_text())
    assert (meta["quantity"], meta["unit"]) == ("depth (metric)", "m")
    picture = cv2.imread(str(out / "x.png"))[:, 42 + 50 :, ::-1]
    version = DepthEstimator.from_pretrained(metric / "ckpt").config.version
    nearest, farthest = colorize(np.array([1.0, 0.0]), default_cmap(version))
    np.testing.assert_array_equal(picture[np.unravel_index(depth.argmin(), depth.shape)], nearest)
    np.testing.assert_array_equal(picture[np.unravel_index(depth.argmax(), depth.shape)], farthest)


def test_lying_headers_and_huge_images_are_skipped_and_the_rest_written(tmp_path, weights, capsys):
    """Issue 31 #3: a 74-byte PNG claiming 100000x100000 raised an uncaught cv2.error that lost
    the good images beside it and the summary; every bad file is now one `skipped:` line."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.RandomState(0)
    cv2.imwrite(str(inputs / "a.png"), rng.randint(0, 256, (30, 40, 3), np.uint8))
    cv2.imwrite(str(inputs / "b.jpg"), rng.randint(0, 256, (25, 20, 3), np.uint8))
    bad = {"lying.png": (100_000, 100_000), "huge.png": (9000, 9000), "wide.png": (2_000_000, 1)}
    for name, size in bad.items():
        (inputs / name).write_bytes(png_header(*size))
    os.mkfifo(inputs / "fifo.png")  # would block a plain open() forever
    args = ["--weights", weights, "--input", str(inputs), "--outdir", str(out)]
    assert predict.main([*args, "--input-size", "28", "--save-npy"]) == 1
    printed, err = capsys.readouterr()
    assert "wrote 2 of 6" in printed and "4 failed" in printed
    skipped = sorted(line for line in err.splitlines() if line.startswith("skipped: "))
    assert [line.split(":")[1].strip() for line in skipped] == sorted(
        str(inputs / name) for name in [*bad, "fifo.png"]
    )
    assert "Traceback" not in err and "cv2.error" not in err
    assert np.load(out / "a.npy").shape == (30, 40) and np.load(out / "b.npy").shape == (25, 20)


def test_a_truncated_video_is_written_with_a_warning(tmp_path, weights, capsys):
    from dajax.io.video import VideoWriter

    with VideoWriter(tmp_path / "clip.avi", 5, (42, 28)) as w:
        for i in range(30):
            w.write(np.full((28, 42, 3), 8 * i, np.uint8))
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    args = ["--weights", weights, "--video", "--input", str(tmp_path / "cut.avi")]
    assert predict.main([*args, "--outdir", str(tmp_path / "v"), "--input-size", "28"]) == 0
    printed, err = capsys.readouterr()
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    decoded = int(warning.split(" decoded ")[1].split()[0])
    assert warning == (
        f"warning: {tmp_path / 'cut.avi'}: decoded {decoded} of the 30 frames the file "
        "declares (truncated or damaged?)"
    )
    assert f"({decoded} frames)" in printed and 0 < decoded < 30
