"""Refuse checkpoints whose weights hold NaN or infinity.

A model with one non-finite weight writes all-NaN depth maps without any error, so every
loader checks the floating-point tensors (float16/32/64 and bfloat16) once, at load time.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class NonFiniteWeightsError(ValueError):
    """A checkpoint tensor holds NaN or +-inf."""


def require_finite(named_tensors: Iterable[tuple[str, object]], source: str) -> None:
    """Raises NonFiniteWeightsError naming `source` and the first tensor holding NaN or inf.

    Args:
      named_tensors: (name, array) pairs in file order; arrays are numpy or anything
        `np.asarray` accepts (jax arrays are copied to the host one at a time).
      source: the file or folder the tensors came from, for the message.
    """
    for name, value in named_tensors:
        array = np.asarray(value)
        if array.dtype.kind in "biuSUO":  # booleans, integers, strings: nothing to check
            continue
        finite = np.isfinite(array)
        if not finite.all():
            bad = array.size - int(np.count_nonzero(finite))
            raise NonFiniteWeightsError(
                f"{source}: tensor {name} holds {bad} NaN/inf of {array.size} values; the "
                "checkpoint is corrupt (a diverged run or a broken conversion)"
            )
