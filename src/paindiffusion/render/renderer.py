"""Headless CPU renderer for the face mesh: moderngl on EGL (Mesa's software GL) → uint8 RGB images.

What makes the face readable by people and by face trackers (DESIGN §9, measured with MediaPipe): skin
tone, dark brows, red lips, a dark mouth interior, sclera and iris drawn inside the eye opening, a dark
lash line on the upper lid margin, a mid-grey background and a face well over 170 px tall. The mesh has
no holes, so the eyes and the mouth exist only through the colours of the triangles that cover them.

The iris is a disc fixed in the head's frame (the pose is recovered from vertices no AU moves), drawn
only where the eye-opening triangles are. Those triangles span the lid margins, so a closing lid covers
the iris, and a shut eye (zero-area opening) shows none of it; the lash line stays on the lid skin.
"""

from __future__ import annotations

import numpy as np

from ..errors import PainDiffusionError
from . import mesh as M

SKIN = (0.90, 0.71, 0.60)
BROW = (0.20, 0.13, 0.10)
LIPS = (0.74, 0.30, 0.32)
MOUTH = (0.16, 0.05, 0.05)
BACKGROUND = (0.5, 0.5, 0.5)
FOVY = 23.0  # degrees; with the camera 62 units away the neutral face is ~75% of the image height

# Material codes (a per-corner attribute; the fragment shader tests them as numbers): 0 skin, 1/2 the
# subject's right/left eye opening (as FaceMesh.eye_opening), -1 the mouth interior.
SKIN_MAT, EYE_RIGHT, EYE_LEFT, MOUTH_MAT = 0.0, 1.0, 2.0, -1.0

VERTEX_SHADER = """
#version 330
uniform mat4 mvp;
in vec3 in_pos; in vec3 in_nrm; in float in_fold; in vec3 in_col; in vec3 in_attr;
out vec3 v_pos; out vec3 v_nrm; out vec3 v_col; out vec3 v_attr; out float v_fold;
void main() {
    v_pos = in_pos; v_nrm = in_nrm; v_col = in_col; v_attr = in_attr; v_fold = in_fold;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

# v_attr = (material, lash, lid): lash is 1 on the upper lid margin (dark band on the lid skin next to it),
# lid is 1 on the upper margin and 0 on the lower one (the upper lid's shadow on the eyeball; in the mouth,
# 1 on the upper lip's inner edge, so its screen-space rate of change gives the opening's width in pixels).
FRAGMENT_SHADER = """
#version 330
uniform vec3 camera;
uniform vec3 iris_c[2];
uniform vec3 iris_n[2];
uniform float iris_r;
uniform mat3 head_r;
uniform vec3 head_t;
uniform float teeth_edge;
uniform float px_per_unit;
in vec3 v_pos; in vec3 v_nrm; in vec3 v_col; in vec3 v_attr; in float v_fold;
out vec4 frag;
void main() {
    vec3 n = normalize(v_nrm);
    vec3 view = normalize(camera - v_pos);
    if (dot(n, view) < 0.0) n = -n;  // two-sided: the outline folds back at the ears
    float key = max(dot(n, normalize(vec3(-0.45, 0.55, 1.0))), 0.0);
    float fill = max(dot(n, normalize(vec3(0.7, -0.1, 0.8))), 0.0);
    float light = 0.32 + 0.6 * key + 0.22 * fill;
    vec3 col = v_col * (1.0 - 0.45 * v_fold);  // skin bunched by muscle pull reads as a furrow
    float mat = v_attr.x;
    if (mat > 0.5) {
        int k = mat > 1.5 ? 1 : 0;
        vec3 d = v_pos - iris_c[k];
        float r = length(d - dot(d, iris_n[k]) * iris_n[k]) / iris_r;
        col = vec3(0.94, 0.93, 0.90);                                        // sclera
        if (r < 1.0) col = mix(vec3(0.36, 0.23, 0.14), vec3(0.13, 0.08, 0.05), smoothstep(0.72, 1.0, r));
        if (r < 0.42) col = vec3(0.03);                                      // pupil
        col *= 1.0 - 0.5 * smoothstep(0.5, 1.0, v_attr.z);                   // shadow of the upper lid
        light = 0.6 + 0.4 * key;
    } else if (mat < -0.5) {
        // Mouth interior: upper teeth fixed to the skull (head frame), shown only where the opening is
        // wider than a few pixels (a narrow gap between the lips stays dark, as in a closed mouth).
        vec3 h = transpose(head_r) * (v_pos - head_t);
        float gap_px = 1.0 / max(fwidth(v_attr.z), 1e-4);
        float front = 1.0 - smoothstep(1.2, 1.9, abs(h.x));
        float teeth = step(teeth_edge, h.y) * smoothstep(4.0, 9.0, gap_px) * front;
        // lower incisors: a band above the lower lip's inner edge (they ride on the jaw with that lip)
        float above_lower_px = v_attr.z * gap_px;
        teeth = max(teeth, step(above_lower_px, 0.3 * px_per_unit) * smoothstep(10.0, 16.0, gap_px) * front * 0.9);
        col = mix(col, vec3(0.92, 0.90, 0.82), teeth);
        light = 0.45 + 0.55 * key;
    } else if (v_attr.y > 0.42) {
        col = vec3(0.07, 0.05, 0.05);                                        // lash line
    }
    frag = vec4(min(col * light, vec3(1.0)), 1.0);
}
"""


def _perspective(fovy_deg: float, near: float, far: float) -> np.ndarray:
    f = 1 / np.tan(np.deg2rad(fovy_deg) / 2)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
                     [0, 0, -1, 0]], np.float32)


def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t with dst ≈ src @ R.T + t (least squares)."""
    cs, cd = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    s = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
    r = vt.T @ s @ u.T
    return r, cd - cs @ r.T


class Renderer:
    """Render face meshes (468 vertices in the canonical mesh's order) to ``size``×``size`` RGB images."""

    def __init__(self, size: int = 512, mesh: M.FaceMesh | None = None, samples: int = 0):
        import moderngl  # imported here so that the package imports without a GL stack

        self.size, self.mesh = int(size), mesh or M.canonical_mesh()
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as e:  # no libEGL / no Mesa driver: say how to get them
            raise PainDiffusionError(
                f"cannot open a headless OpenGL context on EGL ({type(e).__name__}: {str(e).strip()[:120]}); "
                "install Mesa's EGL and software rasteriser: apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"
            ) from None
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.prog = self.ctx.program(vertex_shader=VERTEX_SHADER, fragment_shader=FRAGMENT_SHADER)
        self._corners = self.mesh.triangles.reshape(-1)  # one GL vertex per triangle corner (unshared)
        self._dynamic = self.ctx.buffer(reserve=len(self._corners) * 7 * 4, dynamic=True)
        self._static = self.ctx.buffer(self._static_attributes().tobytes())
        self.vao = self.ctx.vertex_array(self.prog, [(self._dynamic, "3f 3f 1f", "in_pos", "in_nrm", "in_fold"),
                                                     (self._static, "3f 3f", "in_col", "in_attr")])
        shape = (self.size, self.size)
        self.fbo = self.ctx.framebuffer(self.ctx.renderbuffer(shape, samples=samples),
                                        self.ctx.depth_renderbuffer(shape, samples=samples))
        self.out = self.ctx.framebuffer(self.ctx.renderbuffer(shape)) if samples else self.fbo
        self._setup_camera()
        self._setup_eyes()
        self._rest_area = self._areas(self.mesh.vertices)
        # Lid margins and lips compress as eyes close and lips press: those are not furrows.
        m = self.mesh
        self._no_folds = np.unique(np.concatenate([m.triangles[m.eye_opening > 0].ravel(), m.triangles[m.lips].ravel(),
                                                   m.both(M.EYE_UPPER1 + M.EYE_LOWER1)]))

    # ---- fixed parts ---------------------------------------------------------------------------------
    def _static_attributes(self) -> np.ndarray:
        """Per-corner colour (3) and (material, lash, lid) (3)."""
        m, n = self.mesh, len(self.mesh.vertices)
        tri_col = np.tile(np.asarray(SKIN, np.float32), (len(m.triangles), 1))
        tri_col[m.brows], tri_col[m.lips], tri_col[m.mouth_interior] = BROW, LIPS, MOUTH
        tri_mat = m.eye_opening.astype(np.float32)  # 0 skin, 1 right eye, 2 left eye
        tri_mat[m.mouth_interior] = MOUTH_MAT
        lash = np.zeros(n, np.float32)
        lash[m.both(M.EYE_UPPER0)] = 1.0
        lash[m.both(M.EYE_CORNERS[:1])] = 0.8  # the lash line runs out past the outer corner
        lid = lash.copy()
        lid[m.both(M.EYE_CORNERS)] = 0.5
        lid[np.asarray(M.LIPS_UPPER_INNER)] = 1.0
        lid[m.both(M.MOUTH_CORNERS[1:2])] = 0.5
        col = np.repeat(tri_col, 3, axis=0)
        attr = np.stack([np.repeat(tri_mat, 3), lash[self._corners], lid[self._corners]], 1)
        return np.concatenate([col, attr], 1).astype(np.float32)

    def _setup_camera(self):
        """A portrait camera: the neutral face fills ~75% of the frame height (≥170 px from 230² up)."""
        v = self.mesh.vertices
        centre = np.array([0.0, (v[:, 1].max() + v[:, 1].min()) / 2 - 0.8, 0.0], np.float32)
        self.camera = centre + np.array([0, 0, 62.0], np.float32)
        view = np.eye(4, dtype=np.float32)
        view[:3, 3] = -self.camera
        proj = _perspective(FOVY, 30.0, 100.0)
        proj[1] *= -1  # render upside down so the framebuffer reads out top row first (no flip copy)
        self._mvp = proj @ view
        self.prog["mvp"].write(self._mvp.T.copy().tobytes())
        self.prog["camera"].value = tuple(self.camera)

    def _setup_eyes(self):
        """Neutral iris centres (mid-way between the eye corners, mid-height of the opening)."""
        v, m = self.mesh.vertices, self.mesh
        centres = []
        for side in (np.asarray, lambda i: m.mirror[np.asarray(i)]):
            c = side(M.EYE_CORNERS)
            mid_up, mid_low = v[side([159])[0]], v[side([145])[0]]
            centres.append([v[c, 0].mean(), (mid_up[1] + mid_low[1]) / 2, (mid_up[2] + mid_low[2]) / 2])
        self._iris_neutral = np.asarray(centres, np.float32)
        self._stable = np.asarray(M.STABLE)
        eye_width = np.linalg.norm(v[33] - v[133])
        self.prog["iris_r"].value = 0.2 * eye_width  # iris ≈ 11.7 mm across a ~29 mm eye opening
        # Upper incisors end a little below the lips' meeting line (hidden by the closed lips at rest).
        self.prog["teeth_edge"].value = float(v[[13, 14], 1].mean() - 0.25)
        self.prog["px_per_unit"].value = self.size / (2 * (self.camera[2] - 5.0) * np.tan(np.deg2rad(FOVY) / 2))

    # ---- per frame ---------------------------------------------------------------------------------------
    def normals(self, v: np.ndarray) -> np.ndarray:
        """Smooth vertex normals: area-weighted sum of the adjacent face normals."""
        t = self.mesh.triangles
        fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
        n = np.stack([np.bincount(self._corners, np.repeat(fn[:, k], 3), len(v)) for k in range(3)], 1)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    def _areas(self, v: np.ndarray) -> np.ndarray:
        """Area of the skin around each vertex (a third of each adjacent triangle)."""
        t = self.mesh.triangles
        a = np.linalg.norm(np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]]), axis=1) / 6
        return np.bincount(self._corners, np.repeat(a, 3), len(v))

    def folds(self, v: np.ndarray) -> np.ndarray:
        """0–1 per vertex: how much the skin around it is compressed relative to the neutral face.

        Muscles bunch the skin into furrows (between the brows for AU4, beside the nose for AU9/10, at
        the eye corners for AU6); darkening compressed skin suggests them without a wrinkle model.
        """
        ratio = self._rest_area / np.maximum(self._areas(v), 1e-9)
        ratio[self._no_folds] = 1.0
        return np.clip((ratio - 1.15) * 1.5, 0.0, 1.0)

    def render(self, vertices: np.ndarray) -> np.ndarray:
        """One (468, 3) mesh → (size, size, 3) uint8 RGB, top row first."""
        v = np.asarray(vertices, np.float32)
        if v.shape != self.mesh.vertices.shape:
            raise PainDiffusionError(f"renderer needs vertices of shape {self.mesh.vertices.shape}, got {v.shape}")
        c = self._corners
        per_corner = np.concatenate([v[c], self.normals(v)[c], self.folds(v)[c, None]], 1)
        self._dynamic.write(per_corner.astype(np.float32).tobytes())
        r, t = _kabsch(self.mesh.vertices[self._stable], v[self._stable])
        self.prog["iris_c"].write((self._iris_neutral @ r.T + t).astype(np.float32).tobytes())
        self.prog["iris_n"].write(np.tile(r[:, 2], 2).astype(np.float32).tobytes())
        self.prog["head_r"].write(r.T.astype(np.float32).tobytes())  # GLSL matrices are column-major
        self.prog["head_t"].write(t.astype(np.float32).tobytes())
        self.fbo.use()
        self.ctx.clear(*BACKGROUND, 1.0, depth=1.0)
        self.vao.render()
        if self.out is not self.fbo:
            self.ctx.copy_framebuffer(self.out, self.fbo)  # resolve the multisampled image (anti-aliasing)
        data = self.out.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.size, self.size, 3)

    def project(self, vertices: np.ndarray) -> np.ndarray:
        """Pixel (column, row) of each vertex in the rendered image (row 0 at the top)."""
        v = np.asarray(vertices, np.float32)
        clip = np.concatenate([v, np.ones_like(v[..., :1])], -1) @ self._mvp.T
        ndc = clip[..., :2] / clip[..., 3:]
        return (ndc + 1) / 2 * self.size

    def render_many(self, vertices: np.ndarray):
        """Yield one image per mesh of a (T, 468, 3) array (each a fresh array, safe to keep)."""
        for v in vertices:
            yield self.render(v)

    def release(self):
        self.ctx.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
