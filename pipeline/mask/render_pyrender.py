"""Alternative renderer: pyrender (the design's choice), headless on EGL, unlit textures + same shading.

Measured on CPU servers it is several times slower than moderngl, and its draw order comes from a Python
set, so 1-2 pixels may differ between processes: it is kept selectable for comparison, not as default.

Import-time workarounds, narrow and documented (docs/digital_mask.md):
- ``PYOPENGL_PLATFORM=egl`` unless the caller chose a platform, before PyOpenGL is imported;
- ``pyglet.options["headless"] = True`` before pyrender imports pyglet;
- pyrender 0.1.45 uses ``np.infty``, removed in numpy 2: the alias is restored if missing.
"""
from __future__ import annotations

import os

import numpy as np

from digimask.pipeline.mask.render import AMBIENT, DIFFUSE, LIGHT_DIRECTION, Scene

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
if not hasattr(np, "infty"):
    np.infty = np.inf  # type: ignore[attr-defined]

import pyglet  # noqa: E402

pyglet.options["headless"] = True
import pyrender  # noqa: E402

_KEEP_ALIVE: list["PyrenderRenderer"] = []  # deleting an OffscreenRenderer breaks the others under EGL


class PyrenderRenderer:
    """One OffscreenRenderer per thread, resized as needed (pyrender breaks if one is deleted under EGL).

    Lighting is baked into vertex colours with the same Lambert model as the moderngl backend, and the
    scene is drawn FLAT (texture x vertex colour), so both backends shade alike.
    """

    name = "pyrender"

    def __init__(self) -> None:
        self._renderer: pyrender.OffscreenRenderer | None = None
        _KEEP_ALIVE.append(self)  # never collected, even when its thread ends

    def render(self, scene: Scene) -> np.ndarray:
        if self._renderer is None:
            self._renderer = pyrender.OffscreenRenderer(scene.width, scene.height)
        self._renderer.viewport_width, self._renderer.viewport_height = scene.width, scene.height
        near, far = scene.depth_range()
        bg = np.array([*scene.background, 255], dtype=np.float64) / 255.0
        pscene = pyrender.Scene(bg_color=bg, ambient_light=np.ones(3))
        light = np.asarray(LIGHT_DIRECTION, dtype=np.float64)
        light /= np.linalg.norm(light)
        for mesh in scene.meshes:
            shade = AMBIENT + DIFFUSE * np.abs(mesh.normals @ light).clip(0, None)
            texture = pyrender.Texture(source=scene.textures[mesh.texture], source_channels="RGB",
                                       sampler=pyrender.Sampler(wrapS=33071, wrapT=33071))
            material = pyrender.MetallicRoughnessMaterial(baseColorTexture=texture, doubleSided=True)
            uv = mesh.uv.copy()
            uv[:, 1] = 1.0 - uv[:, 1]  # pyrender flips images on upload; glTF v runs up
            prim = pyrender.Primitive(
                positions=mesh.vertices, normals=mesh.normals, texcoord_0=uv,
                color_0=np.c_[np.repeat(shade[:, None], 3, axis=1), np.ones(len(shade))].astype(np.float32),
                indices=mesh.faces, material=material,
            )
            pscene.add(pyrender.Mesh([prim]))
        camera = pyrender.IntrinsicsCamera(scene.focal_px, scene.focal_px, scene.cx, scene.cy, znear=near, zfar=far)
        pscene.add(camera, pose=np.eye(4))
        color, _ = self._renderer.render(pscene, flags=pyrender.RenderFlags.FLAT)
        return np.ascontiguousarray(color[:, :, :3])
