"""Default renderer: moderngl on a headless EGL context (Mesa llvmpipe on CPU servers).

No multisampling and fixed state, so the same scene gives the same bytes in every process. Must be used
from the thread that created it (Mesa returns black frames otherwise): ``render.get_renderer`` keeps one
per thread.
"""
from __future__ import annotations

import numpy as np

from digimask.pipeline.mask.render import AMBIENT, DIFFUSE, LIGHT_DIRECTION, Scene

_VERTEX = """
#version 330
uniform mat4 projection;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_normal;
out vec2 v_uv;
void main() {
    v_normal = in_normal;
    v_uv = in_uv;
    gl_Position = projection * vec4(in_position, 1.0);
}
"""
_FRAGMENT = """
#version 330
uniform sampler2D tex;
uniform vec3 light;
uniform float ambient;
uniform float diffuse;
in vec3 v_normal;
in vec2 v_uv;
out vec4 color;
void main() {
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;
    float shade = ambient + diffuse * max(dot(n, light), 0.0);
    color = vec4(texture(tex, v_uv).rgb * shade, 1.0);
}
"""


def projection_matrix(scene: Scene) -> np.ndarray:
    """OpenGL projection for a pinhole camera with image rows growing downward."""
    w, h, f = scene.width, scene.height, scene.focal_px
    near, far = scene.depth_range()
    return np.array([
        [2 * f / w, 0, 1 - 2 * scene.cx / w, 0],
        [0, 2 * f / h, 2 * scene.cy / h - 1, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ], dtype=np.float32)


class ModernGLRenderer:
    name = "moderngl"

    def __init__(self, samples: int = 4) -> None:
        import moderngl

        self.samples = samples
        self._gl = moderngl
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.program = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self._textures: dict[int, object] = {}
        self._fbo_size: tuple[int, int] | None = None
        self._fbo = None
        self._gl_objects: list = []

    def _texture(self, image: np.ndarray):
        key = id(image)  # template textures are cached arrays that live for the process
        if key not in self._textures:
            tex = self.ctx.texture((image.shape[1], image.shape[0]), 3, np.ascontiguousarray(image).tobytes())
            tex.build_mipmaps()
            tex.filter = (self._gl.LINEAR_MIPMAP_LINEAR, self._gl.LINEAR)
            tex.repeat_x = tex.repeat_y = False
            self._textures[key] = (tex, image)
        return self._textures[key][0]

    def _framebuffer(self, width: int, height: int):
        """A multisampled target to draw into and a plain one to resolve it to, per image size.

        On a size change the old ones are released with their renderbuffers (moderngl does not release
        attachments with a framebuffer: about 19 MB leaked per resize without this).
        """
        if self._fbo_size != (width, height):
            for obj in self._gl_objects:
                obj.release()
            size = (width, height)
            color = self.ctx.renderbuffer(size, 3, samples=self.samples)
            depth = self.ctx.depth_renderbuffer(size, samples=self.samples)
            plain = self.ctx.renderbuffer(size, 3)
            self._fbo = (self.ctx.framebuffer(color_attachments=[color], depth_attachment=depth),
                         self.ctx.framebuffer(color_attachments=[plain]))
            self._gl_objects = [*self._fbo, color, depth, plain]
            self._fbo_size = size
        return self._fbo

    def render(self, scene: Scene) -> np.ndarray:
        with self.ctx:  # make it current: another GL user (e.g. pyrender) may have switched contexts
            return self._draw(scene)

    def _draw(self, scene: Scene) -> np.ndarray:
        fbo, resolved = self._framebuffer(scene.width, scene.height)
        fbo.use()
        self.ctx.enable(self._gl.DEPTH_TEST)
        self.ctx.disable(self._gl.CULL_FACE)
        fbo.clear(*(c / 255.0 for c in scene.background), 1.0, depth=1.0)
        light = np.asarray(LIGHT_DIRECTION, np.float32)
        self.program["projection"].write(projection_matrix(scene).T.copy().tobytes())
        self.program["light"].value = tuple(light / np.linalg.norm(light))
        self.program["ambient"].value = AMBIENT
        self.program["diffuse"].value = DIFFUSE
        for mesh in scene.meshes:
            data = np.hstack([mesh.vertices, mesh.normals, mesh.uv]).astype(np.float32)
            vbo = self.ctx.buffer(data.tobytes())
            ibo = self.ctx.buffer(mesh.faces.astype(np.int32).tobytes())
            vao = self.ctx.vertex_array(self.program, [(vbo, "3f 3f 2f", "in_position", "in_normal", "in_uv")],
                                        index_buffer=ibo, index_element_size=4)
            self._texture(scene.textures[mesh.texture]).use(0)
            vao.render(self._gl.TRIANGLES)
            vao.release()
            vbo.release()
            ibo.release()
        self.ctx.copy_framebuffer(resolved, fbo)
        raw = resolved.read(components=3, alignment=1)
        return np.frombuffer(raw, np.uint8).reshape(scene.height, scene.width, 3)[::-1].copy()
