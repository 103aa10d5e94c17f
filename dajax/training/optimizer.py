"""AdamW with per-group learning rates chosen by parameter-path regex (big_vision style).

Config fields (`config.optim`):
  base_lr: encoder learning rate (5e-6 in the paper).
  lr_mults: ((regex, multiplier), ...) matched against '/'-joined param paths, first match
    wins; e.g. (("^depth_head/", 10.0), (".*", 1.0)) gives the decoder 10x. A multiplier of
    0 freezes the group.
  no_decay: regexes of params without weight decay (norms, biases, pos/cls/mask tokens,
    LayerScale gammas).
  weight_decay, b1, b2, eps: AdamW.
  warmup_steps: linear warm-up from 0.
  schedule: 'linear' (decay to 0 at total_steps) or 'poly' (power `poly_power`).
  grad_clip: global-norm clip (0 = off).
"""

from __future__ import annotations

import math
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax


def param_labels(params, lr_mults) -> dict:
    """Tree of group names ('g0', 'g1', ...) by first matching regex; error on no match."""
    patterns = [(re.compile(p), f"g{i}") for i, (p, _) in enumerate(lr_mults)]

    def label(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        for pattern, group in patterns:
            if pattern.search(name):
                return group
        raise ValueError(f"parameter {name!r} matches no optim.lr_mults pattern")

    return jax.tree_util.tree_map_with_path(label, params)


def schedule(optim, total_steps: int, multiplier: float) -> optax.Schedule:
    """Warm-up then linear or polynomial decay of `base_lr * multiplier` to 0."""
    peak = optim.base_lr * multiplier
    decay_steps = max(total_steps - optim.warmup_steps, 1)
    if optim.schedule == "linear":
        decay = optax.linear_schedule(peak, 0.0, decay_steps)
    elif optim.schedule == "poly":
        decay = optax.polynomial_schedule(peak, 0.0, optim.poly_power, decay_steps)
    else:
        raise ValueError(f"optim.schedule must be 'linear' or 'poly', got {optim.schedule!r}")
    if optim.warmup_steps <= 0:
        return decay
    warmup = optax.linear_schedule(0.0, peak, optim.warmup_steps)
    return optax.join_schedules([warmup, decay], [optim.warmup_steps])


def warmup_note(optim, total_steps: int) -> str | None:
    """One line saying what the schedule becomes when the warm-up lasts the whole run
    (`optim.warmup_steps >= total_steps`): the learning rate only rises; else None."""
    warmup = optim.warmup_steps
    if warmup <= 0 or warmup < total_steps:
        return None
    return (
        f"config.optim.warmup_steps={warmup} >= config.total_steps={total_steps}: the learning "
        f"rate only warms up, rising linearly to {total_steps / warmup:.0%} of its peak at the "
        f"last step, and never decays; lower --config.optim.warmup_steps (e.g. to "
        f"{total_steps // 20}) for a warm-up then a decay"
    )


def resume_note(optim, step: int, saved_total_steps: int, total_steps: int) -> str | None:
    """One line saying what happens to the schedule when a run saved with
    `saved_total_steps` resumes at `step` with another `total_steps`; None when they agree.

    The schedule is a function of `total_steps`, so it is rebuilt: the base learning rate
    jumps at `step` from the old schedule's value to the new one's."""
    if saved_total_steps == total_steps:
        return None
    change = f"config.total_steps={total_steps} (was {saved_total_steps})"
    if step >= total_steps:
        return f"resumed at step {step} with {change}: no step runs; the run ends at step {step}"
    old = float(schedule(optim, saved_total_steps, 1.0)(step))
    new = float(schedule(optim, total_steps, 1.0)(step))
    return (
        f"resumed at step {step} with {change}: the learning-rate schedule is rebuilt for "
        f"{total_steps} steps, so the base learning rate goes from {old:.3g} to {new:.3g} at "
        f"step {step} and decays to 0 at step {total_steps}"
    )


def decay_mask(params, no_decay) -> dict:
    """True where weight decay applies."""
    patterns = [re.compile(p) for p in no_decay]
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    return flax.traverse_util.unflatten_dict(
        {k: not any(p.search(k) for p in patterns) for k in flat}, sep="/"
    )


def _group_name(pattern: str) -> str:
    return re.sub(r"[^\w/]+", "", pattern).strip("/") or "rest"


# Fields that must be finite and >= 0, and those that must also be > 0.
_NON_NEGATIVE = ("base_lr", "weight_decay", "eps", "grad_clip", "poly_power")
_BELOW_ONE = ("b1", "b2")


def check_optim(optim) -> None:
    """Refuses, in one line naming the field, an `optim` that would train on NaN: a learning
    rate, multiplier, weight decay, eps, clip or power that is not a finite number >= 0 (the
    base learning rate > 0), Adam betas outside [0, 1), or negative warm-up steps."""

    def bad(field: str, value, rule: str) -> ValueError:
        return ValueError(f"config.optim.{field}: {value!r} {rule}")

    for field in _NON_NEGATIVE + _BELOW_ONE:
        value = optim[field]
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise bad(field, value, "must be a finite number >= 0")
    if optim.base_lr == 0:
        raise bad("base_lr", optim.base_lr, "must be > 0 (set lr_mults to 0 to freeze a group)")
    for field in _BELOW_ONE:
        if optim[field] >= 1:
            raise bad(field, optim[field], "must be < 1")
    for i, (pattern, mult) in enumerate(optim.lr_mults):
        if not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult < 0:
            raise bad(f"lr_mults.{i}", (pattern, mult), "needs a finite multiplier >= 0")
    if optim.warmup_steps < 0:
        raise bad("warmup_steps", optim.warmup_steps, "must be >= 0")


def build_optimizer(optim, params, total_steps: int):
    """The optax transformation and a `learning_rates(step) -> {'lr/<group>': lr}` function.

    Groups are named after their regex with the regex syntax removed (`^depth_head/` ->
    `depth_head`); a pattern with no name characters (`.*`) is `rest`.
    """
    check_optim(optim)
    labels = param_labels(params, optim.lr_mults)
    groups = {}
    schedules = {}
    for i, (pattern, mult) in enumerate(optim.lr_mults):
        if mult == 0:
            groups[f"g{i}"] = optax.set_to_zero()
            continue
        schedules[pattern] = schedule(optim, total_steps, mult)
        groups[f"g{i}"] = optax.adamw(
            schedules[pattern],
            b1=optim.b1,
            b2=optim.b2,
            eps=optim.eps,
            weight_decay=optim.weight_decay,
            mask=lambda p: decay_mask(p, optim.no_decay),
        )
    chain = [optax.clip_by_global_norm(optim.grad_clip)] if optim.grad_clip > 0 else []
    tx = optax.chain(*chain, optax.multi_transform(groups, labels))

    # Every step's rate, computed once here: a host lookup at log steps then waits for nothing
    # (evaluating a schedule there would queue behind the running train step and wait for it).
    tables = {
        p: np.asarray(jax.vmap(fn)(jnp.arange(total_steps + 1))) for p, fn in schedules.items()
    }

    def learning_rates(step: int) -> dict[str, float]:
        return {
            f"lr/{_group_name(p)}": float(table[min(max(step, 0), len(table) - 1)])
            for p, table in tables.items()
        }

    return tx, learning_rates
