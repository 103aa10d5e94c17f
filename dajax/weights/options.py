"""The loader options that every entry point shares: what a checkpoint file may not say.

    --arch vits|vitb|vitl|vitg   --version v1|v2   --head relative|metric
    --max-depth METRES           --pos-embed official|hf

`python -m dajax.predict`, `dajax.app`, `dajax.convert` and `dajax.serving` add them with
`add_loader_options`; the evaluation config (`configs/eval.py`) takes the same names as config
arguments (`version=v1,max_depth=20`, unset: `CONFIG_UNSET`) into `config.load`. Either way
`loader_kwargs` turns them into the keyword arguments of
`dajax.weights.pretrained.load_depth_anything` (and `DepthEstimator.from_pretrained`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from dajax.models import variants


@dataclasses.dataclass(frozen=True)
class LoaderOption:
    """One option: `name` is `load_depth_anything`'s keyword, `--name-with-dashes` the flag."""

    name: str
    type: type
    choices: tuple[str, ...] | None
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    LoaderOption(
        "arch",
        str,
        tuple(variants.ENCODERS),
        "encoder size, checked against the tensors (default: read from the tensors)",
    ),
    LoaderOption(
        "version",
        str,
        variants.VERSIONS,
        "Depth Anything version (default: from the file name or config.json; V1 and V2 "
        "ViT-S/B/L files look alike, so other names need it)",
    ),
    LoaderOption(
        "head",
        str,
        variants.HEADS,
        "depth head (default: metric when the file name or config.json says so, else relative)",
    ),
    LoaderOption(
        "max_depth",
        float,
        None,
        "metres, for metric heads (default: from the file name, hypersim 20 / vkitti 80, or "
        "config.json)",
    ),
    LoaderOption(
        "pos_embed",
        str,
        variants.POS_EMBED_MODES,
        "how position embeddings are resized to the input: 'official' (DINOv2's rule, as the "
        "released .pth) or 'hf' (transformers' rule, as its pipelines) (default: the rule a "
        "converted folder saved, else official)",
    ),
)
NAMES = tuple(option.name for option in OPTIONS)
# The config-argument spelling of "not given" (`configs/common.parse_args` types by default).
CONFIG_UNSET = {option.name: option.type() for option in OPTIONS}


def add_loader_options(parser: argparse.ArgumentParser) -> None:
    """Adds the five loader options (flags as in the module docstring, default None) to
    `parser`, in their own help group."""
    group = parser.add_argument_group(
        "checkpoint options",
        "what a checkpoint file may not say; a converted folder or a training run stores "
        "them, and options given must agree with it (--pos-embed replaces its rule)",
    )
    for option in OPTIONS:
        group.add_argument(
            option.flag,
            type=option.type,
            choices=option.choices,
            default=None,
            metavar="METRES" if option.type is float else None,
            help=option.help,
        )


def loader_kwargs(values) -> dict:
    """`load_depth_anything`'s keyword arguments from parsed flags (an argparse Namespace) or
    a config's `load` dict (a dict or ConfigDict).

    Unset options (None, or `CONFIG_UNSET`'s "" and 0.0) become None. Raises ValueError with
    one line naming the option as the caller spelled it (`--max-depth` or `max_depth`) for a
    value outside the choices or a max depth that is not a finite number of metres > 0.
    """
    flags = isinstance(values, argparse.Namespace)
    kwargs = {}
    for option in OPTIONS:
        value = (getattr(values, option.name) if flags else values.get(option.name)) or None
        label = option.flag if flags else option.name
        if value is not None and option.choices and value not in option.choices:
            raise ValueError(f"{label} {value!r}: expected one of {', '.join(option.choices)}")
        if value is not None and option.type is float:
            value = float(value)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} {value}: not a finite number of metres > 0")
        kwargs[option.name] = value
    return kwargs
