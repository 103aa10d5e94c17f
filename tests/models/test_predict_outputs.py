"""`dajax.predict`: outputs never lost, overwritten or read back; ordinary mistakes are one line
(issue 21 items 1, 2, 7, 9; issue 22 items 3, 6, 7)."""

import json

import cv2
import numpy as np
import pytest
from hf_oracle import tiny_depth_anything

from dajax import convert, predict
from dajax.inference import DepthEstimator
from dajax.visualize import colorize

RNG = np.random.RandomState(0)


def _image(path, hw, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.randint(0, 256, (*hw, 3), np.uint8) if value is None else np.full((*hw, 3), value)
    assert cv2.imwrite(str(path), pixels.astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    tiny_depth_anything().save_pretrained(root / "hf")
    assert convert.main([str(root / "hf" / "model.safetensors"), str(root / "ckpt")]) == 0
    return {"ckpt": str(root / "ckpt"), "safetensors": str(root / "hf" / "model.safetensors")}


def run(weights, *args):
    return predict.main(["--weights", weights["ckpt"], "--input-size", "28", *map(str, args)])


def test_colliding_stems_keep_their_folders_and_extensions(tmp_path, weights, capsys):
    sizes = {"a/x.jpg": (20, 30), "b/x.png": (30, 20), "a.jpg": (16, 16), "a.png": (18, 24)}
    sizes["sub/a.jpg"] = (22, 14)
    for name, hw in sizes.items():
        _image(tmp_path / "in" / name, hw)
    assert run(weights, "--input", tmp_path / "in", "--outdir", tmp_path / "out", "--save-npy") == 0
    assert "wrote 5 of 5" in capsys.readouterr().out
    expect = {"a/x": (20, 30), "b/x": (30, 20), "a_jpg": (16, 16), "a_png": (18, 24)}
    expect["sub/a"] = (22, 14)
    for base, hw in expect.items():
        assert np.load(tmp_path / "out" / f"{base}.npy").shape == hw
        assert cv2.imread(str(tmp_path / "out" / f"{base}.png")).shape == (hw[0], 2 * hw[1] + 50, 3)


def test_outputs_never_overwrite_or_get_read_back(tmp_path, weights, capsys):
    same = tmp_path / "same"
    original = _image(same / "demo1.png", (20, 20)).read_bytes()
    assert run(weights, "--input", same, "--outdir", same) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert (same / "demo1.png").read_bytes() == original
    for _ in range(2):  # an --outdir inside the input folder is skipped when searching it
        assert run(weights, "--input", same, "--outdir", same / "out") == 0
        assert "wrote 1 of 1" in capsys.readouterr().out
    assert sorted(p.name for p in (same / "out").iterdir()) == ["demo1.png"]
    jpg = _image(tmp_path / "photo" / "p.jpg", (20, 20))
    assert run(weights, "--input", jpg, "--outdir", jpg.parent) == 0  # p.png beside p.jpg is fine
    assert run(weights, "--input", jpg.parent, "--outdir", jpg.parent) == 2  # would read p.png


def test_failed_writes_are_counted_and_reported(tmp_path, weights, capsys):
    _image(tmp_path / "in" / "a.png", (20, 20))
    _image(tmp_path / "in" / "b.png", (20, 20))
    (tmp_path / "out" / "b.png").mkdir(parents=True)  # b's output path is taken by a folder
    assert run(weights, "--input", tmp_path / "in", "--outdir", tmp_path / "out") == 1
    out, err = capsys.readouterr()
    assert "wrote 1 of 2" in out and "1 failed" in out
    assert "b.png: cannot write" in err and "Traceback" not in err
    assert cv2.imread(str(tmp_path / "out" / "a.png")) is not None


def test_outdir_that_cannot_be_used_is_one_line(tmp_path, weights, capsys):
    image = _image(tmp_path / "x.png", (20, 20))
    (tmp_path / "file").write_text("")
    for outdir in (tmp_path / "file", tmp_path / "file" / "sub"):
        assert run(weights, "--input", image, "--outdir", outdir) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(outdir) in err


def test_wrong_input_is_found_before_the_weights_load(tmp_path, weights, capsys, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded before the input was checked")

    monkeypatch.setattr(DepthEstimator, "from_pretrained", no_loading)
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    out = tmp_path / "out"
    cases = {
        tmp_path / "missing.png": "no such file",
        tmp_path / "clip.mp4": "add --video",
        tmp_path: "no images",
    }
    for spec, message in cases.items():
        assert run(weights, "--input", spec, "--outdir", out) == 2
        err = capsys.readouterr().err
        assert message in err and err.strip().count("\n") == 0
    assert run(weights, "--video", "--input", tmp_path / "missing.mp4", "--outdir", out) == 2
    assert "no such video" in capsys.readouterr().err
    assert not out.exists()  # no empty output folder left behind


def test_list_files_skip_comments_and_blank_lines(tmp_path, weights, capsys):
    image = _image(tmp_path / "x.png", (20, 20))
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos to predict\n\n{image}\n  # {tmp_path / 'gone.png'}\n")
    assert run(weights, "--input", listing, "--outdir", tmp_path / "o") == 0
    assert "wrote 1 of 1" in capsys.readouterr().out


def test_videos_that_hold_no_frame_are_not_reported_as_written(tmp_path, weights, capsys):
    from dajax.io.video import VideoWriter

    with VideoWriter(tmp_path / "empty.avi", 5, (28, 28)):
        pass  # a container with no frame
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    for clip in ("empty.avi", "junk.mp4"):
        code = run(weights, "--video", "--input", tmp_path / clip, "--outdir", tmp_path / "v")
        out, err = capsys.readouterr()
        assert code != 0 and "wrote" not in out and "Traceback" not in err
        assert [line for line in err.splitlines() if clip in line][0].startswith("error: ")
    assert not list(tmp_path.glob("v/*.mp4"))


def test_degenerate_images_are_capped_and_never_lose_their_batch(tmp_path, weights, monkeypatch):
    shapes, forward = [], DepthEstimator.forward

    def recording_forward(self, x):
        shapes.append(np.shape(x)[1:3])
        if (np.asarray(x) > 2.2).all(axis=(1, 2, 3)).any():  # a white image: "fails"
            raise RuntimeError("simulated device failure")
        return forward(self, x)

    monkeypatch.setattr(DepthEstimator, "forward", recording_forward)
    _image(tmp_path / "in" / "tall.png", (300, 1))
    _image(tmp_path / "in" / "wide.png", (1, 400))
    for name in ("a", "c"):
        _image(tmp_path / "in" / f"{name}.png", (20, 20))
    _image(tmp_path / "in" / "white.png", (20, 20), value=255)
    args = ["--input", tmp_path / "in", "--outdir", tmp_path / "out", "--save-npy"]
    code = run(weights, *args, "--batch-size", "4")
    assert code == 1  # white.png failed, the others were written
    assert max(max(s) for s in shapes) <= 8 * 28
    assert np.load(tmp_path / "out" / "tall.npy").shape == (300, 1)
    assert np.load(tmp_path / "out" / "wide.npy").shape == (1, 400)
    assert (tmp_path / "out" / "a.npy").exists() and (tmp_path / "out" / "c.npy").exists()
    assert not (tmp_path / "out" / "white.npy").exists()


def test_capped_images_and_failures_name_the_file(tmp_path, weights, capsys):
    _image(tmp_path / "tall.png", (300, 1))
    assert run(weights, "--input", tmp_path / "tall.png", "--outdir", tmp_path / "o") == 0
    err = capsys.readouterr().err
    assert "tall.png: a 300x1 image would need a 8400x28 network input; using 224x14" in err


def test_progress_moves_once_per_image(tmp_path, weights, monkeypatch):
    steps = []

    class RecordingBar:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            steps.append(n)

        write = staticmethod(print)

    monkeypatch.setattr(predict, "tqdm", RecordingBar)
    for i in range(5):
        _image(tmp_path / "in" / f"{i}.png", (20, 20))
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG garbage")
    run(weights, "--input", tmp_path / "in", "--outdir", tmp_path / "out", "--batch-size", "4")
    assert steps == [1] * 6


def test_metric_maps_are_labelled_in_metres_and_coloured_near_red(tmp_path, capsys):
    metric = tmp_path / "metric"
    tiny_depth_anything(metric=True, max_depth=20).save_pretrained(metric / "hf")
    assert convert.main([str(metric / "hf" / "model.safetensors"), str(metric / "ckpt")]) == 0
    _image(tmp_path / "x.png", (28, 42))
    flags = ["--input", tmp_path / "x.png", "--outdir", tmp_path / "o", "--input-size", "28"]
    args = ["--weights", metric / "ckpt", *flags, "--pred-only", "--save-npy", "--save-png16"]
    assert predict.main(list(map(str, args))) == 0
    meta = json.loads((tmp_path / "o" / "x_16.json").read_text())
    assert (meta["quantity"], meta["unit"]) == ("depth (metric)", "m")
    depth = np.load(tmp_path / "o" / "x.npy")
    picture = cv2.imread(str(tmp_path / "o" / "x.png"))[:, :, ::-1]
    near = np.unravel_index(depth.argmin(), depth.shape)
    far = np.unravel_index(depth.argmax(), depth.shape)
    from dajax.visualize import default_cmap

    version = DepthEstimator.from_pretrained(metric / "ckpt").config.version
    nearest, farthest = colorize(np.array([1.0, 0.0]), default_cmap(version))
    np.testing.assert_array_equal(picture[near], nearest)  # as disparity's largest value
    np.testing.assert_array_equal(picture[far], farthest)


def test_pos_embed_flag_reaches_the_loader(tmp_path, weights):
    image = _image(tmp_path / "x.png", (20, 30))
    maps = {}
    for rule in ("official", "hf"):
        args = ["--weights", weights["safetensors"], "--input", image, "--input-size", "56"]
        args += ["--outdir", tmp_path / rule, "--save-npy", "--pos-embed", rule]
        assert predict.main(list(map(str, args))) == 0
        maps[rule] = np.load(tmp_path / rule / "x.npy")
    assert not np.allclose(maps["official"], maps["hf"])  # the 7x7 grid is resized differently


def test_help_documents_every_option_with_its_default():
    parser = predict.build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = formatter._expand_help(action)
        assert text, f"{action.option_strings} has no help"
        if action.nargs != 0 and not action.required:
            assert "default" in text, f"{action.option_strings}: {text!r} states no default"
