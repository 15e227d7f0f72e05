"""The neutral template head that every avatar shares, with its eye openings and eyeball geometry.

Source: MediaPipe's canonical face mesh (Apache-2.0, Google; 468 vertices in FaceMesh numbering, UVs),
stored in ``assets/canonical_face_mesh.npz`` by ``scripts/extract_canonical_mesh.py``. At import (cached)
the eye openings are cut out, the mesh is Loop-subdivided twice so the lids are smooth, and a texture
(skin, brows, lips, lash lines) is painted at the mesh's UVs. No patient ever changes this geometry:
only the eyelid model (``avatar.py``) moves the skin around each eye opening.

Model coordinates are millimetres, x toward the patient's left, y up, z out of the face.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFilter

from digimask.pipeline.eyes.landmarks import SIDES
from digimask.pipeline.eyes.measure import HVID_MM

TEMPLATE_ID = "mediapipe-canonical-face"
TEMPLATE_VERSION = 1
EYEBALL_RADIUS_MM = 12.0
# The pupil sits above the canthal line in most people (the analysis reads about +10 deg of vertical gaze
# on frontal photos); a centred eyeball read +4-5 deg and had to roll up under the lid to match.
EYEBALL_RAISE_MM = 2.0
IRIS_RADIUS_MM = HVID_MM / 2
PUPIL_FRACTION = 0.36  # pupil radius / iris radius (neutral, mid-dilated)
SKIN_RGB = (198, 154, 128)
BACKGROUND_RGB = (150, 150, 150)

# FaceMesh eye contours, lateral canthus -> medial canthus.
EYE_CONTOUR = {
    "right": {"upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
              "lower": (33, 7, 163, 144, 145, 153, 154, 155, 133)},
    "left": {"upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
             "lower": (263, 249, 390, 373, 374, 380, 381, 382, 362)},
}
_BROWS = (((70, 63, 105, 66, 107), (46, 53, 52, 65, 55)), ((300, 293, 334, 296, 336), (276, 283, 282, 295, 285)))
_LIPS_OUTER = ((61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291), (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291))
_LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)

_TEXTURE_SIZE = 1024
_IRIS_TEX_RADIUS = 0.30  # texture radius (of 0.5) at the limbus
_SOCKET_UV = (0.03, 0.03)  # a conjunctiva-pink patch in the eye texture


@dataclass(frozen=True)
class EyeTemplate:
    """One eye opening. ``sign`` is +1 for the left eye, -1 for the right (lateral = sign * x)."""

    side: str
    sign: float
    lateral: np.ndarray  # (3,) canthi, model mm
    medial: np.ndarray
    upper_idx: np.ndarray  # dense-mesh vertex indices of the lid margin, medial -> lateral, corners included
    lower_idx: np.ndarray
    upper_t: np.ndarray  # fraction along medial -> lateral canthus of each margin vertex
    lower_t: np.ndarray
    eyeball_center: np.ndarray  # (3,)
    region_idx: np.ndarray  # vertices moved by the lid-contour part of the model
    region_weights: np.ndarray  # (len(region_idx), len(upper_idx) + len(lower_idx)) blend of margin moves
    warp_idx: np.ndarray  # vertices moved by the canthus shifts
    warp_t: np.ndarray  # their fraction along medial -> lateral (clamped to [0, 1])
    warp_gain: np.ndarray  # 1 on the opening, fading to 0 about 15 mm away


@dataclass(frozen=True)
class Template:
    vertices: np.ndarray  # (N, 3) float32, mm
    faces: np.ndarray  # (F, 3) int32
    uv: np.ndarray  # (N, 2) float32, v down (image rows)
    texture: np.ndarray  # (S, S, 3) uint8 skin texture
    eye_texture: np.ndarray  # (S, S, 3) uint8 iris/sclera texture, radial about the centre
    landmarks: np.ndarray  # (468, 3) the canonical FaceMesh points, mm (pose fitting)
    eyes: dict[str, EyeTemplate]

    @property
    def id(self) -> str:
        return f"{TEMPLATE_ID}/{TEMPLATE_VERSION}"


@lru_cache(maxsize=1)
def load() -> Template:
    """Build the template (about 0.3 s, once per process)."""
    with resources.files("digimask.pipeline.mask").joinpath("assets/canonical_face_mesh.npz").open("rb") as f:
        data = np.load(f)
        base = data["vertices"].astype(np.float64) * 10.0  # cm -> mm
        uv = data["uv"].astype(np.float64)
        faces = data["faces"].astype(np.int64)
    rings = {side: set(c["upper"]) | set(c["lower"]) for side, c in EYE_CONTOUR.items()}
    keep = np.array([not any(set(f) <= ring for ring in rings.values()) for f in faces.tolist()])
    faces = faces[keep]
    vertices, dense_faces = trimesh.remesh.subdivide_loop(base, faces, iterations=2)
    dense_uv, _ = trimesh.remesh.subdivide_loop(np.c_[uv, np.zeros(len(uv))], faces, iterations=2)
    dense_uv = dense_uv[:, :2]
    eyes = {side: _eye(side, vertices, dense_faces) for side in SIDES}
    return Template(
        vertices=vertices.astype(np.float32),
        faces=dense_faces.astype(np.int32),
        uv=dense_uv.astype(np.float32),
        texture=_paint_skin(uv, eyes, dense_uv),
        eye_texture=_paint_eye(),
        landmarks=base.astype(np.float32),
        eyes=eyes,
    )


def _eye(side: str, vertices: np.ndarray, faces: np.ndarray) -> EyeTemplate:
    contour = EYE_CONTOUR[side]
    lateral_i, medial_i = contour["upper"][0], contour["upper"][-1]
    loop = _boundary_loop_through(faces, medial_i)
    start = loop.index(medial_i)
    loop = loop[start:] + loop[:start]
    end = loop.index(lateral_i)
    one, other = loop[: end + 1], [medial_i] + loop[end:][::-1]  # both medial -> lateral
    upper, lower = (one, other) if vertices[one, 1].mean() > vertices[other, 1].mean() else (other, one)
    medial, lateral = vertices[medial_i], vertices[lateral_i]
    axis = lateral - medial

    def t_of(idx: list[int]) -> np.ndarray:
        return (vertices[idx] - medial) @ axis / (axis @ axis)

    margin = np.array(upper + lower)
    center = _eyeball_center(vertices[margin])
    region_idx, weights = _lid_weights(vertices, np.array(upper), np.array(lower))
    warp_idx, warp_t, warp_gain = _canthus_warp(vertices, medial, lateral, margin)
    return EyeTemplate(
        side=side, sign=1.0 if side == "left" else -1.0, lateral=lateral, medial=medial,
        upper_idx=np.array(upper), lower_idx=np.array(lower), upper_t=t_of(upper), lower_t=t_of(lower),
        eyeball_center=center, region_idx=region_idx, region_weights=weights,
        warp_idx=warp_idx, warp_t=warp_t, warp_gain=warp_gain,
    )


def _boundary_loop_through(faces: np.ndarray, vertex: int) -> list[int]:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    nbrs: dict[int, list[int]] = {}
    for a, b in uniq[counts == 1].tolist():
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    loop, prev = [vertex], None
    while True:
        nxt = next(n for n in nbrs[loop[-1]] if n != prev)
        if nxt == vertex:
            return loop
        prev = loop[-1]
        loop.append(nxt)


def _eyeball_center(margin: np.ndarray) -> np.ndarray:
    """Centre of the eyeball: behind the opening's middle, raised ``EYEBALL_RAISE_MM``, its surface 0.3 mm
    behind the nearest lid point."""
    xy = 0.5 * (margin.min(0) + margin.max(0))[:2] + np.array([0.0, EYEBALL_RAISE_MM])
    lo, hi = margin[:, 2].max() - 3 * EYEBALL_RADIUS_MM, margin[:, 2].max()
    for _ in range(50):  # bisection on depth: nearest margin point at radius + 0.3 mm
        z = 0.5 * (lo + hi)
        gap = np.linalg.norm(margin - np.array([xy[0], xy[1], z]), axis=1).min() - EYEBALL_RADIUS_MM - 0.3
        lo, hi = (z, hi) if gap > 0 else (lo, z)
    return np.array([xy[0], xy[1], lo])


def _lid_weights(vertices: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much each vertex near the opening follows each margin vertex (skin above the lid follows more)."""
    margin = np.concatenate([upper, lower])
    d = np.linalg.norm(vertices[:, None, :] - vertices[margin][None], axis=2)  # (N, n_margin)
    is_upper = np.r_[np.ones(len(upper), bool), np.zeros(len(lower), bool)]
    nearest_upper = is_upper[d.argmin(1)]
    same = np.where(nearest_upper[:, None], is_upper[None], ~is_upper[None])
    same[:, [0, len(upper) - 1, len(upper), len(margin) - 1]] = True  # corners belong to both lids
    dmin = d.min(1)
    reach = np.where(nearest_upper, 7.0, 4.0)  # mm
    falloff = np.exp(-((dmin / reach) ** 2))
    w = np.exp(-((d / 2.5) ** 2)) * same
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12) * falloff[:, None]
    w[margin] = np.eye(len(margin))
    region = np.flatnonzero(falloff > 2e-3)
    region = np.union1d(region, margin)
    return region, w[region].astype(np.float32)


def _canthus_warp(vertices: np.ndarray, medial: np.ndarray, lateral: np.ndarray,
                  margin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canthus shifts move the whole eye region smoothly (a wide falloff keeps triangles from folding)."""
    axis = lateral - medial
    t = (vertices - medial) @ axis / (axis @ axis)
    nearest = medial + np.clip(t, 0, 1)[:, None] * axis
    d = np.linalg.norm(vertices - nearest, axis=1)
    inner = d[margin].max() + 0.5
    gain = np.exp(-((np.maximum(0.0, d - inner) / 9.0) ** 2))
    idx = np.flatnonzero(gain > 2e-3)
    return idx, np.clip(t[idx], 0, 1).astype(np.float32), gain[idx].astype(np.float32)


def _paint_skin(base_uv: np.ndarray, eyes: dict[str, EyeTemplate], dense_uv: np.ndarray) -> np.ndarray:
    s = _TEXTURE_SIZE
    img = Image.new("RGB", (s, s), SKIN_RGB)
    draw = ImageDraw.Draw(img)

    def pts(idx) -> list[tuple[float, float]]:
        return [(float(base_uv[i, 0] * s), float(base_uv[i, 1] * s)) for i in idx]

    for upper, lower in _BROWS:
        draw.polygon(pts(upper) + pts(lower[::-1]), fill=(92, 66, 52))
    draw.polygon(pts(_LIPS_OUTER[0]) + pts(_LIPS_OUTER[1][::-1]), fill=(172, 104, 98))
    img = img.filter(ImageFilter.GaussianBlur(3))
    draw = ImageDraw.Draw(img)
    draw.line(pts(_LIPS_INNER), fill=(110, 58, 58), width=3)
    for eye in eyes.values():
        up = [(float(u * s), float(v * s)) for u, v in dense_uv[eye.upper_idx]]
        lo = [(float(u * s), float(v * s)) for u, v in dense_uv[eye.lower_idx]]
        draw.line(up, fill=(150, 108, 92), width=22)  # lid shadow
        draw.line(up, fill=(38, 28, 26), width=8)  # lashes
        draw.line(lo, fill=(120, 84, 74), width=5)
    return np.asarray(img.filter(ImageFilter.GaussianBlur(1)), dtype=np.uint8).copy()


def _paint_eye() -> np.ndarray:
    """Radial eye texture: pupil, brown-hazel iris with striations, limbal ring, sclera; deterministic."""
    s = 512
    yy, xx = np.mgrid[0:s, 0:s]
    dx, dy = (xx + 0.5) / s - 0.5, (yy + 0.5) / s - 0.5
    rho = np.hypot(dx, dy) / _IRIS_TEX_RADIUS  # 1 at the limbus
    phi = np.arctan2(dy, dx)
    rng = np.random.default_rng(7)
    waves = zip(rng.integers(20, 90, 12), rng.uniform(0, 6.3, 12), rng.uniform(0.02, 0.06, 12))
    stria = sum(np.cos(k * phi + p) * a for k, p, a in waves)
    iris = np.array([86.0, 60.0, 42.0]) * (0.8 + 0.3 * rho.clip(0, 1))[..., None] * (1 + stria)[..., None]
    limbus = np.clip((rho - 0.9) / 0.1, 0, 1)[..., None]
    iris = iris * (1 - 0.35 * limbus)
    sclera = np.array([232.0, 226.0, 220.0]) * (1 - 0.10 * np.clip(rho - 1.0, 0, 1))[..., None]
    rgb = np.where((rho < PUPIL_FRACTION)[..., None], np.array([18.0, 16.0, 16.0]), iris)
    rgb = np.where((rho >= 1.0)[..., None], sclera, rgb)
    sx, sy = int(_SOCKET_UV[0] * s), int(_SOCKET_UV[1] * s)
    rgb[max(0, sy - 8):sy + 8, max(0, sx - 8):sx + 8] = (176, 98, 94)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@lru_cache(maxsize=8)
def eyeball_mesh(iris_radius_mm: float, rings: int = 28,
                 segments: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit-direction eyeball about +z with UVs into the eye texture: ``(dirs, faces, uv)``.

    The limbus is an exact ring at ``asin(iris_radius / eyeball_radius)``; multiply ``dirs`` by the
    eyeball radius (they are also the normals).
    """
    theta_iris = float(np.arcsin(np.clip(iris_radius_mm / EYEBALL_RADIUS_MM, 0.05, 0.95)))
    theta_max = np.radians(120.0)
    n_in = rings // 2
    thetas = np.r_[np.linspace(0, theta_iris, n_in + 1), np.linspace(theta_iris, theta_max, rings - n_in + 1)[1:]]
    rho = np.where(thetas <= theta_iris, thetas / theta_iris * _IRIS_TEX_RADIUS,
                   _IRIS_TEX_RADIUS + (thetas - theta_iris) / (theta_max - theta_iris) * (0.48 - _IRIS_TEX_RADIUS))
    phis = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    th, ph = np.meshgrid(thetas[1:], phis, indexing="ij")
    dirs = np.c_[np.sin(th).ravel() * np.cos(ph).ravel(), np.sin(th).ravel() * np.sin(ph).ravel(), np.cos(th).ravel()]
    r, p = np.meshgrid(rho[1:], phis, indexing="ij")
    uv = np.c_[0.5 + r.ravel() * np.cos(p.ravel()), 0.5 - r.ravel() * np.sin(p.ravel())]
    dirs = np.r_[[[0.0, 0.0, 1.0]], dirs]
    uv = np.r_[[[0.5, 0.5]], uv]
    return dirs.astype(np.float32), _sphere_faces(rings, segments), uv.astype(np.float32)


@lru_cache(maxsize=4)
def _sphere_faces(rings: int, segments: int) -> np.ndarray:
    """The eyeball's triangles (the same for every iris size; a clip's every frame has its own size): a
    fan around the pole, then two per quad between consecutive rings."""
    j = np.arange(segments)
    j1 = (j + 1) % segments
    fan = np.stack([np.zeros_like(j), 1 + j, 1 + j1], axis=1)
    a = 1 + np.arange(rings - 1)[:, None] * segments  # each ring's first vertex
    b = a + segments
    quads = np.stack([np.stack([a + j, b + j, b + j1], axis=-1), np.stack([a + j, b + j1, a + j1], axis=-1)], axis=2)
    faces = np.vstack([fan, quads.reshape(-1, 3)]).astype(np.int32)
    faces.flags.writeable = False
    return faces


@lru_cache(maxsize=1)
def socket_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flattened pink cup behind each eyeball (conjunctiva, caruncle) for corners the globe leaves open.

    Returns ``(vertices relative to the eyeball centre, faces, uv)``; the cup faces +z.
    """
    sphere = trimesh.creation.uv_sphere(radius=1.0, count=(12, 16))
    v = np.asarray(sphere.vertices) * np.array([17.0, 11.0, 6.0]) - np.array([0.0, 0.0, 2.0])
    uv = np.tile(np.array(_SOCKET_UV, np.float32), (len(v), 1))
    return v.astype(np.float32), np.asarray(sphere.faces, np.int32), uv
