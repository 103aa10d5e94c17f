"""The student's data path end to end: pseudo-labels stay aligned with the pixels the student
sees, perturbations touch the student's input only, the CutMix loss compares each region with
its own image's label, and L_feat aligns to the intended frozen encoder."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import tiny_student

from dajax.data.pipeline import unlabeled_dataset
from dajax.data.pseudo_labels import PseudoLabelSource, PseudoLabelWriter, shard_name
from dajax.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from dajax.training import losses, pseudo_label, setup, student


def _ramp_record(h: int, w: int, phase: int):
    """An image whose red channel is a horizontal ramp and green a vertical one, and the
    disparity the same function of position: any misalignment shows as a mismatch."""
    x = (np.arange(w)[None, :] + 0.5) / w
    y = (np.arange(h)[:, None] + 0.5) / h
    red, green = np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w))
    image = np.stack([red, green, np.full((h, w), phase / 10)], -1)
    return (image * 255).round().astype(np.uint8), (0.5 * red + 0.5 * green).astype(np.float32)


def test_pseudo_labels_stay_aligned_through_resize_and_crop(tmp_path):
    with PseudoLabelWriter(str(tmp_path / shard_name(0, 1))) as writer:
        for i, (h, w) in enumerate([(280, 420), (420, 280), (300, 300)]):
            image, disparity = _ramp_record(h, w, i)
            ok, png = cv2.imencode(".png", image[:, :, ::-1])
            assert ok
            writer.write(png.tobytes(), disparity, {"source": f"ramp{i}.png"})
    batches = iter(
        unlabeled_dataset(PseudoLabelSource(str(tmp_path)), size=28, batch_size=3, seed=0)
    )
    offsets = set()
    for _ in range(4):
        batch = next(batches)
        image = batch["image"].astype(np.float32) / 255
        want = 0.5 * image[..., 0] + 0.5 * image[..., 1]
        # One resized pixel moves the label by ~0.012; resampling differences stay below 0.008.
        np.testing.assert_allclose(batch["pseudo"], want, atol=0.008)
        offsets.update(np.round(image[:, 0, 0, :2] * 100).astype(int).ravel().tolist())
    assert len(offsets) > 3  # random crops at different positions were checked


class _OracleModel:
    """Predicts, at each pixel, the label of the unlabeled image the pixel came from, read
    off its colour (image i is flat with red = 20 i / 255). Records its inputs."""

    def __init__(self, labels):
        self.labels = jnp.asarray(labels)  # [N, H, W]
        self.inputs = []

    def apply(self, variables, x, return_features=False, method=None):
        self.inputs.append(x)
        rgb = x * jnp.asarray(IMAGENET_STD) + jnp.asarray(IMAGENET_MEAN)
        ids = jnp.clip(jnp.round(rgb[..., 0] * 255 / 20), 0, len(self.labels) - 1).astype(int)
        b, h, w = ids.shape
        pred = self.labels[ids, jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]]
        return (pred, jnp.zeros((b, 4, 8))) if return_features else pred


def _batch(n: int = 6, size: int = 12):
    rng = np.random.default_rng(0)
    u_image = np.zeros((n, size, size, 3), np.uint8)
    u_image[..., 0] = (20 * np.arange(n))[:, None, None]
    return {
        "l_image": rng.integers(0, 256, (2, size, size, 3), np.uint8),
        "l_target": rng.uniform(0, 1, (2, size, size)).astype(np.float32),
        "l_mask": np.ones((2, size, size), bool),
        "u_image": u_image,
        "u_pseudo": rng.uniform(0, 1, (n, size, size)).astype(np.float32),
    }


def _config(color_blur: bool, cutmix: bool = True, cutmix_p: float = 1.0):
    config = tiny_student()
    config.loss.update(color_blur=color_blur, cutmix=cutmix, feature=False)
    config.perturb.cutmix_p = cutmix_p
    return config


def test_cutmix_loss_compares_each_region_with_its_own_label():
    batch = _batch()
    oracle = _OracleModel(batch["u_pseudo"])
    loss_fn = student.make_loss_fn(oracle, _config(color_blur=False), batch_shards=1)
    for seed in range(3):
        _, metrics = loss_fn({}, batch, {}, jax.random.key(seed))
        assert float(metrics["loss_unlabeled"]) < 1e-5
        red = np.round(np.asarray(oracle.inputs[-1][2:, ..., 0]), 4)  # the unlabeled part
        assert any(len(np.unique(r)) > 1 for r in red)  # CutMix put two images in one input
    # The same oracle scored against the other image's label in each region is far off.
    swapped = _OracleModel(batch["u_pseudo"][::-1])
    loss_fn = student.make_loss_fn(swapped, _config(color_blur=False), batch_shards=1)
    _, metrics = loss_fn({}, batch, {}, jax.random.key(0))
    assert float(metrics["loss_unlabeled"]) > 0.1


def test_perturbations_reach_the_student_input_and_never_the_labels(monkeypatch):
    batch = _batch()
    seen = {}

    def capture(pred, target_a, target_b, cutmix_mask, valid_mask, trim_fraction):
        seen.update(t_a=target_a, t_b=target_b, mask=cutmix_mask)
        return jnp.float32(0)

    monkeypatch.setattr(losses, "cutmix_affine_invariant_loss", capture)
    oracle = _OracleModel(batch["u_pseudo"])
    student.make_loss_fn(oracle, _config(color_blur=True), batch_shards=1)(
        {}, batch, {}, jax.random.key(1)
    )
    np.testing.assert_array_equal(seen["t_a"], batch["u_pseudo"])
    np.testing.assert_array_equal(seen["t_b"], np.roll(batch["u_pseudo"], 1, axis=0))
    clean_a = batch["u_image"].astype(np.float32) / 255
    m = np.asarray(seen["mask"])[..., None]
    clean = (clean_a * m + np.roll(clean_a, 1, axis=0) * (1 - m) - IMAGENET_MEAN) / IMAGENET_STD
    perturbed = np.asarray(oracle.inputs[-1][2:])
    assert np.abs(perturbed - clean).max() > 0.1  # the student saw a perturbed input


class _RampTeacher:
    """An online teacher whose raw disparity is 5 + 3 × (row + image index): min-max
    normalisation per image must remove both the offset and the scale."""

    def apply(self, variables, x):
        b, h, w = x.shape[:3]
        rows = jnp.arange(h, dtype=jnp.float32)[None, :, None] + jnp.arange(b)[:, None, None]
        return jnp.broadcast_to(5.0 + 3.0 * rows, (b, h, w))


def test_an_online_teacher_labels_like_the_data_engine_with_the_sky_at_zero(monkeypatch):
    batch = _batch()
    del batch["u_pseudo"]
    sky = np.zeros(batch["u_image"].shape[:3], bool)
    sky[:, :3] = True  # the top rows are sky
    batch["u_sky"] = sky
    seen = {}

    def capture(pred, target_a, target_b, cutmix_mask, valid_mask, trim_fraction):
        seen["t_a"] = np.asarray(target_a)
        return jnp.float32(0)

    monkeypatch.setattr(losses, "cutmix_affine_invariant_loss", capture)
    loss_fn = student.make_loss_fn(
        _OracleModel(np.zeros(sky.shape, np.float32)),
        _config(color_blur=False),
        teacher_model=_RampTeacher(),
        batch_shards=1,
    )
    loss_fn({}, batch, {"teacher": {}}, jax.random.key(0))
    raw = np.asarray(_RampTeacher().apply(None, batch["u_image"]))
    want = np.stack([pseudo_label.stored_label(r, s) for r, s in zip(raw, sky, strict=True)])
    np.testing.assert_allclose(seen["t_a"], want, atol=1e-6)
    assert (seen["t_a"][sky] == 0).all() and seen["t_a"][~sky].max() == 1.0


def _student_inputs(config, batch, seed):
    """The unlabeled part of the student's input [B_u, H, W, 3], as [0, 1] RGB."""
    oracle = _OracleModel(batch["u_pseudo"])
    student.make_loss_fn(oracle, config, batch_shards=1)({}, batch, {}, jax.random.key(seed))
    x = np.asarray(oracle.inputs[-1][len(batch["l_image"]) :])
    return x * IMAGENET_STD + IMAGENET_MEAN


def test_without_s_no_unlabeled_input_is_mixed_or_perturbed():
    batch = _batch(n=8)
    clean = batch["u_image"].astype(np.float32) / 255
    # cutmix_p stays at the paper's 0.5 would leave some unmixed: p = 1 shows the switch.
    off = _config(color_blur=False, cutmix=False, cutmix_p=1.0)
    for seed in range(3):
        np.testing.assert_allclose(_student_inputs(off, batch, seed), clean, atol=1e-5)


def test_with_s_about_half_of_the_unlabeled_inputs_are_mixed():
    batch = _batch(n=8)
    on = _config(color_blur=False, cutmix=True, cutmix_p=0.5)
    mixed = [
        len(np.unique(np.round(image[..., 0], 3))) > 1  # two source images in one input
        for seed in range(25)
        for image in _student_inputs(on, batch, seed)
    ]
    # 200 draws of p = 0.5, less the boxes too small to cover a pixel centre.
    assert 0.35 < np.mean(mixed) < 0.6, np.mean(mixed)


def test_feature_alignment_reference_is_the_frozen_initial_encoder_or_the_teacher(tmp_path):
    config = tiny_student()
    _, model_config = setup.model_from_config(config.model)
    initial = setup.initial_params(model_config, "", seed=0)["pretrained"]
    teacher_params = setup.initial_params(model_config, "", seed=5)
    export = setup.write_inference_checkpoint(str(tmp_path), teacher_params, model_config)
    assert student.feature_reference(config, initial) is initial  # no teacher: init
    config.teacher_weights = export
    config.loss.feature_reference = "init"
    assert student.feature_reference(config, initial) is initial
    for choice in ("teacher", "auto"):
        config.loss.feature_reference = choice
        got = student.feature_reference(config, initial)
        for a, b in zip(
            jax.tree.leaves(got), jax.tree.leaves(teacher_params["pretrained"]), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    config.init.dinov2 = "dinov2.pth"  # with DINOv2 weights, 'auto' keeps the paper's choice
    assert student.feature_reference(config, initial) is initial
    config.loss.feature_reference = "nope"
    with pytest.raises(ValueError, match="feature_reference must be"):
        student.feature_reference(config, initial)
