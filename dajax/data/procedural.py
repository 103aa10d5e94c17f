"""Procedural RGB-D scenes: the built-in data that demos and tests train on (no downloads).

One scene per index, deterministic in (index, seed): a pinhole camera ray-casts into a room
(floor, walls, ceiling) or an outdoor ground plane under an open sky, with spheres, boxes and
vertical cylinders standing on the floor. Surfaces carry procedural textures (checkers,
stripes, value noise) under a directional light plus ambient. Every pixel gets exact metric
z-depth; sky (outdoor) and anything beyond `max_depth` is invalid depth, and the sky is also
flagged in its own `sky` mask (the farthest thing in the scene: disparity 0 as a target).

Scenes are described first (`sample_scene`, a `SceneSpec` of plain dataclasses) and rendered
second (`render`), so other code can build or edit descriptions, e.g. the classification study
makes objects whose texture camouflages them against their background.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("sphere", "box", "cylinder")
TEXTURES = ("flat", "checker", "stripes", "noise")
STYLES = ("indoor", "outdoor")
SKY_DEPTH = np.inf
# What each pixel shows (`render`'s `semantics`): the sky, the room's or ground's surfaces, and
# the objects by shape. No depth in it: a stand-in for the semantic knowledge a pre-trained
# encoder brings (`dajax.training.pretrain`).
# The side walls share a class, so a mirrored image keeps its labels.
SEMANTIC_CLASSES = ("sky", "floor", "back wall", "side wall", "ceiling", *SHAPES)
# `render`'s background surfaces (floor, back wall, side walls, ceiling) -> semantic class.
_BACKGROUND_CLASS = (1, 2, 3, 3, 4)


@dataclasses.dataclass(frozen=True)
class Texture:
    """Surface appearance: two colours (RGB in [0, 1]) mixed by a pattern at `scale` metres."""

    kind: str = "flat"
    color_a: tuple[float, float, float] = (0.6, 0.6, 0.6)
    color_b: tuple[float, float, float] = (0.3, 0.3, 0.3)
    scale: float = 0.5
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Primitive:
    """An object standing on the floor (y = floor_y), centred at (x, z).

    `size` is the radius (sphere, cylinder) or the half-width (box); `height` the vertical
    extent of boxes and cylinders (spheres rest on the floor).
    """

    shape: str
    x: float
    z: float
    size: float
    height: float
    texture: Texture
    label: int = 0


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """A whole scene: camera, room/ground, light, objects."""

    style: str
    fov_deg: float  # horizontal field of view
    camera_height: float  # metres above the floor
    pitch_deg: float  # camera tilt, negative looks down
    room_half_width: float  # indoor side walls at x = +-this
    room_depth: float  # indoor back wall at z = this
    ceiling: float  # indoor ceiling height above the floor
    floor: Texture
    walls: Texture
    light_dir: tuple[float, float, float]
    ambient: float
    objects: tuple[Primitive, ...]
    max_depth: float
    roll_deg: float = 0.0  # camera rotation about its optical axis (tilts the horizon)


# Rendered scenes a `ProceduralScenes` keeps in memory: 400 demo scenes at 96 x 96 take 33 MB,
# 100 at 518 x 518 take 240 MB.
DEFAULT_CACHE_BYTES = 256 * 2**20

# The camera ranges the built-in scenes are drawn from unless a source asks for others.
PITCH_RANGE = (-20.0, -3.0)
ROLL_RANGE = (0.0, 0.0)


def _random_texture(rng: np.random.Generator) -> Texture:
    a = rng.uniform(0.05, 0.95, 3)
    b = np.clip(a * rng.uniform(0.3, 0.8) + rng.uniform(-0.1, 0.1, 3), 0, 1)
    return Texture(
        kind=str(rng.choice(TEXTURES)),
        color_a=tuple(float(v) for v in a),
        color_b=tuple(float(v) for v in b),
        scale=float(rng.uniform(0.15, 0.8)),
        seed=int(rng.integers(1 << 30)),
    )


def sample_scene(
    rng: np.random.Generator,
    style: str = "indoor",
    max_objects: int = 6,
    pitch_range: tuple[float, float] = PITCH_RANGE,
    roll_range: tuple[float, float] = ROLL_RANGE,
) -> SceneSpec:
    """Draws a random scene description.

    Args:
      rng: the randomness (use `np.random.default_rng((seed, index))` for determinism).
      style: 'indoor' (room) or 'outdoor' (ground plane + sky).
      max_objects: upper bound on the number of objects (at least 1).
      pitch_range, roll_range: (low, high) degrees the camera's tilt and roll are drawn from
        uniformly. The roll is drawn last, so draws that differ only in `roll_range` share
        every other value of the scene.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    indoor = style == "indoor"
    depth = float(rng.uniform(4.0, 9.0)) if indoor else 60.0
    half_width = float(rng.uniform(2.0, 4.0)) if indoor else 40.0
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        z = float(rng.uniform(1.5, depth - 0.8 if indoor else 25.0))
        x = float(rng.uniform(-0.8, 0.8) * min(half_width - 0.5, 0.6 * z))
        objects.append(
            Primitive(
                shape=str(rng.choice(SHAPES)),
                x=x,
                z=z,
                size=float(rng.uniform(0.2, 0.7)),
                height=float(rng.uniform(0.4, 1.8)),
                texture=_random_texture(rng),
                label=int(rng.integers(0, len(SHAPES))),
            )
        )
    light = rng.normal(size=3) * (1.0, 0.3, 1.0) + (0.0, 1.5, -0.5)
    return SceneSpec(
        style=style,
        fov_deg=float(rng.uniform(50, 75)),
        camera_height=float(rng.uniform(1.0, 1.8)),
        pitch_deg=float(rng.uniform(*pitch_range)),
        room_half_width=half_width,
        room_depth=depth,
        ceiling=float(rng.uniform(2.4, 3.2)),
        floor=_random_texture(rng),
        walls=_random_texture(rng),
        light_dir=tuple(float(v) for v in light / np.linalg.norm(light)),
        ambient=float(rng.uniform(0.25, 0.5)),
        objects=tuple(objects),
        max_depth=20.0 if indoor else 80.0,
        roll_deg=float(rng.uniform(*roll_range)),  # drawn last: see the docstring
    )


def _camera_rotation(spec: SceneSpec) -> np.ndarray:
    """Camera-to-world rotation [3, 3]: roll about the optical axis, then pitch (tilt about x;
    negative looks down)."""
    p, r = np.radians(spec.pitch_deg), np.radians(spec.roll_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    roll = np.array([[np.cos(r), np.sin(r), 0], [-np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return (pitch @ roll).astype(np.float32)


def _rays(spec: SceneSpec, height: int, width: int) -> np.ndarray:
    """Unit ray directions [H, W, 3] in world coordinates (x right, y up, z forward)."""
    f = 0.5 * width / np.tan(np.radians(spec.fov_deg) / 2)
    u = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / f
    v = (height / 2 - np.arange(height, dtype=np.float32) - 0.5) / f
    d = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.float32(1.0)), axis=-1)
    d = d @ _camera_rotation(spec).T
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _plane(o_axis: float, d_axis: np.ndarray, value: float) -> np.ndarray:
    """Ray parameter where coordinate `axis` reaches `value` (inf if behind or parallel)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (value - o_axis) / d_axis
    return np.where(t > 1e-4, t, np.inf)


def _sphere(o: np.ndarray, d: np.ndarray, c: np.ndarray, r: float) -> np.ndarray:
    oc = o - c
    b = d @ oc
    disc = b * b - (oc @ oc - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0))
    return np.where((disc > 0) & (t > 1e-4), t, np.inf)


def _box(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = (lo - o) * inv, (hi - o) * inv
    t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
    return np.where((t_near <= t_far) & (t_near > 1e-4), t_near, np.inf)


def _cylinder(o, d, cx, cz, r, y0, y1) -> np.ndarray:
    ox, oz = o[0] - cx, o[2] - cz
    a = d[..., 0] ** 2 + d[..., 2] ** 2
    b = ox * d[..., 0] + oz * d[..., 2]
    disc = b * b - a * (ox * ox + oz * oz - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
    y = o[1] + t_side * d[..., 1]
    side = np.where((disc > 0) & (t_side > 1e-4) & (y >= y0) & (y <= y1), t_side, np.inf)
    t_top = _plane(o[1], d[..., 1], y1)
    px, pz = ox + t_top * d[..., 0], oz + t_top * d[..., 2]
    top = np.where(px * px + pz * pz <= r * r, t_top, np.inf)
    return np.minimum(side, top)


def _pattern(tex: Texture, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mix weight in [0, 1] of color_b at surface coordinates (u, v) metres."""
    if tex.kind == "checker":
        return ((np.floor(u / tex.scale) + np.floor(v / tex.scale)) % 2).astype(np.float32)
    if tex.kind == "stripes":
        return (0.5 + 0.5 * np.sin(2 * np.pi * u / tex.scale)).astype(np.float32)
    if tex.kind == "noise":
        grid = np.random.default_rng(tex.seed).random((64, 64), dtype=np.float32)
        gu, gv = (u / tex.scale) % 63, (v / tex.scale) % 63
        iu, iv = gu.astype(np.int32), gv.astype(np.int32)
        fu, fv = gu - iu, gv - iv
        top = grid[iv, iu] * (1 - fu) + grid[iv, iu + 1] * fu
        bottom = grid[iv + 1, iu] * (1 - fu) + grid[iv + 1, iu + 1] * fu
        return top * (1 - fv) + bottom * fv
    return np.zeros_like(u, dtype=np.float32)


def _shade(tex: Texture, u, v, normal_dot_light, ambient) -> np.ndarray:
    w = _pattern(tex, u, v)[..., None]
    albedo = (1 - w) * np.asarray(tex.color_a, np.float32) + w * np.asarray(tex.color_b, np.float32)
    return albedo * (ambient + (1 - ambient) * np.clip(normal_dot_light, 0, 1))[..., None]


def render(spec: SceneSpec, height: int, width: int) -> dict[str, np.ndarray]:
    """Ray-casts `spec`.

    Returns:
      `image` [H, W, 3] uint8 RGB, `depth` [H, W] float32 camera z-depth (along the optical
      axis) in metres (inf for sky),
      `mask` [H, W] bool (finite and < max_depth), `sky` [H, W] bool (the ray hits nothing),
      `labels` [H, W] int32 (object index + 1, 0 for background), `semantics` [H, W] uint8
      (index into `SEMANTIC_CLASSES`).
    """
    d = _rays(spec, height, width)
    o = np.array([0.0, spec.camera_height, 0.0], np.float32)  # floor at y = 0
    candidates = [_plane(o[1], d[..., 1], 0.0)]  # floor
    if spec.style == "indoor":
        candidates += [
            _plane(o[2], d[..., 2], spec.room_depth),
            _plane(o[0], d[..., 0], -spec.room_half_width),
            _plane(o[0], d[..., 0], spec.room_half_width),
            _plane(o[1], d[..., 1], spec.ceiling),
        ]
    n_background = len(candidates)
    for obj in spec.objects:
        if obj.shape == "sphere":
            c = np.array([obj.x, obj.size, obj.z], np.float32)
            candidates.append(_sphere(o, d, c, obj.size))
        elif obj.shape == "box":
            lo = np.array([obj.x - obj.size, 0.0, obj.z - obj.size], np.float32)
            hi = np.array([obj.x + obj.size, obj.height, obj.z + obj.size], np.float32)
            candidates.append(_box(o, d, lo, hi))
        else:
            candidates.append(_cylinder(o, d, obj.x, obj.z, obj.size, 0.0, obj.height))
    t_all = np.stack(candidates)
    hit = np.argmin(t_all, axis=0)
    t = np.take_along_axis(t_all, hit[None], 0)[0]
    p = o + np.where(np.isfinite(t), t, 0)[..., None] * d
    light = np.asarray(spec.light_dir, np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for k in range(len(candidates)):
        sel = (hit == k) & np.isfinite(t)
        if not sel.any():
            continue
        image[sel] = _surface_color(spec, k, n_background, p[sel], light)
    sky = ~np.isfinite(t)
    image[sky] = np.array([0.55, 0.7, 0.95], np.float32) * (0.8 + 0.2 * d[sky][:, 1:2])
    optical_axis = _camera_rotation(spec)[:, 2]
    depth = np.where(sky, SKY_DEPTH, t * (d @ optical_axis)).astype(np.float32)
    mask = np.isfinite(depth) & (depth < spec.max_depth)
    labels = np.where(sky | (hit < n_background), 0, hit - n_background + 1).astype(np.int32)
    shape_class = np.array(
        _BACKGROUND_CLASS[:n_background] + tuple(5 + SHAPES.index(o.shape) for o in spec.objects),
        np.uint8,
    )
    semantics = np.where(sky, 0, shape_class[hit]).astype(np.uint8)
    return {
        "image": (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8),
        "depth": depth,
        "mask": mask,
        "sky": sky,
        "labels": labels,
        "semantics": semantics,
    }


def _surface_color(spec: SceneSpec, k: int, n_background: int, p: np.ndarray, light):
    """Shaded RGB of the points `p` [N, 3] lying on candidate surface `k`."""
    if k < n_background:
        normals = [(0, 1, 0), (0, 0, -1), (1, 0, 0), (-1, 0, 0), (0, -1, 0)]
        n = np.asarray(normals[k], np.float32)
        tex = spec.floor if k == 0 else spec.walls
        u, v = (
            (p[:, 0], p[:, 2])
            if k in (0, 4)
            else ((p[:, 2], p[:, 1]) if k in (2, 3) else (p[:, 0], p[:, 1]))
        )
        return _shade(tex, u, v, np.full(len(p), n @ light), spec.ambient)
    obj = spec.objects[k - n_background]
    if obj.shape == "sphere":
        n = (p - np.array([obj.x, obj.size, obj.z], np.float32)) / obj.size
    elif obj.shape == "box":
        rel = (p - np.array([obj.x, obj.height / 2, obj.z], np.float32)) / np.array(
            [obj.size, obj.height / 2, obj.size], np.float32
        )
        axis = np.argmax(np.abs(rel), axis=1)
        n = np.zeros_like(p)
        n[np.arange(len(p)), axis] = np.sign(rel[np.arange(len(p)), axis])
    else:
        n = p - np.array([obj.x, 0.0, obj.z], np.float32)
        n[:, 1] = np.where(p[:, 1] >= obj.height - 1e-3, 1.0, 0.0)
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
    u = np.arctan2(p[:, 0] - obj.x, p[:, 2] - obj.z) * obj.size + p[:, 0]
    return _shade(obj.texture, u, p[:, 1], n @ light, spec.ambient)


def render_scene(
    index: int,
    height: int = 518,
    width: int = 518,
    style: str = "indoor",
    seed: int = 0,
    pitch_range: tuple[float, float] = PITCH_RANGE,
    roll_range: tuple[float, float] = ROLL_RANGE,
    semantics: bool = False,
) -> dict:
    """Scene `index` of the family of scenes drawn with `seed` (and the camera ranges, see
    `sample_scene`): a labeled record.

    Returns:
      `{image [H,W,3] uint8, depth [H,W] float32 metres (0 where invalid), mask [H,W] bool
      (valid depth), sky [H,W] bool (outdoor sky, never in `mask`), source:
      'procedural_<style>'}`, plus `semantics [H,W] uint8` (`SEMANTIC_CLASSES`) when asked.
    """
    rng = np.random.default_rng((seed, index, STYLES.index(style)))
    spec = sample_scene(rng, style, pitch_range=pitch_range, roll_range=roll_range)
    out = render(spec, height, width)
    depth = np.where(out["mask"], out["depth"], 0.0).astype(np.float32)
    record = {
        "image": out["image"],
        "depth": depth,
        "mask": out["mask"],
        "sky": out["sky"],
        "source": f"procedural_{style}",
    }
    if semantics:
        record["semantics"] = out["semantics"]
    return record


class ProceduralScenes:
    """A grain-compatible random-access source of procedural scenes.

    Args:
      num_scenes: length of the source.
      height, width: render size.
      styles: styles cycled by index (index % len(styles)).
      seed: family seed; disjoint seeds give disjoint train / held-out sets.
      images_only: the "unlabeled" view: records hold only `image`, `sky` and `source` (the
        sky is known exactly, so pseudo-labels can set it to disparity 0).
      pitch_range, roll_range: (low, high) camera tilt and roll in degrees (`sample_scene`);
        e.g. a narrow labeled set and a broader unlabeled pool.
      semantics: records also carry `semantics [H, W] uint8` (`SEMANTIC_CLASSES`), the
        pre-training stage's targets (`dajax.training.pretrain`).
      cache_bytes: scenes are rendered once and kept (read-only arrays) while their total size
        stays within this many bytes; later ones are rendered on every read. Rendering is
        deterministic, so the cache changes no value, only the time: a training run reads each
        of its scenes hundreds of times. 0 turns it off.
    """

    def __init__(
        self,
        num_scenes: int,
        height: int = 518,
        width: int = 518,
        styles=STYLES,
        seed: int = 0,
        images_only: bool = False,
        pitch_range: tuple[float, float] = PITCH_RANGE,
        roll_range: tuple[float, float] = ROLL_RANGE,
        semantics: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        for name, (low, high) in (("pitch_range", pitch_range), ("roll_range", roll_range)):
            if not -90.0 <= low <= high <= 90.0:
                raise ValueError(
                    f"{name} must be (low, high) degrees in [-90, 90], got {(low, high)}"
                )
        self.num_scenes, self.height, self.width = num_scenes, height, width
        self.styles, self.seed, self.images_only = tuple(styles), seed, images_only
        self.semantics = semantics
        self.pitch_range = (float(pitch_range[0]), float(pitch_range[1]))
        self.roll_range = (float(roll_range[0]), float(roll_range[1]))
        self._cache: dict[int, dict] = {}
        self._cache_free = int(cache_bytes)

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_scenes:
            raise IndexError(f"scene {index} out of range [0, {self.num_scenes})")
        record = self._cache.get(index)
        if record is None:
            record = self._render(int(index))
        return dict(record)

    def _render(self, index: int) -> dict:
        """Renders scene `index` (the `images_only` view when asked), keeping it in the cache
        while the byte budget lasts."""
        style = self.styles[index % len(self.styles)]
        record = render_scene(
            index,
            self.height,
            self.width,
            style,
            self.seed,
            self.pitch_range,
            self.roll_range,
            self.semantics,
        )
        if self.images_only:
            kept = ("image", "sky", "source", "semantics")
            record = {k: v for k, v in record.items() if k in kept}
        size = sum(v.nbytes for v in record.values() if isinstance(v, np.ndarray))
        if size <= self._cache_free:
            for value in record.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
            self._cache[index] = record
            self._cache_free -= size
        return record
