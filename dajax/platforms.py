"""Which JAX platforms a dajax process starts, chosen quietly on machines without a TPU.

`libtpu` may be installed where no TPU is: the test extra brings it so that TPU programs
compile on a CPU (`benchmarks/memory.py --target v5e:2x2`). JAX's automatic choice then starts
libtpu anyway, and libtpu prints a multi-line `E0000 ... INVALID_ARGUMENT ...
TPU_WORKER_HOSTNAMES` block on every command before falling back. `choose_quietly` (run when
`dajax` is imported) names the platforms instead, leaving the TPU out, but only when

- the user named none (`JAX_PLATFORMS` / `jax.config.jax_platforms` unset; set either to
  choose yourself),
- libtpu is installed and no TPU chip is on the PCI bus (a TPU VM keeps JAX's own choice),
- and JAX has not started its backends yet.

The named list is the GPU platforms whose JAX plugin is installed (JAX skips CUDA itself when
no NVIDIA device is visible; ROCm only where `/dev/kfd` exists), then the CPU.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pathlib

import jax

GOOGLE_PCI_VENDOR = "0x1ae0"  # TPU chips show up on the PCI bus under Google's vendor id


def tpu_chips_present() -> bool:
    """True when a PCI device of Google's vendor id is attached (a TPU VM)."""
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            if pathlib.Path(vendor).read_text().strip() == GOOGLE_PCI_VENDOR:
                return True
        except OSError:
            continue
    return False


def _installed_gpu_platforms() -> list[str]:
    """'cuda' and 'rocm' when a JAX plugin for them is installed (and, for ROCm, a device)."""
    plugins = []
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            plugins += [p.name for p in pathlib.Path(folder).iterdir()]
    platforms = []
    if any("cuda" in name for name in plugins):
        platforms.append("cuda")
    if any("rocm" in name for name in plugins) and os.path.exists("/dev/kfd"):
        platforms.append("rocm")
    return platforms


def _backends_started() -> bool:
    from jax._src import xla_bridge  # no public way to ask; absent -> assume started

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return True if started is None else bool(started())


def choose_quietly() -> str | None:
    """Sets `jax_platforms` to the platforms without the TPU where the module docstring says
    so; returns what it set, or None when it left JAX's choice alone."""
    if os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms:
        return None
    if importlib.util.find_spec("libtpu") is None or tpu_chips_present() or _backends_started():
        return None
    platforms = ",".join([*_installed_gpu_platforms(), "cpu"])
    jax.config.update("jax_platforms", platforms)
    return platforms
