"""Data sources by name, built from config dicts (`kind` plus the source's arguments), and
their command-line form `KIND:FIELD=VALUE,...` (`parse_source`)."""

from __future__ import annotations

import ml_collections

from dajax.data.benchmark_sources import DDAD, DIODE, ETH3D, Sintel
from dajax.data.metric_sources import Hypersim, VirtualKITTI2
from dajax.data.procedural import PITCH_RANGE, ROLL_RANGE, ProceduralScenes
from dajax.data.pseudo_labels import PseudoLabelSource
from dajax.data.rgbd_sources import KITTIList, NYUv2H5Tree, NYUv2Labeled, PairedFolders, TFDSDepth
from dajax.data.unlabeled import UnlabeledImages


def _procedural(spec, images_only: bool, semantics: bool = False):
    return ProceduralScenes(
        spec.num_scenes,
        spec.height,
        spec.width,
        tuple(spec.styles),
        spec.seed,
        images_only,
        # configs written before the camera ranges existed have neither key
        tuple(spec.get("pitch_range", PITCH_RANGE)),
        tuple(spec.get("roll_range", ROLL_RANGE)),
        semantics,
    )


SOURCES = {
    "procedural": lambda spec: _procedural(spec, images_only=False),
    "procedural_images": lambda spec: _procedural(spec, images_only=True),
    # images with their class maps, no depth: the encoder pre-training's data
    "procedural_semantics": lambda spec: _procedural(spec, images_only=True, semantics=True),
    "image_folder": lambda spec: UnlabeledImages(spec.path, spec.get("sky_masks") or None),
    "pseudo_labels": lambda spec: PseudoLabelSource(spec.path),
    "nyu_mat": lambda spec: NYUv2Labeled(spec.path, spec.get("split", "all"), spec.get("splits")),
    "nyu_h5": lambda spec: NYUv2H5Tree(spec.path),
    "kitti": lambda spec: KITTIList(
        spec.list_file, spec.data_root, spec.depth_root, spec.get("max_depth", 80.0)
    ),
    "hypersim": lambda spec: Hypersim(spec.list_file, spec.get("root", "")),
    "vkitti2": lambda spec: VirtualKITTI2(
        spec.list_file, spec.get("root", ""), spec.get("max_depth", 80.0)
    ),
    "paired_folders": lambda spec: PairedFolders(
        spec.images,
        spec.depths,
        spec.get("depth_format", "npy"),
        spec.get("depth_scale", 1000.0),
        spec.get("min_depth"),
        spec.get("max_depth"),
        spec.get("disparity", False),
    ),
    "tfds": lambda spec: TFDSDepth(
        spec.name,
        spec.split,
        spec.get("data_dir"),
        spec.get("image_key", "image"),
        spec.get("depth_key", "depth"),
    ),
    "sintel": lambda spec: Sintel(spec.path, spec.get("render_pass", "final")),
    "ddad": lambda spec: DDAD(spec.path),
    "eth3d": lambda spec: ETH3D(spec.path),
    "diode": lambda spec: DIODE(spec.path),
}


# The fields of each kind that name a file or folder.
PATH_FIELDS = {
    "image_folder": ("path",),
    "pseudo_labels": ("path",),
    "nyu_mat": ("path",),
    "nyu_h5": ("path",),
    "kitti": ("list_file", "data_root", "depth_root"),
    "hypersim": ("list_file",),
    "vkitti2": ("list_file",),
    "paired_folders": ("images", "depths"),
    "sintel": ("path",),
    "ddad": ("path",),
    "eth3d": ("path",),
    "diode": ("path",),
}

# The fields of each kind that `parse_source` accepts, with their types; the required ones
# are `PATH_FIELDS` (and tfds's `name` and `split`). The procedural kinds take tuples and
# are set in config files only.
FIELDS = {
    "image_folder": {"path": str, "sky_masks": str},
    "pseudo_labels": {"path": str},
    "nyu_mat": {"path": str, "split": str, "splits": str},
    "nyu_h5": {"path": str},
    "kitti": {"list_file": str, "data_root": str, "depth_root": str, "max_depth": float},
    "hypersim": {"list_file": str, "root": str},
    "vkitti2": {"list_file": str, "root": str, "max_depth": float},
    "paired_folders": {
        "images": str,
        "depths": str,
        "depth_format": str,
        "depth_scale": float,
        "min_depth": float,
        "max_depth": float,
        "disparity": bool,
    },
    "tfds": {"name": str, "split": str, "data_dir": str, "image_key": str, "depth_key": str},
    "sintel": {"path": str, "render_pass": str},
    "ddad": {"path": str},
    "eth3d": {"path": str},
    "diode": {"path": str},
}
REQUIRED_FIELDS = {**PATH_FIELDS, "tfds": ("name", "split")}
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def source_kind(text: str) -> str | None:
    """The kind `text` names when it is a source's command-line form (`KIND` or
    `KIND:...` with a registered KIND), else None."""
    kind = text.split(":", 1)[0]
    return kind if kind in SOURCES else None


def parse_source(text: str, where: str, weighted: bool) -> tuple[ml_collections.ConfigDict, float]:
    """A source spec from its command-line form `KIND:FIELD=VALUE,FIELD=VALUE,...`.

    E.g. `paired_folders:images=rgb/,depths=depth/,depth_format=png16,depth_scale=1000`.
    Values take the field's type (`FIELDS`: text, numbers, booleans true/false); values
    cannot hold commas.

    Args:
      text: the command-line value.
      where: the flag, for messages (e.g. '--config.data.labeled').
      weighted: the field is a mixture ((spec, weight), ...): `weight=W` (default 1) is the
        source's share; otherwise `weight` is refused.

    Returns:
      (the spec as a ConfigDict with `kind`, its weight).

    Raises:
      ValueError: one line starting with `where`, naming the field: a procedural kind, an
        unknown or repeated field, a value of the wrong type, a required field missing.
    """
    kind, _, rest = text.partition(":")
    if kind not in FIELDS:
        raise ValueError(
            f"{where}: {kind!r} sources take tuples and are set in a config file; the command "
            f"line takes {sorted(FIELDS)}"
        )
    fields, spec, weight = FIELDS[kind], {"kind": kind}, 1.0
    for item in filter(None, rest.split(",")):
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{where}: {item!r} is not FIELD=VALUE (values cannot hold commas)")
        if name == "weight" and weighted:
            weight = _typed(float, value, where, name)
            if weight <= 0:
                raise ValueError(f"{where}: weight={value} must be > 0")
            continue
        if name not in fields:
            raise ValueError(
                f"{where}: {kind} has no field {name!r}; its fields: {', '.join(fields)}"
                + (", weight" if weighted else "")
            )
        if name in spec:
            raise ValueError(f"{where}: {name} is given twice")
        spec[name] = _typed(fields[name], value, where, name)
    missing = [f for f in REQUIRED_FIELDS.get(kind, ()) if not spec.get(f)]
    if missing:
        raise ValueError(f"{where}: {kind} needs {', '.join(f + '=...' for f in missing)}")
    return ml_collections.ConfigDict(spec), weight


def _typed(kind: type, value: str, where: str, name: str):
    if kind is str:
        return value
    if kind is bool:
        if value.lower() not in _BOOLS:
            raise ValueError(f"{where}: {name}={value} is not true or false")
        return _BOOLS[value.lower()]
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{where}: {name}={value} is not a number") from None


# Where the configs keep the sources users most often leave empty.
EMPTY_PATH_HINTS = {
    "image_folder": "e.g. --config.data.unlabeled.path=photos/",
    "pseudo_labels": "e.g. --config.data.pseudo.path=runs/pl/shards, the pseudo_label output",
}


# Built-in synthetic scenes: the demo's data, refused as a full-size run's training data
# unless the config says `data.allow_procedural` (`check_training_data`).
PROCEDURAL_KINDS = ("procedural", "procedural_images", "procedural_semantics")


def check_training_data(data_cfg) -> None:
    """Refuses procedural scenes as training data unless `data_cfg.allow_procedural` is set.

    The full-size configs keep procedural scenes as their labeled default (the one labeled
    source needing no download), so a run started without naming its data would otherwise
    train on synthetic scenes without a word. The demo configs set `allow_procedural`.

    Args:
      data_cfg: `config.data`, with `labeled` ((spec, weight), ...) and optionally
        `unlabeled` (a spec).

    Raises:
      ValueError: one line naming the field to set and the opt-in.
    """
    if data_cfg.get("allow_procedural", False):
        return
    fields = {"labeled": [spec for spec, _ in data_cfg.labeled]}
    if data_cfg.get("unlabeled") is not None:
        fields["unlabeled"] = [data_cfg.unlabeled]
    for field, specs in fields.items():
        if any(spec.kind in PROCEDURAL_KINDS for spec in specs):
            raise ValueError(
                f"config.data.{field} holds the built-in procedural scenes (the demo's synthetic "
                f"data); set config.data.{field} to your sources (docs/data.md), or pass "
                "--config.data.allow_procedural=True to train on procedural scenes on purpose"
            )


def build_source(spec):
    """A random-access source from `spec.kind` and its fields.

    Raises:
      ValueError: an unknown kind, or a path field left empty (named, with how to set it).
    """
    if spec.kind not in SOURCES:
        raise ValueError(f"unknown data source kind {spec.kind!r}; expected one of {list(SOURCES)}")
    for field in PATH_FIELDS.get(spec.kind, ()):
        if not spec.get(field):
            hint = EMPTY_PATH_HINTS.get(spec.kind, f"--config.<where the source is>.{field}=PATH")
            raise ValueError(f"data source {spec.kind!r}: {field!r} is empty; set it ({hint})")
    return SOURCES[spec.kind](spec)
