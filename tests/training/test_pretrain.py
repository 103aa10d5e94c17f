"""The encoder pre-training stage (`configs/pretrain.py`, the proof's stand-in for DINOv2):
its targets, its loss, and an encoder file that starts a depth model."""

import json

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from tiny_configs import TINY_MODEL

from configs import pretrain as pretrain_config
from configs import student as student_config
from configs import teacher as teacher_config
from dajax.data.procedural import SEMANTIC_CLASSES, SHAPES, render, sample_scene
from dajax.data.transforms import LabeledTrainTransform
from dajax.models import init_params
from dajax.models.patch_classifier import PatchClassifier
from dajax.training import pretrain, setup
from dajax.weights.pretrained import load_dinov2_encoder


@pytest.mark.parametrize("style", ["indoor", "outdoor"])
def test_class_maps_match_the_geometry(style):
    """Sky pixels and only those are class 0; an object's pixels carry its shape's class; the
    rest are background surfaces (floor .. ceiling)."""
    spec = sample_scene(np.random.default_rng(5), style)
    out = render(spec, 40, 48)
    semantics = out["semantics"]
    np.testing.assert_array_equal(semantics == 0, out["sky"])
    for k, obj in enumerate(spec.objects, start=1):
        shown = out["labels"] == k
        assert (semantics[shown] == SEMANTIC_CLASSES.index(obj.shape)).all()
    background = (out["labels"] == 0) & ~out["sky"]
    assert set(np.unique(semantics[background])) <= {1, 2, 3, 4}
    assert SEMANTIC_CLASSES[5:] == SHAPES


def test_a_mirrored_crop_keeps_each_pixel_with_its_class():
    """The training transform flips and crops the image and its class map together (at the
    crop's height nothing is resampled, so every pixel keeps its exact colour and class)."""
    spec = sample_scene(np.random.default_rng(2), "indoor")
    out = render(spec, 28, 48)
    record = {"image": out["image"], "semantics": out["semantics"]}
    transform = LabeledTrainTransform(28, flip=True, target="semantics")
    for seed in range(8):
        batch = transform.random_map(record, np.random.default_rng(seed))
        assert batch["target"].dtype == np.int32 and batch["mask"].all()
        image, target = batch["image"], batch["target"]
        found = [
            (np.array_equal(image, out["image"][:, x : x + 28][:, ::step]))
            and np.array_equal(target, out["semantics"][:, x : x + 28][:, ::step])
            for x in range(48 - 28 + 1)
            for step in (1, -1)
        ]
        assert sum(found) >= 1


def test_segmentation_loss_is_log_c_for_uniform_logits_and_counts_right_pixels():
    labels = np.array([[[0, 1], [2, 3]]], np.int32)
    uniform = np.zeros((1, 2, 2, 8), np.float32)
    loss, metrics = pretrain.segmentation_loss(uniform, labels)
    np.testing.assert_allclose(float(loss), np.log(8), rtol=1e-6)
    sure = np.full((1, 2, 2, 8), -30.0, np.float32)
    sure[0, 0, 0, 0] = sure[0, 0, 1, 1] = sure[0, 1, 0, 2] = sure[0, 1, 1, 0] = 30.0
    _, metrics = pretrain.segmentation_loss(sure, labels)
    assert float(metrics["pixel_accuracy"]) == 0.75


def test_the_written_encoder_is_the_classifier_s_encoder_under_depth_anything_names(tmp_path):
    """`write_encoder` -> `load_dinov2_encoder` gives back every encoder weight (to float16's
    precision, the file's), in the layout a depth model's `pretrained` subtree has."""
    teacher = teacher_config.get_config("demo")
    teacher.model.custom = TINY_MODEL
    model_config = setup.model_config(teacher.model)
    model = PatchClassifier(model_config, len(SEMANTIC_CLASSES))
    params = jax.device_get(init_params(model, jax.random.key(4)))
    path = tmp_path / "encoder.safetensors"
    pretrain.write_encoder(path, params)
    loaded = load_dinov2_encoder(str(path), model_config)
    flat, want = flatten_dict(loaded), flatten_dict(params["pretrained"])
    assert flat.keys() == want.keys()
    for key, value in want.items():  # stored in float16, loaded as float32
        assert flat[key].dtype == np.float32
        np.testing.assert_array_equal(flat[key], value.astype(np.float16), err_msg=str(key))


@pytest.mark.slow
def test_the_stage_learns_and_its_file_starts_a_teacher(tmp_path):
    """A few steps on tiny scenes: the class loss falls, and a teacher
    initialised from the written file starts from it, not from its own random encoder."""
    config = pretrain_config.get_config("steps=6")
    config.model.custom = TINY_MODEL
    config.update(log_every=1, checkpoint_every=6)
    config.optim.warmup_steps = 0
    config.data.labeled[0][0].update(num_scenes=8, height=32, width=36)
    config.data.update(crop=28, labeled_batch=8)
    path = pretrain.run(config, str(tmp_path / "pre"))
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.1

    teacher = teacher_config.get_config("demo")
    teacher.model.custom = TINY_MODEL
    model_config = setup.model_config(teacher.model)
    started = setup.initial_params(model_config, path, seed=1)["pretrained"]
    random = setup.initial_params(model_config, "", seed=1)["pretrained"]
    np.testing.assert_array_equal(
        flatten_dict(started)[("blocks_0", "attn", "qkv", "kernel")],
        flatten_dict(load_dinov2_encoder(path, model_config))[
            ("blocks_0", "attn", "qkv", "kernel")
        ],
    )
    assert not np.array_equal(started["cls_token"], random["cls_token"])


@pytest.mark.slow
def test_the_proof_starts_both_networks_from_the_shipped_stand_in():
    """`configs/student.py:proof` names the shipped encoder for student and teacher; it fits the
    demo's encoder and is not a random one (its classifier was trained: weights differ from a
    fresh init of any seed tried)."""
    config = student_config.get_config("proof,broad")
    assert config.init.dinov2 == config.teacher_stage.init.dinov2 == student_config.PROOF_ENCODER
    labeled = config.teacher_stage.data.labeled[0][0]
    heldout = config.final_eval.data
    assert labeled.roll_range == config.data.unlabeled.roll_range == heldout.roll_range
    model_config = setup.model_config(config.model)
    shipped = load_dinov2_encoder(student_config.PROOF_ENCODER, model_config)
    for seed in range(3):
        fresh = setup.initial_params(model_config, "", seed=seed)["pretrained"]
        assert not np.allclose(shipped["cls_token"], fresh["cls_token"])
    assert config.optim.base_lr == config.teacher_stage.optim.base_lr == 5e-5
    scratch = student_config.get_config("proof,broad,standin=False")
    assert scratch.init.dinov2 == "" and scratch.teacher_stage.optim.base_lr == 2e-4
