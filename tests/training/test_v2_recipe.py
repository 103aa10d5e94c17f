"""Depth Anything V2's relative-depth recipe (`recipe=v2`): the configs' switch, the teacher's
L_ssi + 2 L_gm, and a student trained on pseudo-labels alone (trimmed, with L_gm)."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_configs import tiny_student

from configs import student as student_config
from configs import teacher as teacher_config
from dajax.data import pipeline
from dajax.data.pseudo_labels import PseudoLabelSource, PseudoLabelWriter, shard_name
from dajax.training import loop, losses, setup, student, teacher
from dajax.training.metrics_log import read_metrics


class _Fixed:
    """A stand-in network that predicts `pred` [B, H, W] whatever its input."""

    def __init__(self, pred):
        self.pred = jnp.asarray(pred)

    def apply(self, variables, x, return_features=False, method=None):
        pred = self.pred[: x.shape[0]]
        return (pred, jnp.zeros((x.shape[0], 4, 8))) if return_features else pred


def _maps(n: int, size: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    pred = rng.uniform(0.1, 2.0, (n, size, size)).astype(np.float32)
    target = rng.uniform(0.1, 2.0, (n, size, size)).astype(np.float32)
    return rng, pred, target


@pytest.mark.parametrize("config", [teacher_config, student_config])
def test_an_unknown_recipe_is_a_one_line_error(config):
    with pytest.raises(ValueError, match=r"^unknown recipe 'v3'; expected one of \('v1', 'v2'\)$"):
        config.get_config("demo,recipe=v3")


def test_v1_is_the_default_and_v2_switches_losses_data_and_the_demo_teacher():
    assert teacher_config.get_config().to_dict() == teacher_config.get_config("recipe=v1").to_dict()
    assert student_config.get_config().to_dict() == student_config.get_config("recipe=v1").to_dict()
    v1, v2 = (teacher_config.get_config(f"recipe={r}") for r in ("v1", "v2"))
    assert v1.loss.gradient_weight == 0.0
    assert (v2.loss.gradient_weight, v2.loss.gradient_scales, v2.total_steps) == (2.0, 4, 160_000)
    s1, s2 = (student_config.get_config(f"recipe={r}") for r in ("v1", "v2"))
    assert s1.loss.labeled and s1.loss.trim_fraction == 0.0 and s1.loss.gradient_weight == 0.0
    assert not s2.loss.labeled and s2.data.labeled == ()
    assert (s2.loss.trim_fraction, s2.loss.gradient_weight) == (0.1, 2.0)
    assert (s2.data.unlabeled_batch, s2.total_steps) == (192, 480_000)
    assert student_config.get_config("demo").teacher_stage.loss.gradient_weight == 0.0
    assert student_config.get_config("demo,recipe=v2").teacher_stage.loss.gradient_weight == 2.0


def test_teacher_v2_loss_is_the_affine_invariant_term_plus_twice_gradient_matching():
    rng, pred, target = _maps(3, 14)
    mask = rng.rand(3, 14, 14) > 0.2
    batch = {"image": np.zeros((3, 14, 14, 3), np.uint8), "target": target, "mask": mask}
    ssi = float(losses.affine_invariant_loss(pred, target, mask))
    gm = float(losses.gradient_matching_loss(pred, target, mask, 4))
    assert gm > 0.1
    v2 = teacher_config.get_config("demo,recipe=v2").loss
    loss, metrics = teacher.make_loss_fn(_Fixed(pred), v2)({}, batch, None, None)
    assert set(metrics) == {"loss_labeled", "loss_gradient"}
    assert float(metrics["loss_labeled"]) == pytest.approx(ssi, rel=1e-6)
    assert float(metrics["loss_gradient"]) == pytest.approx(gm, rel=1e-6)
    assert float(loss) == pytest.approx(ssi + 2 * gm, rel=1e-6)
    v1 = teacher_config.get_config("demo").loss
    loss, metrics = teacher.make_loss_fn(_Fixed(pred), v1)({}, batch, None, None)
    assert set(metrics) == {"loss_labeled"} and float(loss) == pytest.approx(ssi, rel=1e-6)


def _v2(config):
    """`config` (a tiny student) with the loss and labeled data of `recipe=v2`."""
    v2 = student_config.get_config("demo,recipe=v2")
    config.loss = v2.loss
    config.data.labeled = v2.data.labeled
    return config


def test_student_v2_loss_needs_no_labeled_batch():
    _, pred, target = _maps(4, 28)
    config = _v2(tiny_student())
    config.loss.update(feature=False, color_blur=False, cutmix=False)  # u_a whole, unperturbed
    batch = {"u_image": np.zeros((4, 28, 28, 3), np.uint8), "u_pseudo": target}  # no l_ keys
    loss, metrics = student.make_loss_fn(_Fixed(pred), config, batch_shards=1)(
        {}, batch, {}, jax.random.key(0)
    )
    whole, valid = jnp.ones(pred.shape), jnp.ones(pred.shape, bool)
    args = (pred, target, jnp.roll(target, 1, axis=0), whole, valid)
    trimmed = float(losses.cutmix_affine_invariant_loss(*args, trim_fraction=0.1))
    gm = float(losses.cutmix_gradient_matching_loss(*args, 4, 0.1))
    assert set(metrics) == {"loss_unlabeled", "loss_unlabeled_gradient"}
    assert float(metrics["loss_unlabeled"]) == pytest.approx(trimmed, rel=1e-6)
    assert trimmed < float(losses.cutmix_affine_invariant_loss(*args))
    assert float(loss) == pytest.approx(trimmed + 2 * gm, rel=1e-6)


def test_student_config_errors():
    config = _v2(tiny_student())
    config.loss.labeled = True
    with pytest.raises(ValueError, match="config.data.labeled names no sources"):
        student.run(config, "unused")
    config.loss.update(labeled=False, unlabeled=False, feature=False)
    with pytest.raises(ValueError, match="nothing to train"):
        student.make_loss_fn(_Fixed(np.zeros((1, 2, 2))), config)


def _pseudo_label_shard(folder, count: int = 16):
    """One shard of `count` smooth 32x36 images with their disparity as the pseudo-label."""
    y, x = np.mgrid[0:32, 0:36] / 36.0
    with PseudoLabelWriter(str(folder / shard_name(0, 1))) as writer:
        for i in range(count):
            disparity = (0.2 + 0.5 * y + 0.3 * np.sin(x * (i + 1))) / 1.2
            image = np.stack([disparity, x, np.full_like(x, i / count)], -1)
            ok, png = cv2.imencode(".png", (image * 255).astype(np.uint8))
            assert ok
            writer.write(png.tobytes(), disparity.astype(np.float32), {"source": f"{i}.png"})
    return str(folder)


@pytest.mark.slow
def test_student_v2_trains_on_pseudo_labels_alone(tmp_path, monkeypatch):
    config = _v2(tiny_student())
    config.data.pseudo.path = _pseudo_label_shard(tmp_path)

    def no_labeled_data(*args):
        raise AssertionError("the V2 student read labeled data")

    monkeypatch.setattr(student, "labeled_batches", no_labeled_data)
    monkeypatch.setattr(setup, "labeled_preview", no_labeled_data)
    seen, log_step = [], loop._log_step

    def log_and_record_the_batch(step, metrics, batch, *args):
        seen.append(set(batch))
        log_step(step, metrics, batch, *args)

    monkeypatch.setattr(loop, "_log_step", log_and_record_the_batch)
    student.run(config, str(tmp_path / "student"))
    assert seen == [{"u_image", "u_pseudo"}] * 2  # the steps' batches: pseudo-labeled only
    logged = read_metrics(str(tmp_path / "student"))
    assert [m["step"] for m in logged] == [1, 2]
    for m in logged:
        assert {"loss_unlabeled", "loss_unlabeled_gradient", "loss_feature"} <= set(m)
        assert not {"loss_labeled", "loss_labeled_gradient"} & set(m)
        assert np.isfinite(m["loss"]) and m["loss_unlabeled_gradient"] > 0


def test_student_batches_without_labeled_data_resume_where_they_stopped(tmp_path):
    source = PseudoLabelSource(_pseudo_label_shard(tmp_path))

    def batches():
        unlabeled = pipeline.unlabeled_dataset(source, size=28, batch_size=4, seed=0)
        return pipeline.StudentBatches(None, unlabeled)

    reference = [next(it) for it in [batches()] for _ in range(3)]
    first = batches()
    next(first)
    resumed = batches()
    resumed.set_state(first.get_state())
    for want in reference[1:]:
        got = next(resumed)
        assert set(got) == {"u_image", "u_pseudo"}
        np.testing.assert_array_equal(got["u_image"], want["u_image"])
    labeled_state = b'{"labeled": {}, "unlabeled": {}}'
    with pytest.raises(ValueError, match=r"holds \['labeled', 'unlabeled'\] iterators"):
        batches().set_state(labeled_state)
