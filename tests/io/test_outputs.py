"""Output planning: a mirrored tree, no collisions, no overwritten or re-read inputs."""

import os

import numpy as np
import pytest

from dajax.io.inputs import InputError, Inputs, list_inputs
from dajax.io.outputs import OutputError, plan_outputs, write_png


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return [str(root / name) for name in names]


def test_names_mirror_the_tree_and_keep_extensions_only_when_stems_meet(tmp_path):
    paths = _touch(tmp_path / "in", "a.jpg", "a.png", "b.png", "sub/a.jpg", "x/y/z.webp")
    bases = plan_outputs(Inputs(paths, str(tmp_path / "in")), "out", [".png", ".npy"])
    rel = [os.path.relpath(bases[p], "out") for p in paths]
    assert rel == ["a_jpg", "a_png", "b", os.path.join("sub", "a"), os.path.join("x", "y", "z")]


def test_a_file_two_inputs_would_write_is_refused_before_any_work(tmp_path):
    paths = _touch(tmp_path, "a.png", "a_16.png")  # a's "_16.png" is a_16's ".png"
    with pytest.raises(OutputError, match="written for both"):
        plan_outputs(Inputs(paths, str(tmp_path)), str(tmp_path / "o"), [".png", "_16.png"])


def test_list_files_mirror_below_their_common_folder(tmp_path):
    paths = _touch(tmp_path, "p/a/x.jpg", "p/b/x.png")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(["# two photos", *paths, paths[0]]) + "\n")
    inputs = list_inputs(str(listing))
    assert inputs.paths == paths and inputs.root == str(tmp_path / "p")
    with pytest.raises(InputError, match="names no images"):
        (tmp_path / "empty.txt").write_text("# nothing yet\n")
        list_inputs(str(tmp_path / "empty.txt"))


def test_list_entries_are_relative_to_the_list_and_one_file_in_two_spellings_is_read_once(
    tmp_path, monkeypatch
):
    (a,) = _touch(tmp_path, "lists/photos/a.jpg")
    os.symlink(a, tmp_path / "lists" / "link.jpg")
    listing = tmp_path / "lists" / "list.txt"
    listing.write_text(f"photos/a.jpg\n{a}\n./photos/../photos/a.jpg\nlink.jpg\n")
    monkeypatch.chdir(tmp_path)  # not the list's folder
    inputs = list_inputs(str(listing))
    assert inputs.paths == [str(tmp_path / "lists" / "photos/a.jpg")]
    assert os.path.samefile(inputs.paths[0], a)


def test_write_png_raises_instead_of_returning_false(tmp_path):
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(OutputError, match="taken.png: cannot write"):
        write_png(str(tmp_path / "taken.png"), np.zeros((2, 2, 3), np.uint8))
    assert os.listdir(tmp_path / "taken.png") == []  # no temporary file left behind
    assert [p.name for p in tmp_path.iterdir()] == ["taken.png"]
