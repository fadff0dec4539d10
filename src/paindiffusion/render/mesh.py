"""The open face mesh: MediaPipe's canonical face model and its named regions (docs/design.md §3, §9).

The asset (``assets/canonical_face.npz``, made by ``scripts/make_mesh.py``; Apache-2.0, see NOTICE) holds
468 vertices in centimetre-like units (x to the subject's left, y up, z toward the viewer), 898 triangles
and UVs. MediaPipe's face tracker returns its 468 landmarks in this vertex order, so a tracked frame maps
straight onto this mesh and its rig.

Regions are given by landmark index: the contour loops below are MediaPipe's own annotations (the
``MESH_ANNOTATIONS`` of its face-mesh keypoints), listed for the subject's right side (x < 0) only; the
left side is their mirror image (the canonical mesh is exactly symmetric). Triangle regions (eye openings,
lips, mouth interior, brows) are the triangles whose centroid lies inside a loop, tested in the frontal
(x, y) projection of the neutral mesh, where these loops are simple polygons.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources

import numpy as np

# ---- landmark loops (subject's right side; MediaPipe MESH_ANNOTATIONS) --------------------------------
EYE_UPPER0 = (246, 161, 160, 159, 158, 157, 173)  # upper lid margin, outer → inner
EYE_LOWER0 = (33, 7, 163, 144, 145, 153, 154, 155, 133)  # lower lid margin incl. both corners
EYE_UPPER1 = (247, 30, 29, 27, 28, 56, 190)  # rings of lid skin around the opening
EYE_LOWER1 = (130, 25, 110, 24, 23, 22, 26, 112, 243)
EYE_UPPER2 = (113, 225, 224, 223, 222, 221, 189)
EYE_LOWER2 = (226, 31, 228, 229, 230, 231, 232, 233, 244)
EYE_CORNERS = (33, 133)  # outer, inner canthus
BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)  # closed loop: upper edge outer → inner, lower edge back
BROW_INNER = (107, 66, 55, 65)
BROW_OUTER = (70, 63, 46, 53, 105, 52)

# Lips (both sides in one loop; the midline vertices 0, 17, 13, 14 have no mirror partner).
LIPS_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_LOWER_OUTER = (291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61)
LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_LOWER_INNER = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)
MOUTH_CORNERS = (61, 78, 62, 76)  # outer and inner corner of the subject's right side and their neighbours

CHEEK = (117, 118, 50, 101, 205, 36)  # malar fat pad that AU6 lifts
NOSE_WING = (98, 64, 48, 129, 49, 102, 115, 219, 218, 131)  # alar region that AU9/AU10 lift
GLABELLA = (168, 6, 193, 122, 8)  # skin between the brows, pulled down by AU9/AU4
CHIN = (199, 200, 18, 175, 171, 208, 201, 32, 140)  # mentalis area that AU17 pushes up
PHILTRUM = (164, 165, 167, 92, 37, 39, 40, 0)  # skin between nose and upper lip (AU10)

# Vertices that no AU moves (forehead top, temples, ear-side outline): the renderer recovers the
# head pose from them to place the irises.
STABLE = (10, 338, 297, 332, 109, 67, 103, 234, 454, 127, 356, 162, 389)


@lru_cache(maxsize=1)
def _asset() -> dict[str, np.ndarray]:
    with resources.files("paindiffusion").joinpath("assets", "canonical_face.npz").open("rb") as f:
        z = np.load(f)
        return {k: z[k] for k in ("vertices", "triangles", "uvs")}


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for (N,2) points against a closed (M,2) polygon."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((crosses & (x < xs)).sum(1) % 2) == 1


@dataclass(frozen=True)
class FaceMesh:
    vertices: np.ndarray  # (468, 3) float32, neutral
    triangles: np.ndarray  # (898, 3) int32
    uvs: np.ndarray  # (468, 2) float32

    @cached_property
    def mirror(self) -> np.ndarray:
        """Index of each vertex's mirror partner across the midline (itself on the midline)."""
        m = self.vertices * np.array([-1, 1, 1], np.float32)
        return np.argmin(((self.vertices[:, None] - m[None]) ** 2).sum(-1), axis=1)

    def both(self, idx) -> np.ndarray:
        """Indices listed for the subject's right side, plus their mirror partners."""
        idx = np.asarray(idx)
        return np.unique(np.concatenate([idx, self.mirror[idx]]))

    def _tris_inside(self, loop) -> np.ndarray:
        centroid = self.vertices[self.triangles].mean(1)[:, :2]
        return _inside(centroid, self.vertices[np.asarray(loop), :2])

    def _both_sides(self, loop) -> np.ndarray:
        return self._tris_inside(loop) | self._tris_inside(self.mirror[np.asarray(loop)])

    # ---- triangle regions (boolean masks over triangles) ------------------------------------------
    @cached_property
    def eye_opening(self) -> np.ndarray:
        """0 = not an eye, 1 = subject's right eye opening, 2 = left (covered by lid triangles in the mesh)."""
        loop = EYE_LOWER0 + EYE_UPPER0[::-1]
        return self._tris_inside(loop) * 1 + self._tris_inside(self.mirror[np.asarray(loop)]) * 2

    @cached_property
    def mouth_interior(self) -> np.ndarray:
        return self._tris_inside(LIPS_UPPER_INNER + LIPS_LOWER_INNER[1:-1])

    @cached_property
    def lips(self) -> np.ndarray:
        return self._tris_inside(LIPS_UPPER_OUTER + LIPS_LOWER_OUTER[1:-1]) & ~self.mouth_interior

    @cached_property
    def brows(self) -> np.ndarray:
        return self._both_sides(BROW)

    # ---- vertex sets ------------------------------------------------------------------------------
    @cached_property
    def _lip_vertices(self) -> np.ndarray:
        on = np.zeros(len(self.vertices), bool)
        on[np.unique(self.triangles[self.lips])] = True
        on[np.asarray(LIPS_UPPER_OUTER + LIPS_LOWER_OUTER + LIPS_UPPER_INNER + LIPS_LOWER_INNER)] = True
        on[self.both(MOUTH_CORNERS)] = False  # corners belong to both lips: rig them on their own
        return on

    @cached_property
    def upper_lip(self) -> np.ndarray:
        """Boolean mask of upper-lip vertices (outer edge, inner edge and between; corners excluded)."""
        return self._lip_vertices & (self.vertices[:, 1] > self._lip_line(self.vertices[:, 0]))

    @cached_property
    def lower_lip(self) -> np.ndarray:
        return self._lip_vertices & ~self.upper_lip

    def _lip_line(self, x: np.ndarray) -> np.ndarray:
        """y of the line where the lips meet: the midpoints of the upper and lower inner lip edges."""
        up = self.vertices[np.asarray(LIPS_UPPER_INNER)]
        lo = self.vertices[np.asarray(LIPS_LOWER_INNER[::-1])]  # same x order as ``up``
        mid = (up + lo) / 2
        return np.interp(x, mid[:, 0], mid[:, 1])


@lru_cache(maxsize=1)
def canonical_mesh() -> FaceMesh:
    """The neutral canonical face mesh (loaded once from the package data)."""
    a = _asset()
    return FaceMesh(a["vertices"].astype(np.float32), a["triangles"].astype(np.int32), a["uvs"].astype(np.float32))
