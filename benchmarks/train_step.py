"""Train-step speed: dajax's jitted teacher and student steps vs a PyTorch reference step.

    python benchmarks/train_step.py                         # ViT-S, 518x518, labeled batch 2
    python benchmarks/train_step.py --size 266 --iters 2    # quicker
    python benchmarks/train_step.py --preemption-check --size 126 --iters 20


The reference is transformers' `DepthAnythingForDepthEstimation` (random weights, the released
ViT-S sizes) trained with the same recipe written in PyTorch: the affine-invariant loss
(median / mean-absolute-deviation per image, masked L1), AdamW with encoder LR 5e-6 and decoder
10x, global-norm clipping at 1. dajax runs the same weights (converted through the Hugging Face
key layout). Teacher step: a labeled batch. Student step: the labeled batch plus twice as many
unlabeled images, colour jitter + grayscale + Gaussian blur + CutMix on the student input, the
CutMix loss against pseudo-labels, and the feature-alignment loss against a frozen copy of the
encoder (margin 0.15). The reference student applies brightness/contrast/saturation jitter,
grayscale and blur but no hue rotation (no stock PyTorch op); that work is a negligible part of
a step. Both compute in float32. The first step's loss is printed for both: equal for the
teacher (same weights, same batch: an equal-work check); the student's differ by their random
perturbations and CutMix boxes. Prints seconds per step (steps dispatched back to back, the
loss read after the last, as in training), the speed-up and, given `--peak-tflops`, MFU from
the step's matmul and convolution FLOPs (`hardware.model_flops`).
The PyTorch step runs first and hands its GPU memory back, so both fit on one 80 GB GPU.

`--preemption-check` times the training loop's body instead (the host batch made global, the
compiled step, the preemption check; `dajax.training.loop`) with the check the loop used to
make after every step of a multi-process run (the SIGTERM flag all-gathered over the devices
and read back on the host) and with today's (`PreemptionWatch.reached`: JAX's preemption sync
point, as under `jax.distributed`, which this mode starts for its one process). It prints s/step
and how long the host took to dispatch the steps: a check that waits for the device holds the
host to the device's pace; one that does not lets it run ahead.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch shares the GPU

import jax  # noqa: E402
import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from transformers import Dinov2Model  # noqa: E402

from benchmarks import hardware  # noqa: E402
from benchmarks.inference import hf_model, profile_runs  # noqa: E402
from configs import common  # noqa: E402
from dajax import sharding  # noqa: E402
from dajax.dtypes import DTYPES  # noqa: E402
from dajax.models import DepthAnything, ModelConfig, init_params, param_shapes  # noqa: E402
from dajax.models.kernels import ATTENTION_IMPLS  # noqa: E402
from dajax.training import student, teacher  # noqa: E402
from dajax.training.optimizer import build_optimizer  # noqa: E402
from dajax.training.preemption import PreemptionWatch  # noqa: E402
from dajax.training.state import create_state, make_train_step  # noqa: E402
from dajax.weights.depth_anything_keys import official_to_flax, to_official  # noqa: E402

MARGIN = 0.15


def student_config() -> ml_collections.ConfigDict:
    """The loss and perturbation settings of `configs/student.py`."""
    from configs import student as student_cfg

    full = student_cfg.get_config()
    return ml_collections.ConfigDict({"loss": full.loss, "perturb": full.perturb})


def make_batch(labeled: int, size: int, with_unlabeled: bool) -> dict[str, np.ndarray]:
    """A fixed random batch with the student/teacher keys."""
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (labeled, size, size, 3), np.uint8),
        "target": rng.uniform(0.05, 1.0, (labeled, size, size)).astype(np.float32),
        "mask": rng.uniform(size=(labeled, size, size)) > 0.1,
    }
    if not with_unlabeled:
        return batch
    out = {f"l_{k}": v for k, v in batch.items()}
    out["u_image"] = rng.integers(0, 256, (2 * labeled, size, size, 3), np.uint8)
    out["u_pseudo"] = rng.uniform(0.0, 1.0, (2 * labeled, size, size)).astype(np.float32)
    return out


# ---- the PyTorch reference recipe ---------------------------------------------------------

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def torch_normalize(images01: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> ImageNet-normalised."""
    return (images01 - MEAN.to(images01.device)) / STD.to(images01.device)


def torch_affine_invariant(pred, target, mask) -> torch.Tensor:
    """Mean over images of the masked L1 between median/MAD-normalised maps."""
    losses = []
    for p, t, m in zip(pred, target, mask, strict=True):
        if m.sum() == 0:
            continue
        pv, tv = p[m].float(), t[m]
        centred = pv - pv.detach().quantile(0.5)
        pn = centred / centred.abs().mean().clamp_min(1e-6)  # as dajax: no 0/0 on flat maps
        tn = (tv - tv.quantile(0.5)) / (tv - tv.quantile(0.5)).abs().mean().clamp_min(1e-6)
        losses.append((pn - tn).abs().mean())
    return torch.stack(losses).mean()


def torch_perturb(x: torch.Tensor) -> torch.Tensor:
    """Brightness/contrast/saturation jitter, grayscale and a 9-tap Gaussian blur."""
    b = x.shape[0]
    factor = lambda: torch.empty(b, 1, 1, 1).uniform_(0.6, 1.4)  # noqa: E731
    luma = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    gray = (x * luma).sum(1, keepdim=True)
    x = (x * factor()).clamp(0, 1)
    x = (x - gray.mean((2, 3), keepdim=True)) * factor() + gray.mean((2, 3), keepdim=True)
    x = (gray + (x.clamp(0, 1) - gray) * factor()).clamp(0, 1)
    x = torch.where(torch.rand(b, 1, 1, 1) < 0.2, gray.expand_as(x), x)
    sigma = torch.empty(b).uniform_(0.1, 2.0)
    taps = torch.arange(-4, 5, dtype=torch.float32)
    w = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    w = (w / w.sum(1, keepdim=True)).repeat_interleave(3, 0)
    y = x.reshape(1, b * 3, *x.shape[2:])
    y = F.conv2d(F.pad(y, (4, 4, 0, 0), mode="replicate"), w.view(b * 3, 1, 1, 9), groups=b * 3)
    y = F.conv2d(F.pad(y, (0, 0, 4, 4), mode="replicate"), w.view(b * 3, 1, 9, 1), groups=b * 3)
    return y.reshape(x.shape)


def torch_cutmix_masks(b: int, h: int, w: int) -> torch.Tensor:
    """Box masks [B, H, W] (area ~ U(0, 1)), each applied with probability 0.5."""
    lam = torch.rand(b)
    cy, cx = torch.rand(b) * h, torch.rand(b) * w
    ys = torch.arange(h).view(1, h, 1) + 0.5
    xs = torch.arange(w).view(1, 1, w) + 0.5
    inside = ((ys - cy.view(b, 1, 1)).abs() < h * lam.sqrt().view(b, 1, 1) / 2) & (
        (xs - cx.view(b, 1, 1)).abs() < w * lam.sqrt().view(b, 1, 1) / 2
    )
    return (inside & (torch.rand(b, 1, 1) < 0.5)).float()


def torch_forward(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(disparity [B, H, W], final patch features [B, N, C]) in one backbone pass."""
    feature_maps = model.backbone(x).feature_maps
    ph, pw = x.shape[2] // 14, x.shape[3] // 14
    depth = model.head(model.neck(list(feature_maps), ph, pw), ph, pw)
    return depth, feature_maps[-1][:, 1:]


def torch_student_loss(model, frozen, batch) -> torch.Tensor:
    """L_l + CutMix L_u + L_feat, the reference student objective."""
    l_img = torch_normalize(batch["l_image"].permute(0, 3, 1, 2).float() / 255)
    pred_l, _ = torch_forward(model, l_img)
    loss = torch_affine_invariant(pred_l, batch["l_target"], batch["l_mask"])
    u_a = batch["u_image"].permute(0, 3, 1, 2).float() / 255
    u_b = u_a.roll(1, 0)
    t_a = batch["u_pseudo"]
    t_b = t_a.roll(1, 0)
    b, h, w = t_a.shape
    m = torch_cutmix_masks(b, h, w)
    x_u = torch_normalize(torch_perturb(u_a * m[:, None] + u_b * (1 - m[:, None])))
    pred_u, feats = torch_forward(model, x_u)
    inside, outside = m > 0.5, m < 0.5
    loss_u = 0.0
    for t, region in ((t_a, inside), (t_b, outside)):
        has = region.flatten(1).any(1)
        if has.any():
            weight = region.flatten(1).float().mean(1)[has].mean()
            loss_u = loss_u + weight * torch_affine_invariant(pred_u[has], t[has], region[has])
    with torch.no_grad():
        ref = frozen(pixel_values=x_u).last_hidden_state[:, 1:]
    distance = 1 - F.cosine_similarity(feats, ref, dim=-1)
    keep = (distance >= MARGIN).float()
    loss_f = (distance * keep).sum() / keep.sum().clamp_min(1)
    return loss + loss_u + loss_f


def torch_setup(ref, lr: float):
    """AdamW with the encoder at `lr` and everything else at 10x."""
    enc = [p for n, p in ref.named_parameters() if n.startswith("backbone.")]
    dec = [p for n, p in ref.named_parameters() if not n.startswith("backbone.")]
    return torch.optim.AdamW([{"params": enc, "lr": lr}, {"params": dec, "lr": 10 * lr}])


def torch_step(ref, opt, loss_fn, autocast) -> torch.Tensor:
    """One reference step; returns the loss without waiting for the device."""
    opt.zero_grad(set_to_none=True)
    with autocast:
        loss = loss_fn()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
    opt.step()
    return loss.detach()


def _torch_timed(ref, frozen, state, batch, stage: str, autocast, iters: int):
    """(first loss, mean s/step) of the PyTorch recipe's `stage` step from weights `state`;
    its optimiser state is freed on return."""
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    opt = torch_setup(ref, 5e-6)
    device = next(ref.parameters()).device
    tb = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
    if stage == "student":
        loss_fn = lambda: torch_student_loss(ref, frozen, tb)  # noqa: E731
    else:
        x = torch_normalize(tb["image"].permute(0, 3, 1, 2).float() / 255)
        loss_fn = lambda: torch_affine_invariant(  # noqa: E731
            ref(pixel_values=x).predicted_depth.float(), tb["target"], tb["mask"]
        )
    return timed(lambda: torch_step(ref, opt, loss_fn, autocast), iters)


def torch_reference(ref, frozen, state, batch, stage: str, autocast, iters: int):
    """`_torch_timed`, or None if PyTorch runs out of GPU memory; then the gradients freed
    and, on a GPU, PyTorch's cached memory handed back, so that dajax, timed next in the same
    process, has the device's memory."""
    try:
        result = _torch_timed(ref, frozen, state, batch, stage, autocast, iters)
    except torch.cuda.OutOfMemoryError as e:
        print(f"PyTorch {stage} step: out of GPU memory ({e})", file=sys.stderr, flush=True)
        result = None
    ref.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


# ---- timing -------------------------------------------------------------------------------


def timed(step, iters: int) -> tuple[float, float]:
    """(first step's loss, mean seconds per step of `iters` further steps). `step()` returns
    its loss without waiting for it; the timed steps are dispatched back to back and the loss
    is read once, after the last, as a training loop runs them (reading it every step would
    add the host's dispatch time between steps: ~7 ms for the ViT-L step on an H100)."""
    first = float(step())
    start = time.perf_counter()
    for _ in range(iters):
        loss = step()
    float(loss)
    return first, (time.perf_counter() - start) / iters


def make_tx(model):
    """The recipe's AdamW (encoder 5e-6, decoder 10x), without warm-up."""
    optim = common.optim()
    optim.warmup_steps = 0
    return build_optimizer(optim, param_shapes(model), total_steps=1000)[0]


def stage_loss_fn(model, stage: str, batch_shards: int | None = None):
    """dajax's teacher or student objective for `model` (batches split over `batch_shards`
    devices; default all devices)."""
    if stage == "student":
        return student.make_loss_fn(model, student_config(), batch_shards=batch_shards)
    return teacher.make_loss_fn(model)


def step_flops(model, stage: str, state, batch, frozen) -> float:
    """Model FLOPs (`hardware.model_flops`) of one `stage` train step of `model` as it is, on
    `state`, `batch` and `frozen` (arrays or `ShapeDtypeStruct`s); a fused attention kernel's
    matmuls are not among them, so MFU counts the step of `model.clone(attention="xla")`."""
    step = jax.jit(make_train_step(stage_loss_fn(model, stage), make_tx(model), seed=0))
    return hardware.model_flops(step, state, batch, frozen)


def dajax_runner(model, params, loss_fn, batch, frozen):
    """A closure running one jitted, donated train step; returns the step's loss (a device
    array, not waited for)."""
    tx = make_tx(model)
    step = jax.jit(make_train_step(loss_fn, tx, seed=0), donate_argnums=0)
    holder = {"state": jax.jit(lambda p: create_state(p, tx))(params)}  # distinct buffers
    batch = jax.device_put(batch)

    def run() -> jax.Array:
        holder["state"], metrics = step(holder["state"], batch, frozen)
        return metrics["loss"]

    return run, step.lower(holder["state"], batch, frozen).compile(), (holder["state"], batch)


# ---- the loop's per-step preemption check -------------------------------------------------


def _identity(x):
    return x


def allgathered_flag(mesh, flag: bool) -> bool:
    """The check the loop made after every step of a multi-process run, replayed on this
    process's devices: the SIGTERM flag placed on every device, gathered by a compiled
    program, read back on the host (which waits for every step queued before it)."""
    spread = jax.device_put(
        np.full(mesh.size, flag, np.int32),
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names)),
    )
    gathered = jax.jit(_identity, out_shardings=sharding.replicated(mesh))(spread)
    return bool(np.max(gathered))


def loop_body(compiled, state, host_batch, frozen, mesh, steps: int, check):
    """Runs `steps` iterations of the loop's body; returns (state, seconds until the host had
    dispatched them all, seconds until the device finished them)."""
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = sharding.global_batch(host_batch, mesh)
        state, metrics = compiled(state, batch, frozen)
        if check(step):
            raise RuntimeError("no preemption was requested")
    dispatched = time.perf_counter() - start
    jax.block_until_ready(metrics["loss"])
    return state, dispatched, time.perf_counter() - start


def preemption_check_table(model, stage: str, labeled: int, size: int, iters: int) -> None:
    """Prints s/step of the loop body with the old and the new preemption check, each timed
    three times, alternating, in this process (medians)."""
    mesh = sharding.make_mesh(1)
    params = jax.device_get(init_params(model, jax.random.key(0)))
    tx = make_tx(model)
    is_student = stage == "student"
    frozen = {"dinov2": params["pretrained"]} if is_student else None
    host_batch = make_batch(labeled, size, is_student)
    step_fn = jax.jit(
        make_train_step(stage_loss_fn(model, stage), tx, seed=0),
        out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)),
        donate_argnums=0,
    )
    state = jax.jit(lambda p: create_state(p, tx), out_shardings=sharding.replicated(mesh))(params)
    compiled = step_fn.lower(state, sharding.global_batch(host_batch, mesh), frozen).compile()
    watch = PreemptionWatch(log_every=100)
    checks = {
        "SIGTERM flag all-gathered and read on the host (before)": lambda s: allgathered_flag(
            mesh, False
        ),
        f"PreemptionWatch.reached, JAX service: {watch.uses_jax_service} (now)": watch.reached,
    }
    times = {name: [] for name in checks}
    state, *_ = loop_body(compiled, state, host_batch, frozen, mesh, 2, checks[next(iter(checks))])
    for _ in range(3):
        for name, check in checks.items():
            state, dispatched, done = loop_body(
                compiled, state, host_batch, frozen, mesh, iters, check
            )
            times[name].append((done / iters, dispatched / done))
    watch.close()
    print(f"{stage} step, {iters} steps per timing, median of 3\n")
    print("| per-step preemption check | s/step | host done dispatching at |")
    print("|---|---|---|")
    for name, runs in times.items():
        per_step, ahead = np.median(np.array(runs), axis=0)
        print(f"| {name} | {per_step:.4f} | {ahead:.0%} of the run |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="vits", choices=["vits", "vitb", "vitl"])
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--labeled-batch", type=int, default=2)
    p.add_argument("--stages", nargs="+", default=["teacher", "student"])
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--remat", default="none", help="dajax encoder remat policy")
    p.add_argument("--attention", default="auto", choices=ATTENTION_IMPLS, help="dajax kernel")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="override the device peak")
    p.add_argument(
        "--profile",
        default="",
        help="write a jax.profiler trace and the optimised HLO of dajax here",
    )
    p.add_argument(
        "--preemption-check",
        action="store_true",
        help="time the loop body with the old and the new preemption check (no PyTorch)",
    )
    args = p.parse_args()
    if args.preemption_check:
        with socket.socket() as free:  # one process under jax.distributed: JAX's preemption service
            free.bind(("localhost", 0))
            port = free.getsockname()[1]
        jax.distributed.initialize(f"localhost:{port}", 1, 0)
        config = ModelConfig.from_variant(args.encoder, "v2")
        model = DepthAnything(config, dtype=DTYPES[args.dtype], attention=args.attention)
        print(hardware.describe())
        print(
            f"{args.encoder} {args.size}x{args.size} {args.dtype}, labeled batch "
            f"{args.labeled_batch}"
        )
        for stage in args.stages:
            preemption_check_table(model, stage, args.labeled_batch, args.size, args.iters)
        return

    device = hardware.torch_device()
    torch.set_default_device(device)
    config = ModelConfig.from_variant(args.encoder, "v2", pos_embed="hf")
    torch.manual_seed(0)
    ref = hf_model(config).train().to(device)
    state = {k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()}
    bf16 = args.dtype == "bfloat16"
    model = DepthAnything(
        config,
        dtype=jnp.bfloat16 if bf16 else jnp.float32,
        remat=args.remat,
        attention=args.attention,
    )
    params = official_to_flax(to_official(state), param_shapes(model))
    frozen_torch = Dinov2Model(ref.backbone.config).eval().to(device)
    frozen_torch.load_state_dict(
        {k.removeprefix("backbone."): v for k, v in ref.state_dict().items() if "backbone." in k},
        strict=False,
    )

    print(hardware.describe())
    print(
        f"{args.encoder} {args.size}x{args.size} {args.dtype} (params float32), labeled batch "
        f"{args.labeled_batch} (student: + {2 * args.labeled_batch} unlabeled), "
        f"remat={args.remat}, attention={args.attention}\n"
    )
    print(
        "| step | dajax s/step | PyTorch s/step | speed-up | loss dajax | loss PyTorch "
        "| dajax TFLOP/s | MFU | dajax temp GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=bf16)
    for stage in args.stages:
        is_student = stage == "student"
        batch = make_batch(args.labeled_batch, args.size, is_student)
        reference = torch_reference(ref, frozen_torch, state, batch, stage, autocast, args.iters)
        frozen = {"dinov2": jax.tree.map(jnp.array, params["pretrained"])} if is_student else None
        loss_fn = stage_loss_fn(model, stage)
        run, compiled, (state0, batch0) = dajax_runner(model, params, loss_fn, batch, frozen)
        j_loss, j_s = timed(run, args.iters)
        print(f"dajax {stage}: {j_s:.4f} s/step, loss {j_loss:.4f}", file=sys.stderr, flush=True)
        if args.profile:
            profile_runs(run, compiled, os.path.join(args.profile, stage))
        flops = step_flops(model.clone(attention="xla"), stage, state0, batch0, frozen)
        util = hardware.mfu(flops, j_s, args.dtype, args.peak_tflops)
        temp = compiled.memory_analysis()
        temp_gib = f"{temp.temp_size_in_bytes / 2**30:.1f}" if temp else "-"
        tflops = f"{flops / j_s / 1e12:.1f}" if flops else "-"
        if reference is None:
            t_cols = f"out of memory | - | {j_loss:.4f} | -"
        else:
            t_loss, t_s = reference
            t_cols = f"{t_s:.3f} | {t_s / j_s:.2f}x | {j_loss:.4f} | {t_loss:.4f}"
        print(f"| {stage} | {j_s:.3f} | {t_cols} | {tflops} | {util} | {temp_gib} |", flush=True)


if __name__ == "__main__":
    main()
