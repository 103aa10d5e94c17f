"""Data sources by name, built from config dicts (`kind` plus the source's arguments)."""

from __future__ import annotations

from dajax.data.benchmark_sources import DDAD, DIODE, ETH3D, Sintel
from dajax.data.metric_sources import Hypersim, VirtualKITTI2
from dajax.data.procedural import PITCH_RANGE, ROLL_RANGE, ProceduralScenes
from dajax.data.pseudo_labels import PseudoLabelSource
from dajax.data.rgbd_sources import KITTIList, NYUv2H5Tree, NYUv2Labeled, PairedFolders, TFDSDepth
from dajax.data.unlabeled import UnlabeledImages


def _procedural(spec, images_only: bool):
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
    )


SOURCES = {
    "procedural": lambda spec: _procedural(spec, images_only=False),
    "procedural_images": lambda spec: _procedural(spec, images_only=True),
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

# Where the configs keep the sources users most often leave empty.
EMPTY_PATH_HINTS = {
    "image_folder": "e.g. --config.data.unlabeled.path=photos/",
    "pseudo_labels": "e.g. --config.data.pseudo.path=runs/pl/shards, the pseudo_label output",
}


# Built-in synthetic scenes: the demo's data, refused as a full-size run's training data
# unless the config says `data.allow_procedural` (`check_training_data`).
PROCEDURAL_KINDS = ("procedural", "procedural_images")


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
