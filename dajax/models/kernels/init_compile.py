"""Compiler options for a model's parameter initialiser.

Replaces: XLA's default optimisation level when `init_params` compiles `model.init`.
Pays on: CPUs only (elsewhere the options are empty).
Why: XLA:CPU spends most of an initialiser's compile time optimising random-number code
  that runs once; at optimisation level 0 the values agree to a float32 ulp.
Measured: `benchmarks/notes/2026-11-26-cpu-train-step.md` (commit ebddee3).
"""

from __future__ import annotations

import jax


def init_compiler_options() -> dict[str, int]:
    """`compiler_options` for compiling an initialiser on the default backend."""
    return {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
