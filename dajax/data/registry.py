"""Data sources by name, built from config dicts (`kind` plus the source's arguments)."""

from __future__ import annotations

from dajax.data.procedural import ProceduralScenes
from dajax.data.pseudo_labels import PseudoLabelSource
from dajax.data.unlabeled import UnlabeledImages


def _procedural(spec, images_only: bool):
    return ProceduralScenes(
        spec.num_scenes, spec.height, spec.width, tuple(spec.styles), spec.seed, images_only
    )


SOURCES = {
    "procedural": lambda spec: _procedural(spec, images_only=False),
    "procedural_images": lambda spec: _procedural(spec, images_only=True),
    "image_folder": lambda spec: UnlabeledImages(spec.path),
    "pseudo_labels": lambda spec: PseudoLabelSource(spec.path),
}


def build_source(spec):
    """A random-access source from `spec.kind` and its fields."""
    if spec.kind not in SOURCES:
        raise ValueError(f"unknown data source kind {spec.kind!r}; expected one of {list(SOURCES)}")
    return SOURCES[spec.kind](spec)
