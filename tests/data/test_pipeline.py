"""Host transforms, grain pipelines (determinism, resume, process shards), pseudo-label shards,
unlabeled folders."""

import itertools

import cv2
import jax
import numpy as np
import pytest

from dajax.data import pipeline
from dajax.data.pseudo_labels import PseudoLabelSource, PseudoLabelWriter, shard_name
from dajax.data.transforms import LabeledTrainTransform, disparity_target, sanitize
from dajax.data.unlabeled import UnlabeledImages


class _Indexed:
    """Labeled records whose depth and mask are functions of the image (so misalignment shows),
    with the record index painted into pixel (0, 0)'s blue channel."""

    def __init__(self, n: int, h: int = 28, w: int = 40):
        self.n, self.h, self.w = n, h, w

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = np.random.default_rng(i).integers(0, 256, (self.h, self.w, 3), np.uint8)
        image[0, 0, 2] = i
        return {
            "image": image,
            "depth": 1.0 + image[..., 0].astype(np.float32),
            "mask": image[..., 1] > 100,
            "source": f"record-{i}",
        }


def test_crop_and_flip_keep_image_depth_and_mask_aligned():
    record = _Indexed(1)[0]
    transform = LabeledTrainTransform(size=28, flip=True)
    flipped = 0
    for seed in range(12):
        out = transform.random_map(record, np.random.default_rng(seed))
        image = out["image"]
        np.testing.assert_array_equal(out["mask"], image[..., 1] > 100)
        want = disparity_target(1.0 + image[..., 0].astype(np.float32), image[..., 1] > 100)
        np.testing.assert_array_equal(out["target"], want)
        flipped += not any(np.array_equal(image, record["image"][:, x : x + 28]) for x in range(13))
    assert 0 < flipped < 12  # both flipped and unflipped crops occurred


def test_bad_depth_values_are_masked_counted_and_logged(caplog):
    record = _Indexed(1)[0]
    record["mask"][:] = True
    record["depth"][0, :3] = [np.nan, -1.0, np.inf]
    out = sanitize(record)
    assert int(out["bad_pixels"]) == 3 and not out["mask"][0, :3].any()
    assert np.isfinite(out["depth"]).all()
    assert "record-0: masked 3 NaN/Inf/non-positive depth pixels" in caplog.text


def _take(iterator, n):
    return [jax.tree.map(np.copy, b) for b in itertools.islice(iterator, n)]


def _labeled(seed=0, sources=None):
    sources = sources or [_Indexed(10), _Indexed(6, 30, 28)]
    return pipeline.labeled_dataset(sources, [0.7, 0.3], size=28, batch_size=4, seed=seed)


def test_pipelines_are_deterministic_under_a_seed():
    a, b, c = (_take(iter(_labeled(seed)), 3) for seed in (0, 0, 1))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
    assert not all(np.array_equal(x["image"], z["image"]) for x, z in zip(a, c, strict=True))


def test_a_restored_iterator_yields_the_uninterrupted_batches():
    def student_batches():
        unlabeled = pipeline.unlabeled_dataset(_Indexed(9), size=28, batch_size=8, seed=3)
        return pipeline.StudentBatches(_labeled(), unlabeled)

    reference = _take(student_batches(), 5)
    first = student_batches()
    _take(first, 2)
    state = first.get_state()
    resumed = student_batches()
    resumed.set_state(state)
    for want, got in zip(reference[2:], _take(resumed, 3), strict=True):
        assert set(want) == {"l_image", "l_target", "l_mask", "u_image"}
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_empty_source_fails_at_start_up():
    with pytest.raises(ValueError, match="_Indexed: the data source is empty"):
        _labeled(sources=[_Indexed(0)])


def _png(image):
    return cv2.imencode(".png", image[:, :, ::-1])[1].tobytes()


def test_pseudo_label_shards_round_trip_and_a_failed_shard_leaves_no_file(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (7, 9, 3), np.uint8) for _ in range(3)]
    disparities = [rng.uniform(0, 1, (7, 9)).astype(np.float32) for _ in range(3)]
    with PseudoLabelWriter(str(tmp_path / shard_name(0, 2))) as writer:
        for i, (image, disp) in enumerate(zip(images, disparities, strict=True)):
            writer.write(_png(image), disp, {"source": f"img{i}.png", "index": i, "teacher": "t"})
    with pytest.raises(ValueError, match="img9.png: teacher disparity has NaN"):
        with PseudoLabelWriter(str(tmp_path / shard_name(1, 2))) as writer:
            writer.write(_png(images[0]), np.full((7, 9), np.nan), {"source": "img9.png"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [shard_name(0, 2)]
    source = PseudoLabelSource(str(tmp_path))
    assert len(source) == 3
    record = source[2]
    np.testing.assert_array_equal(record["image"], images[2])
    np.testing.assert_allclose(record["disparity"], disparities[2], atol=1e-3)  # float16
    assert record["source"] == "img2.png"


def test_unlabeled_folder_skips_a_corrupt_file(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    good = np.full((5, 6, 3), 40, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), good)
    (tmp_path / "sub" / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "sub" / "c.png"), good + 1)
    source = UnlabeledImages(str(tmp_path))
    assert len(source) == 3
    assert source[1]["source"].endswith("c.png")  # b.jpg replaced by the next readable image
    assert source.skipped == {str(tmp_path / "sub" / "b.jpg")}
    assert "b.jpg" in caplog.text
