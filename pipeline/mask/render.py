"""Render an avatar from its parameters: scene building plus a small renderer interface.

``build_scene`` turns :class:`~digimask.pipeline.mask.params.AvatarParams` into camera-space textured meshes;
a :class:`Renderer` rasterises them at the camera's image size. Backends: ``moderngl`` (default: EGL,
headless, bit-reproducible across processes) and ``pyrender`` (the design's alternative). Each backend
keeps one GL context per thread, created lazily by the thread that renders and reused.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import import_module
from typing import Protocol

import numpy as np
import torch

from digimask.pipeline.errors import MaskingFailed
from digimask.pipeline.eyes.landmarks import SIDES
from digimask.pipeline.imaging import luminance
from digimask.pipeline.mask import avatar
from digimask.pipeline.mask.params import AvatarParams, Eye
from digimask.pipeline.mask.template import (
    BACKGROUND_RGB,
    EYEBALL_RADIUS_MM,
    SKIN_RGB,
    eyeball_mesh,
    load,
    socket_mesh,
)

LIGHT_DIRECTION = (0.25, 0.35, 1.0)  # camera frame, toward the light
REFLEX_RADIUS_MM = 0.35  # the drawn corneal light reflex: a small disc on the cornea...
REFLEX_MIN_RADIUS_PX = 1.5  # ...never under this in the image, so a small face still shows it
REFLEX_LIFT_MM = 0.05  # in front of the eyeball surface, so the eyeball never hides it
_WHITE = np.full((4, 4, 3), 255, np.uint8)
AMBIENT, DIFFUSE = 0.45, 0.6
BACKENDS = {"moderngl": "digimask.pipeline.mask.render_moderngl:ModernGLRenderer",
            "pyrender": "digimask.pipeline.mask.render_pyrender:PyrenderRenderer"}


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # (N, 3) float32, camera frame (x right, y up, camera looks down -z)
    normals: np.ndarray  # (N, 3) float32
    uv: np.ndarray  # (N, 2) float32, v down the texture image
    faces: np.ndarray  # (F, 3) int32
    texture: str  # key into Scene.textures


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    focal_px: float
    cx: float
    cy: float
    meshes: tuple[Mesh, ...]
    textures: dict[str, np.ndarray]
    background: tuple[int, int, int] = BACKGROUND_RGB

    def depth_range(self) -> tuple[float, float]:
        z = np.concatenate([-m.vertices[:, 2] for m in self.meshes])
        return max(1.0, 0.5 * float(z.min())), 2.0 * float(z.max()) + 10.0


class Renderer(Protocol):
    name: str

    def render(self, scene: Scene) -> np.ndarray: ...


def build_scene(params: AvatarParams) -> Scene:
    """The posed, lid-deformed template with both eyeballs and sockets, in camera coordinates."""
    tpl = load()
    eyes = {side: torch.tensor(params.eyes.get(side, Eye()).as_vector(), dtype=torch.float64) for side in SIDES}
    h = params.head
    head = torch.tensor([h.yaw_deg, h.pitch_deg, h.roll_deg, *h.translation_mm], dtype=torch.float64)
    head_rot = avatar.rotation(head[0], head[1], head[2])
    with torch.no_grad():
        face = avatar.to_camera(avatar.deformed_vertices(tpl, eyes), head).numpy()
        meshes = [Mesh(*_with_normals(face, tpl.faces), tpl.uv, tpl.faces, "skin")]
        sock_v, sock_f, sock_uv = socket_mesh()
        for side, eye in tpl.eyes.items():
            p = eyes[side]
            center = avatar.eyeball_center(p, torch.as_tensor(eye.eyeball_center), torch.tensor(eye.sign))
            dirs, faces, uv = eyeball_mesh(round(float(p[12]), 4))
            gaze_rot = avatar.rotation(p[10], p[11], torch.zeros(()))
            d = torch.as_tensor(dirs, dtype=torch.float64) @ gaze_rot.T
            ball = avatar.to_camera(center + EYEBALL_RADIUS_MM * d, head).numpy()
            meshes.append(Mesh(ball.astype(np.float32), (d @ head_rot.T).numpy().astype(np.float32), uv, faces, "eye"))
            sock = avatar.to_camera(center + torch.as_tensor(sock_v, dtype=torch.float64), head).numpy()
            meshes.append(Mesh(*_with_normals(sock, sock_f), sock_uv, sock_f, "eye"))
            reflex = params.eyes[side].reflex if side in params.eyes else None
            if reflex is not None:
                ball_centre = avatar.to_camera(center[None], head)[0].numpy()
                limbus = avatar.project(avatar.to_camera(avatar.limbus(p, torch.as_tensor(eye.eyeball_center),
                                                                       torch.tensor(eye.sign)), head),
                                        torch.tensor([params.camera.focal_px, params.camera.cx, params.camera.cy]))
                radius_px = float((limbus[1:] - limbus[0]).norm(dim=-1).mean())
                meshes.append(_reflex_mesh(limbus[0].numpy() + np.asarray(reflex) * radius_px, ball_centre, params))
    c = params.camera
    return Scene(c.width, c.height, c.focal_px, c.cx, c.cy, tuple(meshes),
                 {"skin": tpl.texture, "eye": tpl.eye_texture, "reflex": _WHITE}, background(params))


def _reflex_mesh(pixel: np.ndarray, ball_centre: np.ndarray, params: AvatarParams, segments: int = 16) -> Mesh:
    """A white disc on the cornea where the camera ray through ``pixel`` meets the eyeball, facing the light."""
    c = params.camera
    ray = np.array([(pixel[0] - c.cx) / c.focal_px, -(pixel[1] - c.cy) / c.focal_px, -1.0])
    b, r2 = ray @ ball_centre, EYEBALL_RADIUS_MM**2
    disc = b * b - (ray @ ray) * (ball_centre @ ball_centre - r2)
    hit = ray * (b - np.sqrt(max(disc, 0.0))) / (ray @ ray)  # the near intersection (the ray's closest point if none)
    normal = (hit - ball_centre) / np.linalg.norm(hit - ball_centre)
    a = np.cross(normal, [0.0, 1.0, 0.0] if abs(normal[1]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    bvec = np.cross(normal, a)
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    radius = max(REFLEX_RADIUS_MM, REFLEX_MIN_RADIUS_PX * -hit[2] / c.focal_px)
    ring = hit + REFLEX_LIFT_MM * normal + radius * (np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * bvec)
    vertices = np.vstack([hit + REFLEX_LIFT_MM * normal, ring]).astype(np.float32)
    light = np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
    normals = np.tile(light, (len(vertices), 1)).astype(np.float32)  # brightest shading: a specular spot
    faces = np.array([(0, 1 + j, 1 + (j + 1) % segments) for j in range(segments)], np.int32)
    return Mesh(vertices, normals, np.full((len(vertices), 2), 0.5, np.float32), faces, "reflex")


def background(params: AvatarParams) -> tuple[int, int, int]:
    """Neutral grey around a face; shaded skin behind a close-up, so no face outline shows at its edge."""
    if params.mode == "closeup":
        return tuple(int(round(c * (AMBIENT + DIFFUSE * 0.8))) for c in SKIN_RGB)  # type: ignore[return-value]
    return BACKGROUND_RGB


def _with_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    corners = faces.reshape(-1)  # each face's normal goes to its three vertices (bincount: 6x np.add.at)
    vn = np.stack([np.bincount(corners, np.repeat(fn[:, i], 3), len(vertices)) for i in range(3)], axis=1)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    return vertices.astype(np.float32), vn.astype(np.float32)


_local = threading.local()


def get_renderer(backend: str = "moderngl") -> Renderer:
    """This thread's renderer for ``backend`` (created on first use, then reused)."""
    cache = _local.__dict__.setdefault("renderers", {})
    if backend not in cache:
        try:
            module, _, attr = BACKENDS[backend].partition(":")
        except KeyError:
            raise KeyError(f"unknown renderer {backend!r}; known: {', '.join(BACKENDS)}") from None
        cache[backend] = getattr(import_module(module), attr)()
    return cache[backend]


def render(params: AvatarParams, backend: str | None = None) -> np.ndarray:
    """The mask image ``(H, W, 3) uint8`` for ``params`` (drawn by ``backend``, default the one the
    parameters name); raises ``MaskingFailed`` on a blank frame.

    Mesa renders a uniform frame without error when a context is used from the wrong thread, and an
    avatar posed outside the frame leaves only background: both are refused.
    """
    backend = backend or params.renderer
    image = get_renderer(backend).render(build_scene(params))
    flat = image.reshape(-1)
    if np.array_equal(flat[3:], flat[:-3]):  # one colour everywhere (cheap: no per-pixel temporaries)
        raise MaskingFailed(f"the {backend} renderer produced a blank image", "render")
    return luminance(image) if params.greyscale else image

