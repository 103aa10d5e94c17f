"""Stage `student` (paper §3.2-3.3).

The student is re-initialised from DINOv2 (not from the teacher) and trained on batches of
labeled and pseudo-labeled images (1:2). Unlabeled images get strong perturbations (colour
jitter, grayscale, blur) and CutMix on the student's input only; their loss is the CutMix
affine-invariant loss against the teacher's labels of the two clean images. A cosine
feature-alignment loss with margin α keeps the encoder close to the frozen DINOv2.

`config.loss.{unlabeled, color_blur, cutmix, feature}` switch L_u, the two halves of the
perturbations S (colour jitter, grayscale and blur; CutMix) and L_feat off: the paper's
Table 9 rows are L_u alone (no jitter, no blur, no CutMix), + S (all three), + L_feat. With
`config.online_teacher` the teacher runs inside the step on the clean unlabeled images instead
of reading pseudo-label shards.

Depth Anything V2's students (`configs/student.py:recipe=v2`) set `config.loss.labeled=False`
(no labeled pipeline, pseudo-labeled batches only), `trim_fraction=0.1` (each CutMix region of
a pseudo-labeled image ignores its 10% largest residuals) and `gradient_weight=2` (MiDaS's
gradient matching beside each affine-invariant term).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from dajax import sharding
from dajax.data import perturb
from dajax.data.pipeline import StudentBatches, batch_plan, unlabeled_dataset
from dajax.data.registry import build_source, check_training_data
from dajax.models import build_model, param_shapes
from dajax.models.normalization import imagenet_normalize
from dajax.training import losses, setup
from dajax.training.loop import Recipe, train
from dajax.training.optimizer import build_optimizer
from dajax.training.supervised import labeled_batches
from dajax.weights.pretrained import load_depth_anything

log = logging.getLogger("dajax")


def _unlabeled_spec(config):
    return config.data.unlabeled if config.online_teacher else config.data.pseudo


def _preview(model, config):
    """The depth-preview hook (every `config.image_every` steps): two labeled images, or, for a
    student without labeled data, two images of the unlabeled pool."""
    if config.loss.labeled:
        return setup.labeled_preview(model, config)
    if config.image_every <= 0:
        return None
    images = setup.preview_images(_unlabeled_spec(config), 2, config.data.crop)
    return setup.depth_preview(model, images, config.image_every)


def _online_label(disparity: jnp.ndarray, sky: jnp.ndarray | None) -> jnp.ndarray:
    """A teacher's label made inside the step, as the data engine stores it
    (`pseudo_label.stored_label`): disparity [B, H, W] min-max normalised per image to [0, 1],
    then 0 on `sky` ([B, H, W] bool, or None where the source knows no sky)."""
    lo = disparity.min(axis=(1, 2), keepdims=True)
    span = disparity.max(axis=(1, 2), keepdims=True) - lo
    label = jnp.where(span > 0, (disparity - lo) / jnp.where(span > 0, span, 1.0), 0.0)
    return label if sky is None else jnp.where(sky, 0.0, label)


def _joint_forward(model, params, x_l, x_u, shards: int):
    """The student network on labeled and unlabeled images, in one pass when their sizes agree.

    Args:
      x_l: [B_l, H, W, 3], x_u: [B_u, H', W', 3] normalised images.
      shards: devices each batch is split over (`dajax.sharding.concat_batches`).

    Returns:
      (pred_l [B_l, H, W], pred_u [B_u, H', W'], features of x_u [B_u, N, C]). One pass over
      B_l + B_u images runs each matmul once at the larger size; two passes cost the ViT-L
      student step (H100 compile) 150 instead of 93 GB of memory-bound traffic.
    """
    if x_l.shape[1:] != x_u.shape[1:]:
        pred_l = model.apply({"params": params}, x_l)
        pred_u, feats_u = model.apply({"params": params}, x_u, return_features=True)
        return pred_l, pred_u, feats_u
    x = sharding.concat_batches(x_l, x_u, shards)
    pred, feats = model.apply({"params": params}, x, return_features=True)
    n = x_l.shape[0]
    pred_l, pred_u = sharding.split_batches(pred, n, shards)
    return pred_l, pred_u, sharding.split_batches(feats, n, shards)[1]


def make_loss_fn(model, config, teacher_model=None, batch_shards: int | None = None):
    """`(params, batch, frozen, rng) -> (loss, metrics)` for student batches.

    `frozen` holds `dinov2` (the reference encoder's params for L_feat: DINOv2, or the
    teacher's encoder, `feature_reference`) and, online, `teacher` (full params).
    `batch_shards`: devices the batches are split over (default: all, as `train`'s mesh).
    Metrics: `loss_labeled`, `loss_labeled_gradient`, `loss_unlabeled`,
    `loss_unlabeled_gradient`, `loss_feature` and `feature_within_margin`, each when its term
    is computed.
    """
    lc, pc = config.loss, config.perturb
    if not (lc.labeled or lc.unlabeled or lc.feature):
        raise ValueError(
            "config.loss: labeled, unlabeled and feature are all off, nothing to train"
        )
    shards = batch_shards or jax.device_count()

    def unlabeled_inputs(batch, frozen, rng):
        """(student input x_u, teacher labels t_a and t_b of the two CutMix sources, masks)."""
        k_mix, k_perturb = jax.random.split(rng)
        u_a = batch["u_image"].astype(jnp.float32) / 255.0
        u_b = jnp.roll(u_a, 1, axis=0)
        if teacher_model is not None:
            raw = teacher_model.apply({"params": frozen["teacher"]}, imagenet_normalize(u_a))
            t_a = _online_label(jax.lax.stop_gradient(raw), batch.get("u_sky"))
        else:
            t_a = batch["u_pseudo"]
        b, h, w = t_a.shape
        if lc.cutmix:
            masks = perturb.cutmix_masks(k_mix, b, h, w, pc.cutmix_p)
            student_in = perturb.cutmix(u_a, u_b, masks)
        else:  # M = 1: every pixel from u_a, the loss the plain one against t_a
            masks, student_in = jnp.ones((b, h, w), jnp.float32), u_a
        if lc.color_blur:
            student_in = perturb.strong_perturb(student_in, k_perturb, pc)
        return imagenet_normalize(student_in), t_a, jnp.roll(t_a, 1, axis=0), masks

    def forward(params, batch, x_u):
        """(pred_l, pred_u, features of x_u); None for a part the step has no images of."""
        if not lc.labeled:
            pred_u, feats = model.apply({"params": params}, x_u, return_features=True)
            return None, pred_u, feats
        x_l = imagenet_normalize(batch["l_image"])
        if x_u is None:
            return model.apply({"params": params}, x_l), None, None
        return _joint_forward(model, params, x_l, x_u, shards)

    def labeled_loss(pred_l, batch, metrics):
        """labeled_weight × (L_l + gradient_weight × L_gm) on the labeled batch."""
        loss_l = losses.affine_invariant_loss(pred_l, batch["l_target"], batch["l_mask"])
        metrics["loss_labeled"] = loss_l
        if lc.gradient_weight > 0:
            loss_g = losses.gradient_matching_loss(
                pred_l, batch["l_target"], batch["l_mask"], lc.gradient_scales
            )
            metrics["loss_labeled_gradient"] = loss_g
            loss_l = loss_l + lc.gradient_weight * loss_g
        return lc.labeled_weight * loss_l

    def unlabeled_loss(pred_u, t_a, t_b, masks, metrics):
        """unlabeled_weight × (L_u + gradient_weight × L_gm) on the pseudo-labeled batch, both
        over the CutMix regions, less each region's `trim_fraction` largest residuals."""
        valid = jnp.ones(t_a.shape, bool)
        loss_u = losses.cutmix_affine_invariant_loss(
            pred_u, t_a, t_b, masks, valid, lc.trim_fraction
        )
        metrics["loss_unlabeled"] = loss_u
        if lc.gradient_weight > 0:
            loss_g = losses.cutmix_gradient_matching_loss(
                pred_u, t_a, t_b, masks, valid, lc.gradient_scales, lc.trim_fraction
            )
            metrics["loss_unlabeled_gradient"] = loss_g
            loss_u = loss_u + lc.gradient_weight * loss_g
        return lc.unlabeled_weight * loss_u

    def loss_fn(params, batch, frozen, rng):
        x_u = None
        if lc.unlabeled or lc.feature:
            x_u, t_a, t_b, masks = unlabeled_inputs(batch, frozen, rng)
        pred_l, pred_u, feats = forward(params, batch, x_u)
        metrics = {}
        total = labeled_loss(pred_l, batch, metrics) if lc.labeled else 0.0
        if lc.unlabeled:
            total = total + unlabeled_loss(pred_u, t_a, t_b, masks, metrics)
        if lc.feature:
            ref = model.apply({"params": {"pretrained": frozen["dinov2"]}}, x_u, method="encode")
            loss_f = losses.feature_alignment_loss(feats, ref, lc.feature_margin)
            metrics["loss_feature"] = loss_f
            metrics["feature_within_margin"] = losses.share_within_margin(
                feats, ref, lc.feature_margin
            )
            total = total + lc.feature_weight * loss_f
        return total, metrics

    return loss_fn


def run(config, workdir: str) -> str:
    """Trains the student; returns the path of its exported inference checkpoint.

    With `config.loss.labeled=False` (V2) no labeled data is read: the batches are the
    pseudo-labeled (or, online, unlabeled) images alone.
    """
    if config.loss.labeled and not config.data.labeled:
        raise ValueError("config.loss.labeled is on but config.data.labeled names no sources")
    check_training_data(config.data)
    model, model_config = setup.model_from_config(config.model)
    host_init = setup.initial_params(model_config, config.init.dinov2, config.seed)
    frozen = {"dinov2": feature_reference(config, host_init["pretrained"])}
    teacher_model = None
    if config.online_teacher:
        teacher_config, teacher_params = load_depth_anything(config.teacher_weights)
        impl = config.model.get("impl", "fast")
        teacher_model = build_model(teacher_config, impl, model.dtype)
        frozen["teacher"] = jax.device_get(teacher_params)
    tx, learning_rates = build_optimizer(config.optim, param_shapes(model), config.total_steps)
    unlabeled = build_source(_unlabeled_spec(config))
    plan = (
        batch_plan("unlabeled", config.data.unlabeled_batch, len(unlabeled), config.total_steps),
    )
    labeled = None
    if config.loss.labeled:
        labeled, labeled_plan = labeled_batches(config)
        plan = (*labeled_plan, *plan)
    batches = StudentBatches(
        labeled,
        unlabeled_dataset(
            unlabeled,
            size=config.data.crop,
            batch_size=config.data.unlabeled_batch,
            seed=config.seed + 7,
            workers=config.data.workers,
        ),
    )
    loss_fn = make_loss_fn(model, config, teacher_model)
    preview = _preview(model, config)
    recipe = Recipe(
        init_params=lambda: host_init,
        tx=tx,
        loss_fn=loss_fn,
        batches=batches,
        frozen=frozen,
        model_config=model_config,
        on_log=preview,
        learning_rates=learning_rates,
        plan=plan,
    )
    state = train(recipe, config, workdir)
    return setup.write_inference_checkpoint(workdir, state.params, model_config)


def feature_reference(config, initial_encoder: dict) -> dict:
    """The frozen encoder that L_feat aligns the student's features to (host params).

    `config.loss.feature_reference`: 'init' — the student's own initial encoder, i.e. DINOv2
    (the paper); 'teacher' — the encoder of the checkpoint `config.teacher_weights`, for runs
    without DINOv2 weights, where the initial encoder is random and carries nothing worth keeping;
    'auto' — 'init' when DINOv2 weights are given or no teacher is, else 'teacher'.
    """
    choice = config.loss.feature_reference
    if choice == "auto":
        choice = "init" if config.init.dinov2 or not config.teacher_weights else "teacher"
    if choice == "init":
        return initial_encoder
    if choice != "teacher":
        raise ValueError(
            f"loss.feature_reference must be 'auto', 'init' or 'teacher', got {choice!r}"
        )
    if not config.teacher_weights:
        raise ValueError(
            "loss.feature_reference='teacher' needs --config.teacher_weights=CHECKPOINT"
        )
    _, teacher_params = load_depth_anything(config.teacher_weights)
    encoder = teacher_params["pretrained"]
    want = jax.tree.map(np.shape, initial_encoder)
    if jax.tree.map(np.shape, encoder) != want:
        raise ValueError(
            f"{config.teacher_weights}: the teacher's encoder differs in shape from the "
            "student's, so it cannot be the feature-alignment reference; use "
            "loss.feature_reference='init'"
        )
    log.info("feature alignment reference: the encoder of %s", config.teacher_weights)
    return jax.tree.map(np.asarray, encoder)
