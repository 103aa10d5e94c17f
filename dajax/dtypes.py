"""Compute dtypes by the names configs and command lines use.

Importing this module does not import JAX, so a command-line parser can offer the names
without paying for it.
"""

from __future__ import annotations

DTYPES = ("float32", "bfloat16")


def compute_dtype(name: str):
    """The JAX dtype called `name` (`jnp.float32` or `jnp.bfloat16`).

    Raises:
      ValueError: `name` is not one of `DTYPES`.
    """
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {name!r}")
    import jax.numpy as jnp

    return getattr(jnp, name)
