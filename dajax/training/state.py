"""Train state and the generic jitted train step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything a training run updates: step, trainable params, optimiser state.

    Frozen trees (a teacher, the frozen DINOv2 for feature alignment) are not part of it: they
    are separate step arguments, never donated, optimised or checkpointed.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    skipped: jax.Array  # steps whose loss or gradients were non-finite (update not applied)


def create_state(params, tx: optax.GradientTransformation) -> TrainState:
    """A step-0 state for `params`."""
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, opt_state=tx.init(params), skipped=zero)


LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, seed: int):
    """Builds `step(state, batch, frozen) -> (state, metrics)`.

    Args:
      loss_fn: `loss_fn(params, batch, frozen, rng) -> (loss, metrics)`, pure.
      tx: the optimiser.
      seed: base RNG seed; each step uses `fold_in(key(seed), step)`, so a resumed run draws
        the same randomness as an uninterrupted one.

    Returns:
      A pure function to be jitted by the caller. A non-finite loss or gradient leaves params
      and optimiser state unchanged and increments `state.skipped` (the loop then stops the run
      with a clear error).
    """

    def step(state: TrainState, batch: dict, frozen: Any):
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, frozen, rng
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        grad_norm = optax.global_norm(grads)
        # The norm is NaN or inf exactly when some gradient is (or when finite gradients are so
        # large that their squares overflow, a step worth skipping too). One scalar test
        # compiles several times faster than a per-leaf test on XLA:CPU.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        params = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            optax.apply_updates(state.params, updates),
            state.params,
        )
        opt_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), opt_state, state.opt_state
        )
        skipped = state.skipped + (~finite).astype(jnp.int32)
        # `skipped_steps` (the run's count so far) rides with the metrics, which the loop reads
        # a step late, after the state holding it went to the next step.
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, skipped_steps=skipped)
        new = TrainState(step=state.step + 1, params=params, opt_state=opt_state, skipped=skipped)
        return new, metrics

    return step
