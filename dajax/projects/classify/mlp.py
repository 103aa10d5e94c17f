"""The study's classifier: an MLP head on frozen features, trained with Adam.

`MLPHead` is Dense-ReLU-Dropout-Dense-ReLU-Dropout-Dense (3 linear layers, 2 ReLUs), as in the
study it reproduces. `train_head` trains it with softmax cross-entropy for `cfg.epochs` epochs of
shuffled minibatches and evaluates train and val after every epoch. The last minibatch of an
epoch is padded with zero-weight rows, so the train step compiles once.

Config fields (`cfg`, a ConfigDict or any attribute object): `hidden` (2 widths), `dropout`,
`lr`, `epochs`, `batch_size`, `standardize` (z-score features with the train statistics).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

log = logging.getLogger("dajax")


class MLPHead(nn.Module):
    """[B, D] features -> [B, num_classes] logits."""

    hidden: Sequence[int]  # the two hidden widths
    num_classes: int
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, name=f"fc{len(self.hidden) + 1}")(x)


def _loss_and_correct(logits, labels, weights):
    """Weighted sums of cross-entropy and of correct predictions over a batch."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.sum(ce * weights), jnp.sum(correct * weights)


def make_steps(model: MLPHead, tx: optax.GradientTransformation):
    """Jitted `(train_step, eval_step)`.

    train_step(params, opt_state, x [B, D], y [B] int, w [B] 0/1 weights, rng) ->
      (params, opt_state, loss_sum, correct_sum); the loss is the weighted mean cross-entropy.
    eval_step(params, x, y, w) -> (loss_sum, correct_sum), dropout off.
    """

    def train_step(params, opt_state, x, y, w, rng):
        def loss_fn(p):
            logits = model.apply({"params": p}, x, train=True, rngs={"dropout": rng})
            loss_sum, correct = _loss_and_correct(logits, y, w)
            return loss_sum / jnp.maximum(w.sum(), 1.0), (loss_sum, correct)

        grads, (loss_sum, correct) = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss_sum, correct

    def eval_step(params, x, y, w):
        return _loss_and_correct(model.apply({"params": params}, x), y, w)

    return jax.jit(train_step, donate_argnums=(0, 1)), jax.jit(eval_step)


def _batches(n: int, batch_size: int, order: np.ndarray):
    """Index arrays of `batch_size` (padded with index 0) and their 0/1 weights."""
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        w = np.zeros(batch_size, np.float32)
        w[: len(idx)] = 1.0
        yield np.pad(idx, (0, batch_size - len(idx))), w


def evaluate(eval_step, params, x: np.ndarray, y: np.ndarray, batch_size: int):
    """(mean cross-entropy, accuracy in [0, 1]) over all of x [N, D], y [N]."""
    loss, correct = 0.0, 0.0
    for idx, w in _batches(len(x), batch_size, np.arange(len(x))):
        l_sum, c_sum = eval_step(params, x[idx], y[idx], w)
        loss, correct = loss + float(l_sum), correct + float(c_sum)
    return loss / max(len(x), 1), correct / max(len(x), 1)


def train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    cfg,
    seed: int = 0,
    num_classes: int | None = None,
) -> dict[str, list[float]]:
    """Trains an `MLPHead` on features and records per-epoch metrics.

    Args:
      train_x, val_x: [N, D] float features.
      train_y, val_y: [N] int labels in [0, num_classes).
      cfg: `hidden`, `dropout`, `lr`, `epochs`, `batch_size`, `standardize`.
      seed: seeds the init, dropout and the shuffling.
      num_classes: default 1 + the largest label seen.

    Returns:
      `{train_loss, train_acc, val_loss, val_acc}`, each a list of `cfg.epochs` floats:
      mean cross-entropy (nats) and accuracy in [0, 1]. Train metrics are averaged over the
      epoch's minibatches in training mode (dropout on), as a PyTorch loop reports them;
      val metrics are evaluated after the epoch with dropout off.
    """
    train_x, val_x = np.asarray(train_x, np.float32), np.asarray(val_x, np.float32)
    train_y, val_y = np.asarray(train_y, np.int32), np.asarray(val_y, np.int32)
    if cfg.standardize:
        mean, std = train_x.mean(0), train_x.std(0) + 1e-6
        train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    if num_classes is None:
        num_classes = int(max(train_y.max(), val_y.max() if len(val_y) else 0)) + 1
    model = MLPHead(tuple(cfg.hidden), num_classes, cfg.dropout)
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    params = model.init(init_rng, jnp.zeros((1, train_x.shape[1]), jnp.float32))["params"]
    tx = optax.adam(cfg.lr)
    opt_state = tx.init(params)
    train_step, eval_step = make_steps(model, tx)
    shuffle = np.random.default_rng(seed)
    history = {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc")}
    step = 0
    for _ in range(cfg.epochs):
        loss, correct = 0.0, 0.0
        for idx, w in _batches(len(train_x), cfg.batch_size, shuffle.permutation(len(train_x))):
            rng = jax.random.fold_in(dropout_rng, step)
            params, opt_state, l_sum, c_sum = train_step(
                params, opt_state, train_x[idx], train_y[idx], w, rng
            )
            loss, correct, step = loss + float(l_sum), correct + float(c_sum), step + 1
        history["train_loss"].append(loss / len(train_x))
        history["train_acc"].append(correct / len(train_x))
        val_loss, val_acc = evaluate(eval_step, params, val_x, val_y, cfg.batch_size)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
    return history
