"""Sky is the farthest thing, not a hole (paper §3.1): disparity 0 in the teacher's targets and
in the stored pseudo-labels, outside the metric target and the evaluation."""

import logging
import re

import cv2
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import pseudo_label as pseudo_label_config
from dajax.data.procedural import ProceduralScenes, render_scene
from dajax.data.pseudo_labels import PseudoLabelSource
from dajax.data.registry import build_source
from dajax.data.transforms import LabeledTrainTransform, disparity_target, resize_shorter
from dajax.data.unlabeled import UnlabeledImages
from dajax.eval.evaluate import Bench, evaluate
from dajax.inference import DepthEstimator
from dajax.training import losses, pseudo_label, setup
from tests.tiny_models import TINY_V2


def _outdoor(index: int = 0, h: int = 40, w: int = 48) -> dict:
    record = render_scene(index, h, w, "outdoor")
    assert record["sky"].any() and record["mask"].any()
    return record


def test_outdoor_scenes_flag_their_sky_apart_from_valid_depth():
    record = _outdoor()
    sky, mask = record["sky"], record["mask"]
    assert sky.dtype == bool and sky.shape == mask.shape
    assert not (sky & mask).any() and (record["depth"][sky] == 0).all()
    assert sky[0].all()  # the camera looks slightly down: the top row is open sky
    assert not render_scene(1, 40, 48, "indoor")["sky"].any()
    unlabeled = ProceduralScenes(2, 40, 48, styles=("outdoor",), images_only=True)
    assert set(unlabeled[0]) == {"image", "sky", "source"}
    np.testing.assert_array_equal(unlabeled[0]["sky"], sky)


def test_disparity_target_puts_the_sky_at_zero_and_normalises_with_it():
    depth = np.array([[0.0, 2.0], [4.0, 8.0]], np.float32)
    mask = depth > 0
    sky = ~mask
    with_sky = disparity_target(depth, mask, sky)
    np.testing.assert_allclose(with_sky, [[0.0, 1.0], [0.5, 0.25]])  # disp / max(disp)
    # without sky the farthest valid pixel is 0 (min-max over the valid pixels)
    np.testing.assert_allclose(disparity_target(depth, mask), [[0.0, 1.0], [1 / 3, 0.0]])
    no_sky = disparity_target(depth, mask, np.zeros_like(sky))
    np.testing.assert_array_equal(no_sky, disparity_target(depth, mask))


def _crop_like(out: dict, record: dict, key: str) -> np.ndarray:
    """`record[key]` cut at the 40-pixel-wide window where `out`'s image came from."""
    lefts = [x for x in range(9) if np.array_equal(out["image"], record["image"][:, x : x + 40])]
    return record[key][:, lefts[0] : lefts[0] + 40]


def test_the_teachers_loss_covers_the_sky_with_target_zero():
    record = _outdoor()
    out = LabeledTrainTransform(size=40, flip=False).random_map(record, np.random.default_rng(0))
    sky, valid = _crop_like(out, record, "sky"), _crop_like(out, record, "mask")
    np.testing.assert_array_equal(out["mask"], valid | sky)
    assert (out["target"][sky] == 0).all() and out["target"][valid].min() > 0
    assert out["target"].max() == pytest.approx(1.0)
    pred = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (1, 40, 40)), jnp.float32)
    target, mask = jnp.asarray(out["target"])[None], jnp.asarray(out["mask"])[None]
    moved_sky = jnp.where(jnp.asarray(sky)[None], pred + 0.7, pred)  # only the sky changes
    loss = losses.affine_invariant_loss(pred, target, mask)
    assert float(losses.affine_invariant_loss(moved_sky, target, mask)) != pytest.approx(
        float(loss)
    )


def test_the_metric_target_keeps_the_sky_invalid():
    record = _outdoor()
    out = LabeledTrainTransform(size=40, flip=False, target="depth").random_map(
        record, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(out["mask"], _crop_like(out, record, "mask"))
    assert not (out["mask"] & _crop_like(out, record, "sky")).any()
    assert (out["target"][~out["mask"]] == 0).all() and (out["target"][out["mask"]] > 0).all()


def test_geometry_carries_the_sky_with_the_masks():
    """Flip and crop move `sky` with the image; resizing takes its nearest pixel like `mask`."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (28, 40, 3), np.uint8)
    valid = image[..., 1] > 100
    record = {
        "image": image,
        "depth": 1.0 + image[..., 0].astype(np.float32),
        "mask": valid,
        "sky": ~valid & (image[..., 2] > 128),
        "source": "painted",
    }
    transform = LabeledTrainTransform(size=28, flip=True)
    for seed in range(6):
        out = transform.random_map(record, np.random.default_rng(seed))
        seen_valid = out["image"][..., 1] > 100
        seen_sky = ~seen_valid & (out["image"][..., 2] > 128)
        np.testing.assert_array_equal(out["mask"], seen_valid | seen_sky)
        depth = 1.0 + out["image"][..., 0].astype(np.float32)
        np.testing.assert_array_equal(out["target"], disparity_target(depth, seen_valid, seen_sky))
    resized = resize_shorter({"image": image, "mask": valid, "sky": ~valid}, 14)
    assert resized["sky"].shape == resized["image"].shape[:2] == (14, 20)
    np.testing.assert_array_equal(resized["sky"], ~resized["mask"])


class _SkyPainter:
    """A relative 'model' that knows `records`: it predicts the true disparity of the record
    whose image it is given, and `sky_value` on that record's sky."""

    config = TINY_V2

    def __init__(self, sky_value: float, records: list):
        self.sky_value, self.records = sky_value, records

    def batch(self, images, batch_size):
        out = []
        for image in images:
            record = next(r for r in self.records if r["image"] is image)
            disp = np.where(record["mask"], 1.0 / np.maximum(record["depth"], 1e-6), 0.5)
            out.append(np.where(record["sky"], self.sky_value, disp).astype(np.float32))
        return out


def test_evaluation_scores_the_benchmarks_own_valid_pixels_only():
    """Whatever a model puts on the sky, the scores do not move: only `mask` is scored."""
    records = [_outdoor(i) for i in range(2)]
    bench = Bench(1e-3, 80.0, "none", "relative")
    scores = [
        evaluate(_SkyPainter(value, records), records, bench, "relative") for value in (0.0, 5.0)
    ]
    assert scores[0] == scores[1] and scores[0]["images"] == 2
    assert scores[0]["abs_rel"] == pytest.approx(0.0, abs=1e-5)  # exact off the sky


def _tiny_teacher(tmp_path) -> str:
    """A random tiny teacher, exported. Its last bias is raised by 1 so the final ReLU does
    not flatten its output to a constant 0, which would leave nothing to normalise."""
    params = setup.initial_params(TINY_V2, "", seed=0)
    last = params["depth_head"]["output_conv2_2"]
    last["bias"] = last["bias"] + 1.0
    return setup.write_inference_checkpoint(str(tmp_path / "teacher"), params, TINY_V2)


def test_pseudo_label_shards_hold_zero_on_the_sky(tmp_path, caplog):
    config = pseudo_label_config.get_config("demo")
    config.teacher_weights = _tiny_teacher(tmp_path)
    config.data.unlabeled.update(num_scenes=3, height=32, width=36, styles=("outdoor",))
    config.update(shard_size=2, batch_size=2, input_size=28)
    with caplog.at_level(logging.INFO, logger="dajax"):
        shards = pseudo_label.run(config, str(tmp_path / "pl"))
    assert "3 of 3 images had a sky mask" in caplog.text
    labels, scenes = PseudoLabelSource(shards), build_source(config.data.unlabeled)
    assert len(labels) == 3
    images = [scenes[i]["image"] for i in range(3)]
    teacher = DepthEstimator.from_pretrained(config.teacher_weights, input_size=28, dtype="float32")
    own_sky_labels = []
    for i, raw in enumerate(teacher.batch(images, 2)):
        sky, label = scenes[i]["sky"], labels[i]["disparity"]
        own = (raw - raw.min()) / np.ptp(raw)  # the teacher's label, sky unknown
        own_sky_labels.append(own[sky].max())
        assert sky.any() and (label[sky] == 0).all()
        np.testing.assert_allclose(label[~sky], own[~sky], atol=1e-3)  # float16
    assert max(own_sky_labels) > 0.1  # left alone, the teacher would have put the sky nearer


def _write_mask(path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), mask.astype(np.uint8) * 255)


def test_image_folder_sky_masks_match_by_relative_path(tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "photos" / "sky"
    (photos / "trip").mkdir(parents=True)
    image = np.full((6, 8, 3), 90, np.uint8)
    cv2.imwrite(str(photos / "trip" / "a.jpg"), image)
    cv2.imwrite(str(photos / "b.png"), image)
    sky_a = np.zeros((6, 8), bool)
    sky_a[:2] = True
    _write_mask(masks / "trip" / "a.png", sky_a)
    _write_mask(masks / "b.png", np.zeros((6, 8), bool))
    spec = {"kind": "image_folder", "path": str(photos), "sky_masks": str(masks)}
    source = build_source(ml_collections.ConfigDict(spec))
    assert len(source) == 2  # the mask folder inside the image folder is not read as images
    by_name = {r["source"]: r for r in (source[0], source[1])}
    np.testing.assert_array_equal(by_name[str(photos / "trip" / "a.jpg")]["sky"], sky_a)
    assert not by_name[str(photos / "b.png")]["sky"].any()
    assert "sky" not in UnlabeledImages(str(photos / "trip"))[0]  # no folder, no sky


def test_a_missing_or_mis_sized_sky_mask_names_both_files(tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "sky"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.zeros((6, 8, 3), np.uint8))
    cv2.imwrite(str(photos / "b.png"), np.zeros((6, 8, 3), np.uint8))
    _write_mask(masks / "a.png", np.ones((6, 8), bool))
    missing = f"{photos / 'b.png'}: no sky mask {masks / 'b'}.png"
    with pytest.raises(ValueError, match=re.escape(missing)):
        UnlabeledImages(str(photos), str(masks))
    _write_mask(masks / "b.webp", np.ones((5, 8), bool))
    source = UnlabeledImages(str(photos), str(masks))
    assert source[0]["sky"].all()
    mismatch = f"{masks / 'b.webp'}: sky mask (5, 8) differs from image {photos / 'b.png'} (6, 8)"
    with pytest.raises(ValueError, match=re.escape(mismatch)):
        source[1]
