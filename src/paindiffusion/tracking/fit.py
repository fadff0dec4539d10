"""Tracked landmarks → ``facs`` frames: head pose by rigid alignment, AUs by bounded least squares of the rig.

The reading model is our own rig as MediaPipe reads it (:mod:`.measurement`): the tracked neutral face and one
displacement field per AU unit, measured by rendering the rig and tracking the renders. A face tracker sees
only part of some motions (about 60% of a brow movement, a shut eye as a narrow one: docs/tracking.md), so
fitting the rig's own geometric basis would read renders back too weak; fitting the basis as read returns the
intensities that were rendered. Per frame:

1. **pose** — a similarity (Umeyama) alignment of the landmarks to the model face, first on vertices no AU
   moves, then (alternating with step 2) on every vertex against the neutral face plus the current AUs;
   pitch, yaw and roll are read off the rotation in the rig's conventions (:func:`~..render.rig.rotation`);
2. **AUs** — min ‖W½(B s − (x − P(pose) − n))‖² subject to 0 ≤ s ≤ segment width, where x is the aligned
   frame, P(pose) the displacement the head pose causes by itself (perspective, the tracker's reading of a
   turned face), n the subject's neutral face, W the inverse landmark noise, B = B₀ + yaw·B′ the AU fields as
   they read at the frame's yaw (a turned face's far eye is foreshortened), and s each AU's intensity split
   into the segments of its piecewise-linear reading (AU = Σ segments); solved for all frames at once
   (:func:`box_least_squares`);
3. **the subject's neutral** — the median of the recording's calmest frames (lowest total AU activity on a
   first pass) with its AU part removed, so that the face's identity is not read as expression while a resting
   expression (a smile held all along) still is; or a neutral face given by the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources

import numpy as np

from ..errors import PainDiffusionError
from ..facespace import FACS, FACS_AUS

N_AUS = len(FACS_AUS)
AU_MAX = 5.0
CALM_SHARE = 0.1  # the calmest 10% of frames define the subject's neutral face
RIGID_ROUNDS = 2  # first alignments, each with the pose part of the previous one's pose
SOLVE_CHUNK = 2048  # frames solved together when each has its own Gram matrix (T·K² floats)


# ---- rigid alignment -------------------------------------------------------------------------------------
def similarity(src: np.ndarray, dst: np.ndarray, weight: np.ndarray | None = None):
    """Umeyama's least-squares similarity, batched: dst ≈ s · src @ R.T + t for each of T frames.

    ``src`` (V, 3) or (T, V, 3), ``dst`` (T, V, 3), ``weight`` (V,) ≥ 0. Returns s (T,), R (T, 3, 3), t (T, 3).
    """
    dst = np.asarray(dst, np.float64)
    src = np.broadcast_to(np.asarray(src, np.float64), dst.shape)
    w = np.ones(dst.shape[1]) if weight is None else np.asarray(weight, np.float64)
    w = w / w.sum()
    ms, md = np.einsum("v,tvc->tc", w, src), np.einsum("v,tvc->tc", w, dst)
    a, b = src - ms[:, None], dst - md[:, None]
    cov = np.einsum("v,tvi,tvj->tij", w, b, a)
    u, sv, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    sign = np.stack([np.ones_like(d), np.ones_like(d), d], 1)
    r = u @ (sign[:, :, None] * vt)
    s = (sv * sign).sum(1) / np.einsum("v,tvc->t", w, a * a)
    t = md - s[:, None] * np.einsum("tij,tj->ti", r, ms)
    return s, r, t


def to_model_frame(points: np.ndarray, s, r, t) -> np.ndarray:
    """Undo a similarity: the landmarks in the model face's frame (T, V, 3)."""
    return np.einsum("tvi,tij->tvj", points - t[:, None], r) / s[:, None, None]


def head_angles(r: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations → (T, 3) pitch, yaw, roll in degrees, inverting :func:`~..render.rig.rotation`
    (R = Ry(yaw) · Rx(pitch) · Rz(−roll))."""
    pitch = np.arcsin(np.clip(-r[:, 1, 2], -1, 1))
    yaw = np.arctan2(r[:, 0, 2], r[:, 2, 2])
    roll = np.arctan2(-r[:, 1, 0], r[:, 1, 1])
    return np.rad2deg(np.stack([pitch, yaw, roll], 1))


# ---- bounded least squares ---------------------------------------------------------------------------------
def box_least_squares(gram: np.ndarray, rhs: np.ndarray, lo=0.0, hi=AU_MAX,
                      iters: int = 60, init: np.ndarray | None = None) -> np.ndarray:
    """min ½ aᵀGa − hᵀa subject to lo ≤ a ≤ hi, for each row h of ``rhs`` (T, K): projected Gauss-Seidel
    (coordinate descent), vectorised over frames. G is one (K, K) matrix for all frames or one per frame
    (T, K, K); it must be symmetric positive definite, and then each sweep lowers the objective and the
    iterates converge to the unique minimiser (Luo & Tseng 1992)."""
    lo, hi = (np.broadcast_to(np.asarray(b, np.float64), gram.shape[-1:]) for b in (lo, hi))  # per variable
    a = np.zeros_like(rhs) if init is None else np.clip(init, lo, hi).copy()
    diag = np.diagonal(gram, axis1=-2, axis2=-1)  # (K,) or (T, K)
    per_frame = gram.ndim == 3
    for _ in range(iters):
        for k in range(gram.shape[-1]):
            ga = np.einsum("tj,tj->t", a, gram[:, k]) if per_frame else a @ gram[k]
            a[:, k] = np.clip(a[:, k] + (rhs[:, k] - ga) / diag[..., k], lo[k], hi[k])
    return _polish(gram, rhs, a, lo, hi)


def _polish(gram, rhs, a, lo, hi):
    """Coordinate descent crawls along nearly collinear AUs (the lid AUs): once it has found which bounds are
    active, solve the free coordinates exactly (frames grouped by their free set); keep what stays in bounds."""
    free = (a > lo + 1e-6) & (a < hi - 1e-6)
    patterns, group = np.unique(free, axis=0, return_inverse=True)
    for p, f in enumerate(patterns):
        if not f.any():
            continue
        rows = np.flatnonzero(group.ravel() == p)
        if gram.ndim == 3:  # one small system per frame
            g = gram[rows]
            fixed = np.einsum("tj,tjf->tf", a[np.ix_(rows, ~f)], g[:, ~f][:, :, f])
            sol = np.linalg.solve(g[:, f][:, :, f], (rhs[np.ix_(rows, f)] - fixed)[..., None])[..., 0]
        else:
            fixed = a[np.ix_(rows, ~f)] @ gram[np.ix_(~f, f)]
            sol = np.linalg.solve(gram[np.ix_(f, f)], (rhs[np.ix_(rows, f)] - fixed).T).T
        ok = ((sol >= lo[f]) & (sol <= hi[f])).all(1)
        a[np.ix_(rows[ok], np.flatnonzero(f))] = sol[ok]
    return a


# ---- the head pose's own displacement ----------------------------------------------------------------------
POSE_SCALE_DEG = 20.0  # head angles enter the pose features in units of 20°, the measurement clips' typical turn


def pose_features(angles: np.ndarray) -> np.ndarray:
    """(T, 3) pitch, yaw, roll in degrees → (T, F) features the pose displacement is linear in."""
    p, y, r = (np.asarray(angles, np.float64) / POSE_SCALE_DEG).T
    return np.stack([p, y, r, p * p, y * y, p * y], 1)


# ---- the reading model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadingModel:
    """The rig as the tracker reads it: tracked neutral face, AU basis, landmark noise weights.

    The tracker's response to an AU is not linear (a lid reads as barely moving until it is nearly shut), so
    each AU's reading is piecewise linear in its intensity: segment j of AU k covers intensities between
    ``knots[j]`` and ``knots[j+1]`` and has its own displacement field. A frame is then still a bounded
    *linear* least-squares problem in the segment amounts s (0 ≤ s ≤ segment width), and AU k = Σ_j s[j, k].
    """

    neutral: np.ndarray  # (468, 3) model-frame neutral face as tracked
    basis: np.ndarray  # (S·17, 468, 3) displacement per AU unit, segment-major (segment j, AU k at j·17 + k)
    weight: np.ndarray  # (468, 3) inverse noise variance of each coordinate
    rigid: np.ndarray  # vertex ids no AU moves (first alignment)
    ridge: float = 0.0  # Tikhonov weight, as a share of the mean diagonal of the Gram matrix
    sparsity: float = 0.0  # weight of Σs (s ≥ 0, so an L1 prior: explain a frame with few AUs), same units
    pose_correction: np.ndarray | None = None  # (21, 3): pose error ≈ [1, fitted frame] @ this (measured)
    knots: tuple = (0.0, AU_MAX)  # AU intensities where the reading's slope may change
    info: dict | None = None
    pose_basis: np.ndarray | None = None  # (F, 468, 3) displacement per head-pose feature (:func:`pose_features`)
    yaw_basis: np.ndarray | None = None  # (S·17, 468, 3) change of each segment's field per POSE_SCALE_DEG of yaw

    @property
    def widths(self) -> np.ndarray:
        return np.repeat(np.diff(np.asarray(self.knots, np.float64)), N_AUS)

    def segments(self, aus: np.ndarray) -> np.ndarray:
        """AU intensities (T, 17) → segment amounts (T, S·17)."""
        k = np.asarray(self.knots, np.float64)
        return np.concatenate([np.clip(aus - k[j], 0, k[j + 1] - k[j]) for j in range(len(k) - 1)], 1)

    @staticmethod
    def aus(segments: np.ndarray) -> np.ndarray:
        return segments.reshape(len(segments), -1, N_AUS).sum(1)

    @property
    def turns(self) -> bool:
        """Whether the AU fields change with yaw (models made before that was measured do not)."""
        return self.yaw_basis is not None and len(self.yaw_basis) > 0

    @cached_property
    def _flat(self) -> tuple[np.ndarray, ...]:
        """Basis and its change with yaw as (K, V·3) matrices, and both with the weights applied."""
        w = self.weight.reshape(-1)
        b = self.basis.reshape(len(self.basis), -1).astype(np.float64)
        b1 = self.yaw_basis.reshape(len(b), -1).astype(np.float64) if self.turns else np.zeros_like(b)
        return b, b * w, b1, b1 * w

    @cached_property
    def _grams(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The Gram matrix at yaw y (in units of POSE_SCALE_DEG) is G0 + y·G1 + y²·G2, as the basis is
        B + y·B'. Also the frontal Gram's mean diagonal, the unit of the ridge and sparsity weights."""
        b, bw, b1, b1w = self._flat
        g0 = bw @ b.T
        unit = float(np.trace(g0) / len(g0))
        return g0 + self.ridge * unit * np.eye(len(g0)), bw @ b1.T + b1w @ b.T, b1w @ b1.T, unit

    def solve(self, residual: np.ndarray, yaw: np.ndarray | None = None, init=None) -> np.ndarray:
        """Segment amounts (T, S·17) that best explain model-frame displacements (T, 468, 3) from the neutral
        face: min ½‖W½(B(yaw)s − r)‖² + ½λ‖s‖² + μΣs subject to 0 ≤ s ≤ segment width. ``yaw`` (T,) in
        degrees, the head's turn in each frame (frontal when None)."""
        b, bw, _, b1w = self._flat
        g0, g1, g2, unit = self._grams
        r = residual.reshape(len(residual), -1)
        rhs = r @ bw.T - self.sparsity * unit
        if yaw is None or not self.turns:
            return box_least_squares(g0, rhs, 0.0, self.widths, init=init)
        y = np.asarray(yaw, np.float64) / POSE_SCALE_DEG
        rhs += y[:, None] * (r @ b1w.T)
        out = np.empty_like(rhs)
        for c in range(0, len(r), SOLVE_CHUNK):  # one Gram per frame, a chunk at a time to bound the memory
            sl = slice(c, c + SOLVE_CHUNK)
            yc = y[sl, None, None]
            out[sl] = box_least_squares(g0 + yc * g1 + yc * yc * g2, rhs[sl], 0.0, self.widths,
                                        init=None if init is None else init[sl])
        return out

    def shape(self, neutral: np.ndarray, segments: np.ndarray, yaw: np.ndarray | None = None) -> np.ndarray:
        b, _, b1, _ = self._flat
        d = segments @ b
        if yaw is not None and self.turns:
            d += (segments * (np.asarray(yaw, np.float64)[:, None] / POSE_SCALE_DEG)) @ b1
        return neutral + d.reshape(len(segments), *neutral.shape)

    def pose_shape(self, angles: np.ndarray) -> np.ndarray | float:
        """Model-frame displacement (T, 468, 3) that a head pose (T, 3: pitch, yaw, roll in degrees) alone
        causes: the perspective a similarity cannot undo and the tracker's pose-dependent reading."""
        if self.pose_basis is None or not len(self.pose_basis):
            return 0.0
        return np.einsum("tf,fvc->tvc", pose_features(angles), self.pose_basis)

    def correct_pose(self, frames: np.ndarray) -> np.ndarray:
        """Remove the tracker's measured pose bias (pitch read from a lip raise, yaw from a turn's perspective)."""
        if self.pose_correction is None:
            return frames
        out = frames.copy()
        out[:, N_AUS:] += np.concatenate([np.ones((len(frames), 1)), frames], 1) @ self.pose_correction
        return out

    def save(self, path) -> None:
        pc = np.zeros((1 + FACS.dim, 3)) if self.pose_correction is None else self.pose_correction
        np.savez_compressed(path, neutral=self.neutral.astype(np.float32), basis=self.basis.astype(np.float32),
                            weight=self.weight.astype(np.float32), rigid=self.rigid.astype(np.int32),
                            ridge=np.float32(self.ridge), sparsity=np.float32(self.sparsity),
                            pose_correction=pc.astype(np.float32), knots=np.asarray(self.knots, np.float32),
                            info=np.array(json.dumps(self.info or {})),
                            **{k: np.zeros((0, *self.neutral.shape), np.float32) if v is None else v.astype(np.float32)
                               for k, v in (("pose_basis", self.pose_basis), ("yaw_basis", self.yaw_basis))})


@lru_cache(maxsize=1)
def reading_model() -> ReadingModel:
    """The shipped reading model (``assets/reading_model.npz``, made by ``scripts/make_reading_model.py``)."""
    try:
        with resources.files("paindiffusion").joinpath("assets", "reading_model.npz").open("rb") as f:
            z = np.load(f)
            return ReadingModel(z["neutral"], z["basis"], z["weight"], z["rigid"], float(z["ridge"]),
                                float(z["sparsity"]), z["pose_correction"], tuple(float(k) for k in z["knots"]),
                                json.loads(str(z["info"])), *(z[k] if k in z else None for k in ("pose_basis", "yaw_basis")))
    except FileNotFoundError:
        raise PainDiffusionError("the package has no assets/reading_model.npz; rebuild it with "
                                 "'python scripts/make_reading_model.py'") from None


# ---- fitting -------------------------------------------------------------------------------------------------
def estimate_neutral(aligned: np.ndarray, segments: np.ndarray, model: ReadingModel,
                     yaw: np.ndarray | None = None) -> np.ndarray:
    """The subject's neutral face: median of the calmest frames, minus the AU part of that median shape (read
    at their median yaw). ``aligned`` has the head pose's own displacement already taken off."""
    k = max(1, round(CALM_SHARE * len(aligned)))
    calm = np.argsort(segments.sum(1), kind="stable")[:k]
    shape = np.median(aligned[calm], axis=0)
    y = None if yaw is None else np.median(yaw[calm])[None]
    return shape - (model.shape(model.neutral, model.solve((shape - model.neutral)[None], y), y)[0] - model.neutral)


def _angles(model: ReadingModel, segments: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Head pose (T, 3) read off an alignment's rotations, with the tracker's measured bias removed."""
    return model.correct_pose(np.concatenate([model.aus(segments), head_angles(r)], 1))[:, N_AUS:]


def fit_frames(points: np.ndarray, model: ReadingModel | None = None, neutral: np.ndarray | None = None,
               rounds: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks (T, 468, 3) of frames with a face → (facs frames (T, 20), neutral (468, 3), scale (T,)).

    ``neutral``: the subject's neutral face in the model frame (e.g. from a rest recording); estimated from
    the calmest frames when None.
    """
    model = model or reading_model()
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != model.neutral.shape or not np.isfinite(p).all():
        raise PainDiffusionError(f"landmarks must be finite, shape (frames, {model.neutral.shape[0]}, 3); got {p.shape}")
    # A turned head moves the landmarks in ways a similarity cannot undo (perspective, the tracker's reading
    # of a turned face) and changes how each AU reads (the far eye is foreshortened): the reading model's pose
    # part is taken off and its AU fields are taken at each frame's yaw. The pose part moves even the vertices
    # no AU moves, so the first alignment is redone with it.
    s, r, t = similarity(model.neutral[model.rigid], p[:, model.rigid])
    seg = np.zeros((len(p), len(model.basis)))
    for _ in range(RIGID_ROUNDS if model.pose_basis is not None and len(model.pose_basis) else 0):
        ang = _angles(model, seg, r)
        s, r, t = similarity((model.neutral + model.pose_shape(ang))[:, model.rigid], p[:, model.rigid])
    ang = _angles(model, seg, r)
    x = to_model_frame(p, s, r, t) - model.pose_shape(ang)
    seg = model.solve(x - model.neutral, ang[:, 1])
    if neutral is None:
        neutral = estimate_neutral(x, seg, model, ang[:, 1])
    vertex_w = model.weight.mean(1)
    for _ in range(rounds):  # alternate pose (all vertices, expression and pose part accounted for) and AUs
        s, r, t = similarity(model.shape(neutral, seg, ang[:, 1]) + model.pose_shape(ang), p, vertex_w)
        ang = _angles(model, seg, r)
        x = to_model_frame(p, s, r, t) - model.pose_shape(ang)
        seg = model.solve(x - neutral, ang[:, 1], init=seg)
    frames = np.concatenate([model.aus(seg), _angles(model, seg, r)], 1)
    return FACS.clip(frames.astype(np.float32)), neutral, s
