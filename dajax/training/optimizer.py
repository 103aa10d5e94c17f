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

import re

import flax
import jax
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


def decay_mask(params, no_decay) -> dict:
    """True where weight decay applies."""
    patterns = [re.compile(p) for p in no_decay]
    flat = flax.traverse_util.flatten_dict(params, sep="/")
    return flax.traverse_util.unflatten_dict(
        {k: not any(p.search(k) for p in patterns) for k in flat}, sep="/"
    )


def _group_name(pattern: str) -> str:
    return re.sub(r"[^\w/]+", "", pattern).strip("/") or "rest"


def build_optimizer(optim, params, total_steps: int):
    """The optax transformation and a `learning_rates(step) -> {'lr/<group>': lr}` function.

    Groups are named after their regex with the regex syntax removed (`^depth_head/` ->
    `depth_head`); a pattern with no name characters (`.*`) is `rest`.
    """
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

    def learning_rates(step: int) -> dict[str, float]:
        return {f"lr/{_group_name(p)}": float(fn(step)) for p, fn in schedules.items()}

    return tx, learning_rates
