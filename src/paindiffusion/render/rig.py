"""FACS action-unit rig on the canonical face mesh: ``facs`` frames → deformed vertices (docs/design.md §3).

Every AU moves a region of the mesh, named by landmark index in :mod:`.mesh`, with a smooth falloff
(smoothstep of the distance to the region's anchor vertices in the neutral mesh). Three kinds of motion:

* **linear fields** — a displacement per vertex at intensity 5, scaled by AU/5: brows (AU1, 2, 4),
  cheeks (AU6), nose (AU9), upper lip (AU10), lip corners (AU12, 14, 15, 20), chin (AU17), lips (AU23, 25);
* **eyelids** — the upper and lower lid margins travel along the gap between them. AU43 closes the eye
  fully (the lids meet, so the opening has zero area and no eye white or iris shows), AU7 and AU6 raise the
  lower lid (a pain squint), AU5 lifts the upper lid;
* **rotations** — the jaw rotates about the temporomandibular axis for AU26; the whole head rotates for
  head pitch/yaw/roll.

Magnitudes are in mesh units (about 1 cm; the face is 17.7 units tall) and follow the FACS manual's
descriptions of appearance changes at intensity E, not a measured model.
"""

from __future__ import annotations

import numpy as np

from ..facespace import FACS, FACS_AUS
from . import mesh as M

AU = {au: i for i, au in enumerate(FACS_AUS)}  # AU number → channel index in a facs frame
HEAD = slice(len(FACS_AUS), len(FACS_AUS) + 3)  # pitch, yaw, roll in degrees

JAW_MAX_DEG = 16.0  # AU26 at 5 opens the jaw this far (a wide "jaw drop" short of AU27 mouth stretch)
JAW_PIVOT = np.array([0.0, 0.0, -3.5], np.float32)  # temporomandibular axis: ear level, behind the face
NECK_PIVOT = np.array([0.0, -6.0, -6.0], np.float32)  # head rotates about the top of the neck


def smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


class FaceRig:
    """Deforms the canonical mesh from ``facs`` frames. Build once; :meth:`deform` is vectorised over frames."""

    def __init__(self, mesh: M.FaceMesh | None = None):
        self.mesh = mesh or M.canonical_mesh()
        self.neutral = self.mesh.vertices.astype(np.float32)
        self.neutral = self.neutral + self._closed_lips()  # rest pose: the canonical mesh, lips closed
        self.jaw = self._jaw_weight()
        self.basis = self._linear_basis()  # (17, 468, 3): displacement at AU = 5
        self.lid_upper, self.lid_lower = self._lid_fields()  # displacement for a lid travelling the full gap

    # ---- building blocks ------------------------------------------------------------------------------
    def field(self, anchors, direction, radius: float, weight=None) -> np.ndarray:
        """Displacement ``direction`` at the anchors (subject's right side; mirrored for the left) fading
        smoothly to zero at ``radius``. Each half of the face follows its own side's anchors; sideways motion
        fades out at the midline so the two halves meet without a seam."""
        v, a = self.neutral, self.neutral[np.asarray(anchors)]
        a_left = a * np.array([-1, 1, 1], np.float32)
        d_right = np.sqrt(((v[:, None] - a[None]) ** 2).sum(-1)).min(1)
        d_left = np.sqrt(((v[:, None] - a_left[None]) ** 2).sum(-1)).min(1)
        right = v[:, 0] <= 0
        w = smoothstep(1 - np.where(right, d_right, d_left) / radius)
        d = np.tile(np.asarray(direction, np.float32), (len(v), 1))
        d[~right, 0] *= -1
        d[:, 0] *= smoothstep(np.abs(v[:, 0]) / 0.8)
        if weight is not None:
            w = w * weight
        return (w[:, None] * d).astype(np.float32)

    def _jaw_weight(self) -> np.ndarray:
        """1 on the lower lip, chin and jaw; 0 on the upper lip and above; 0.5 at the mouth corners."""
        y = self.neutral[:, 1]
        j = smoothstep((-3.7 - y) / 2.0)
        j[self.mesh.upper_lip] = 0.0
        j[self.mesh.lower_lip] = 1.0
        j[self.mesh.both(M.MOUTH_CORNERS)] = 0.5
        return j.astype(np.float32)

    def _lip_profile(self, flat: float = 0.0) -> np.ndarray:
        """1 at the lip centre, 0.25 at the corners: lips part most in the middle. ``flat`` widens the
        plateau (AU10 lifts the upper lip in a squarish shape, exposing the teeth)."""
        x = np.abs(self.neutral[:, 0])
        return 0.25 + 0.75 * smoothstep((2.4 - x) / (2.4 - flat))

    def _linear_basis(self) -> np.ndarray:
        f, m, jaw, prof = self.field, self.mesh, self.jaw, self._lip_profile()
        upper = m.upper_lip.astype(np.float32)
        lower = m.lower_lip.astype(np.float32)
        lip_ids = np.flatnonzero(m.upper_lip | m.lower_lip)
        b = {au: np.zeros_like(self.neutral) for au in FACS_AUS}
        # Brows. AU1 lifts the inner ends (oblique brows), AU2 the outer ends; AU4 pulls the whole brow
        # down and toward the midline, inner ends most (the frown of pain).
        b[1] = f(M.BROW_INNER, (0.05, 0.9, 0.05), 2.2)
        b[2] = f(M.BROW_OUTER, (0.0, 0.85, 0.0), 2.2)
        b[4] = f(M.BROW, (0.25, -0.65, 0.1), 1.8) + f(M.BROW_INNER, (0.4, -0.45, 0.15), 1.4)
        # AU6: the cheeks rise and bulge (the lower lid part is in the lid fields); orbicularis oculi pulls the
        # outer brow down a little (FACS), which a tracker sees where it cannot see the cheek.
        b[6] = f(M.CHEEK, (0.0, 0.55, 0.15), 2.0) + f(M.BROW_OUTER, (0.0, -0.3, 0.0), 1.6)
        # AU9: nose wings lift, the skin between the brows and the inner brow ends are pulled down, the upper
        # lip centre rises (FACS); the brow and lip parts are what a landmark tracker reads.
        b[9] = f(M.NOSE_WING, (0.0, 0.5, 0.05), 1.3) + f(M.GLABELLA, (0.0, -0.35, 0.0), 1.2) \
            + f(M.BROW_INNER, (0.0, -0.3, 0.0), 1.2) + f(lip_ids, (0.0, 0.4, 0.05), 0.8, upper * prof)
        # AU10: the upper lip rises, flat across the middle (a squarish opening), the nose wings follow.
        b[10] = f(np.concatenate([lip_ids, M.PHILTRUM]), (0.0, 0.75, 0.15), 1.0, (1 - jaw) * self._lip_profile(1.1)) \
            + f(M.NOSE_WING, (0.0, 0.25, 0.0), 1.0)
        # Lip corners: AU12 up/out/back, AU14 in/back (dimple), AU15 down, AU20 sideways (stretch).
        b[12] = f(M.MOUTH_CORNERS, (-0.65, 0.65, -0.3), 1.6) + f(M.CHEEK, (0.0, 0.25, 0.1), 1.5)
        b[14] = f(M.MOUTH_CORNERS, (0.2, 0.05, -0.4), 1.2)
        b[15] = f(M.MOUTH_CORNERS, (-0.1, -0.65, 0.0), 1.5)
        b[20] = f(M.MOUTH_CORNERS, (-1.3, -0.25, -0.35), 2.0)
        # AU17: the chin boss pushes up and forward, the lower lip with it.
        b[17] = f(M.CHIN, (0.0, 0.5, 0.25), 1.8, jaw) + f(lip_ids, (0.0, 0.3, 0.15), 0.6, lower * prof)
        # AU23: lips thin and tighten (red parts narrow toward the lip line, corners in).
        b[23] = f(M.LIPS_UPPER_OUTER[1:6], (0.0, -0.25, 0.0), 0.6, upper) \
            + f(M.LIPS_LOWER_OUTER[5:10], (0.0, 0.25, 0.0), 0.6, lower) + f(M.MOUTH_CORNERS, (0.2, 0.0, 0.0), 1.0)
        # AU25: lips part (lower lip down more than the upper lip up), without the jaw.
        b[25] = f(lip_ids, (0.0, 0.2, 0.05), 0.9, (1 - jaw) * prof) + f(lip_ids, (0.0, -0.55, 0.05), 0.9, jaw * prof)
        # Linear fields must not move the lid margins: the lid fields alone decide how open the eyes are,
        # so that AU43 closes them exactly.
        margins = self.mesh.both(M.EYE_UPPER0 + M.EYE_LOWER0)
        out = np.stack([b[au] for au in FACS_AUS])
        out[:, margins] = 0.0
        return out

    def _gap_fields(self, upper0, lower0, upper_rings, lower_rings) -> tuple[np.ndarray, np.ndarray]:
        """Per-vertex displacement when the upper (lower) margin travels the whole gap to the other margin.

        ``upper0`` and ``lower0`` are margin loops (subject's right side; mirrored for the left) from corner
        to corner. A margin vertex moves by the gap vector measured at its x; ``*_rings`` are (vertex ids,
        weight) that follow the margin vertex nearest in x, so the skin around moves with it.
        """
        v = self.neutral
        fields = np.zeros((2,) + v.shape, np.float32)
        for side in (lambda i: np.asarray(i), lambda i: self.mesh.mirror[np.asarray(i)]):
            lines = (v[side(upper0)], v[side(lower0)])
            for k, (margin, rings) in enumerate(((upper0, upper_rings), (lower0, lower_rings))):
                ids = side(margin)[1:-1]  # the corners belong to both margins and stay put
                other = lines[1 - k][np.argsort(lines[1 - k][:, 0])]
                gap = np.stack([np.interp(v[ids, 0], other[:, 0], other[:, c]) for c in range(3)], 1) - v[ids]
                gap[:, 0] = 0.0
                o = np.argsort(v[ids, 0])
                for ring, weight in ((margin[1:-1], 1.0),) + tuple(rings):
                    r = side(ring)
                    fields[k, r] = weight * np.stack([np.interp(v[r, 0], v[ids[o], 0], gap[o, c]) for c in range(3)], 1)
        return fields[0], fields[1]

    def _lid_fields(self) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower lid travel; the lid skin rings follow with decreasing weights (a soft fold)."""
        outer, inner = M.EYE_CORNERS
        return self._gap_fields((outer,) + M.EYE_UPPER0 + (inner,), M.EYE_LOWER0,
                                ((M.EYE_UPPER1, 0.5), (M.EYE_UPPER2, 0.2)),
                                ((M.EYE_LOWER1, 0.45), (M.EYE_LOWER2, 0.15)))

    def _closed_lips(self) -> np.ndarray:
        """The canonical mesh's lips are parted (0.55 units at the centre); the rest pose closes them to a
        thin line, as a relaxed face does, so that only AU25/26 open the mouth."""
        upper = self.mesh.upper_lip & ~np.isin(np.arange(len(self.neutral)), M.LIPS_UPPER_INNER)
        lower = self.mesh.lower_lip & ~np.isin(np.arange(len(self.neutral)), M.LIPS_LOWER_INNER)
        up, low = self._gap_fields(M.LIPS_UPPER_INNER, M.LIPS_LOWER_INNER[::-1],
                                   ((np.flatnonzero(upper & (self.neutral[:, 0] <= 0)), 0.5),),
                                   ((np.flatnonzero(lower & (self.neutral[:, 0] <= 0)), 0.5),))
        return 0.42 * (up + low)

    # ---- deformation ------------------------------------------------------------------------------------
    def lids(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fraction of the eye gap travelled by the upper and lower lid, from AUs on 0–1 (T, 17).

        The two add to at most 1 (lids meet: the eye is shut and its opening has zero area).
        """
        up = 0.8 * a[:, AU[43]] + 0.15 * a[:, AU[7]] + 0.1 * a[:, AU[4]] + 0.1 * a[:, AU[6]] - 0.3 * a[:, AU[5]]
        low = 0.2 * a[:, AU[43]] + 0.38 * a[:, AU[7]] + 0.28 * a[:, AU[6]]
        total = np.maximum(up + low, 1.0)
        return up / total, low / total

    def linear_basis(self, at: float = 5.0) -> np.ndarray:
        """(17, 468, 3) displacement per AU unit, from the neutral face to each AU alone at intensity ``at``
        (secant through :meth:`deform`, so the lids and the jaw rotation are included): the linear model a
        face tracker fits (:mod:`paindiffusion.tracking`)."""
        frames = np.zeros((len(FACS_AUS), FACS.dim), np.float32)
        frames[np.arange(len(FACS_AUS)), np.arange(len(FACS_AUS))] = at
        return (self.deform(frames) - self.neutral) / at

    def deform(self, frames) -> np.ndarray:
        """``facs`` frames (T, 20) or one frame (20,) → vertices (T, 468, 3), float32."""
        f = np.asarray(frames, np.float32)
        f = FACS.validate(f[None] if f.ndim == 1 else f, "rig input")
        a = f[:, : len(FACS_AUS)] / 5.0
        v = self.neutral[None] + np.einsum("tk,kvc->tvc", a, self.basis)
        up, low = self.lids(a)
        v += up[:, None, None] * self.lid_upper + low[:, None, None] * self.lid_lower
        # Jaw: jaw-weighted vertices blend toward their rotation about the jaw axis (x).
        jaw = rotation(np.deg2rad(JAW_MAX_DEG) * a[:, AU[26]], 0, 0)
        rotated = np.einsum("tij,tvj->tvi", jaw, v - JAW_PIVOT) + JAW_PIVOT
        v += self.jaw[None, :, None] * (rotated - v)
        head = rotation(*np.deg2rad(f[:, HEAD]).T)
        return (np.einsum("tij,tvj->tvi", head, v - NECK_PIVOT) + NECK_PIVOT).astype(np.float32)


def rotation(pitch, yaw, roll) -> np.ndarray:
    """(T, 3, 3) head rotations in the facs space's conventions (radians): pitch > 0 looks down
    (about x), yaw > 0 turns to the subject's left (about y), roll > 0 tilts toward the left shoulder."""
    pitch, yaw, roll = np.broadcast_arrays(*(np.atleast_1d(np.asarray(x, np.float32)) for x in (pitch, yaw, roll)))
    c, s = np.cos, np.sin
    one, zero = np.ones_like(pitch), np.zeros_like(pitch)
    rx = np.stack([one, zero, zero, zero, c(pitch), -s(pitch), zero, s(pitch), c(pitch)], -1).reshape(-1, 3, 3)
    ry = np.stack([c(yaw), zero, s(yaw), zero, one, zero, -s(yaw), zero, c(yaw)], -1).reshape(-1, 3, 3)
    rz = np.stack([c(roll), s(roll), zero, -s(roll), c(roll), zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return ry @ rx @ rz
