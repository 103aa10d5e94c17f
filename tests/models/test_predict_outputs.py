"""`dajax.predict`: outputs never lost, overwritten or read back; ordinary mistakes are one line
(issue 21 items 1, 2, 7, 9; issue 22 items 3, 6, 7)."""

import cv2
import numpy as np
import pytest
from hf_oracle import tiny_depth_anything

from dajax import convert, predict
from dajax.inference import DepthEstimator

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
    names = {"a/x.jpg": "a/x", "b/x.png": "b/x", "a.jpg": "a_jpg", "a.png": "a_png"}
    names["sub/a.jpg"] = "sub/a"
    for name in names:
        _image(tmp_path / "in" / name, (20, 20))
    assert run(weights, "--input", tmp_path / "in", "--outdir", tmp_path / "out", "--save-npy") == 0
    assert "wrote 5 of 5" in capsys.readouterr().out
    for name, base in names.items():  # each picture's left half is its own input
        picture = cv2.imread(str(tmp_path / "out" / f"{base}.png"))
        np.testing.assert_array_equal(picture[:, :20], cv2.imread(str(tmp_path / "in" / name)))
        assert np.load(tmp_path / "out" / f"{base}.npy").shape == (20, 20)


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
    _image(tmp_path / "photo" / "p.jpg", (20, 20))  # p.png would be read back next time
    assert run(weights, "--input", tmp_path / "photo", "--outdir", tmp_path / "photo") == 2
    assert "read back as an input" in capsys.readouterr().err


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
    unwritable = "/proc/dajax-test-out"  # /proc takes no new folders, not even from root
    for outdir in (tmp_path / "file", tmp_path / "file" / "sub", unwritable):
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


def test_degenerate_images_are_capped_and_never_lose_their_batch(
    tmp_path, weights, monkeypatch, capsys
):
    shapes, forward = [], DepthEstimator.forward

    def recording_forward(self, x):
        shapes.append(np.shape(x)[1:3])
        if (np.asarray(x) > 2.2).all(axis=(1, 2, 3)).any():  # a white image: "fails"
            raise RuntimeError("simulated device failure")
        return forward(self, x)

    monkeypatch.setattr(DepthEstimator, "forward", recording_forward)
    _image(tmp_path / "in" / "tall.png", (300, 1))
    for name in ("a", "b", "c"):
        _image(tmp_path / "in" / f"{name}.png", (20, 20))
    _image(tmp_path / "in" / "white.png", (20, 20), value=255)
    args = ["--input", tmp_path / "in", "--outdir", tmp_path / "out", "--save-npy"]
    code = run(weights, *args, "--batch-size", "4")
    assert code == 1  # white.png failed, the others were written
    err = capsys.readouterr().err
    assert "tall.png: a 300x1 image would need a 8400x28 network input; using 224x14" in err
    assert "white.png: RuntimeError: simulated device failure" in err
    assert max(max(s) for s in shapes) <= 8 * 28
    assert np.load(tmp_path / "out" / "tall.npy").shape == (300, 1)
    assert all((tmp_path / "out" / f"{name}.npy").exists() for name in ("a", "b", "c"))
    assert not (tmp_path / "out" / "white.npy").exists()


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


def test_pos_embed_flag_reaches_the_loader(tmp_path, weights, monkeypatch, capsys):
    calls = []

    def recording_loader(*args, **kwargs):
        calls.append(kwargs["pos_embed"])
        raise ValueError("stop after the loader call")

    monkeypatch.setattr(DepthEstimator, "from_pretrained", recording_loader)
    image = _image(tmp_path / "x.png", (20, 20))
    for rule in ("official", "hf"):
        args = ["--input", image, "--outdir", tmp_path / "o", "--pos-embed", rule]
        assert run(weights, *args) == 2
    assert calls == ["official", "hf"]
    assert capsys.readouterr().err.count("stop after the loader call") == 2


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
