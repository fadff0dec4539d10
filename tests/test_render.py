"""Rendering: mesh asset, AU rig, renderer pixels (where the face changes and where it must not), mp4."""

from __future__ import annotations

import numpy as np
import pytest

from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS
from paindiffusion.render import mesh as M
from paindiffusion.render.rig import FaceRig
from paindiffusion.sequence import FaceSequence


def facs_frame(**values) -> np.ndarray:
    """One facs frame from keywords like AU4=4 or head_yaw=20."""
    f = np.zeros(FACS.dim, np.float32)
    for k, v in values.items():
        f[FACS.index(k)] = v
    return f


NEUTRAL = facs_frame()
PAIN = facs_frame(AU4=4, AU6=3.5, AU7=4, AU9=3, AU10=3, AU25=2, AU26=1.5, AU20=2)  # PSPI = 4+4+3+0 = 11
SHUT = facs_frame(AU43=5)


@pytest.fixture(scope="module")
def rig():
    return FaceRig()


@pytest.fixture(scope="module")
def renderer():
    from paindiffusion.render.renderer import Renderer

    r = Renderer(256)
    yield r
    r.release()


# ---- mesh and rig ---------------------------------------------------------------------------------------
def test_mesh_asset_is_the_canonical_mesh():
    m = M.canonical_mesh()
    assert m.vertices.shape == (468, 3) and m.triangles.shape == (898, 3) and m.uvs.shape == (468, 2)
    assert m.triangles.min() == 0 and m.triangles.max() == 467
    assert np.array_equal(m.mirror[m.mirror], np.arange(468))  # exactly symmetric
    # every region exists on both sides and they do not overlap
    assert (m.eye_opening == 1).sum() == (m.eye_opening == 2).sum() > 5
    assert m.mouth_interior.sum() > 10 and m.lips.sum() > 50 and m.brows.sum() > 10
    assert not (m.lips & m.mouth_interior).any() and not (m.upper_lip & m.lower_lip).any()


def test_rig_neutral_is_rest_pose_and_batches(rig):
    v = rig.deform(np.stack([NEUTRAL, PAIN, SHUT]))
    assert v.shape == (3, 468, 3) and v.dtype == np.float32
    np.testing.assert_allclose(v[0], rig.neutral, atol=1e-5)
    np.testing.assert_allclose(rig.deform(PAIN)[0], v[1], atol=1e-5)


def test_au43_closes_both_eyes_exactly(rig):
    v = rig.deform(SHUT)[0]
    for upper, lower in ((159, 145), (386, 374)):  # upper / lower lid margin, mid-eye, right and left
        assert np.linalg.norm(rig.neutral[upper] - rig.neutral[lower]) > 0.5
        assert np.linalg.norm(v[upper] - v[lower]) < 1e-3
    squint = rig.deform(PAIN)[0]
    gap = np.linalg.norm(squint[159] - squint[145]) / np.linalg.norm(rig.neutral[159] - rig.neutral[145])
    assert 0.2 < gap < 0.8  # pain squints but does not shut the eyes


def test_rig_moves_the_regions_it_names(rig):
    n = rig.neutral
    assert rig.deform(facs_frame(AU4=5))[0][105, 1] < n[105, 1] - 0.3  # brow down
    assert rig.deform(facs_frame(AU1=5))[0][107, 1] > n[107, 1] + 0.5  # inner brow up
    assert rig.deform(facs_frame(AU26=5))[0][152, 1] < n[152, 1] - 1.5  # chin drops with the jaw
    assert rig.deform(facs_frame(AU12=5))[0][61, 0] < n[61, 0] - 0.3  # right lip corner pulled out
    assert np.allclose(rig.deform(facs_frame(AU26=5))[0][10], n[10])  # forehead stays
    yaw = rig.deform(facs_frame(head_yaw=30))[0]
    assert yaw[1, 0] > 2.0  # nose tip turns toward the subject's left (+x)
    assert rig.deform(facs_frame(head_pitch=20))[0][1, 1] < n[1, 1] - 1.0  # looks down


def test_rig_rejects_bad_frames(rig):
    with pytest.raises(PainDiffusionError):
        rig.deform(np.full(FACS.dim, 7.0))
    with pytest.raises(PainDiffusionError):
        rig.deform(np.zeros(5))


# ---- renderer ------------------------------------------------------------------------------------------
def box(renderer, vertices, ids, pad=4):
    px = renderer.project(vertices[np.asarray(ids)])
    (c0, r0), (c1, r1) = np.floor(px.min(0)).astype(int) - pad, np.ceil(px.max(0)).astype(int) + pad
    return slice(max(r0, 0), r1), slice(max(c0, 0), c1)


def changed(a, b, where) -> float:
    d = np.abs(a[where].astype(int) - b[where].astype(int)).sum(-1) > 40
    return float(d.mean())


def test_render_output_and_background(renderer, rig):
    img = renderer.render(rig.deform(NEUTRAL)[0])
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    assert (img[:8, :8] == 128).all() or (np.abs(img[:8, :8].astype(int) - 128) <= 1).all()  # mid-grey
    face = (np.abs(img.astype(int) - img[0, 0]).sum(-1) > 10).any(1)
    assert face.sum() >= 0.66 * 256  # face rows: ≥ 170 px tall at 256²


def test_pain_face_differs_where_the_rig_says(renderer, rig):
    v0, v1 = rig.deform(np.stack([NEUTRAL, PAIN]))
    a, b = renderer.render(v0), renderer.render(v1)
    brows = box(renderer, v0, M.BROW_INNER + tuple(rig.mesh.mirror[list(M.BROW_INNER)]))
    eyes = [box(renderer, v0, side) for side in (M.EYE_UPPER0 + M.EYE_LOWER0,
                                                 tuple(rig.mesh.mirror[list(M.EYE_UPPER0 + M.EYE_LOWER0)]))]
    mouth = box(renderer, v0, M.LIPS_UPPER_OUTER + M.LIPS_LOWER_OUTER)
    for where in [brows, *eyes, mouth]:
        assert changed(a, b, where) > 0.15
    # Elsewhere nothing moves: the upper forehead, the background around the head, the temples.
    top = renderer.project(v0[[10]])[0, 1]
    brow_top = renderer.project(v0[[105, 334]])[:, 1].min()
    forehead = (slice(int(top) + 4, int(top + 0.5 * (brow_top - top))), slice(96, 160))
    assert changed(a, b, forehead) < 0.01
    assert changed(a, b, (slice(0, int(top) - 2), slice(None))) == 0.0
    for temple in (234, 454):
        col, row = renderer.project(v0[[temple]])[0].astype(int)
        assert changed(a, b, (slice(row - 30, row - 10), slice(col - 8, col + 8))) < 0.02


def eye_pixels(img, where):
    """Counts of eye-white (bright, unsaturated) and iris (brown: blue < half of red) pixels."""
    p = img[where].reshape(-1, 3).astype(int)
    sclera = (p.min(1) > 175) & (p.max(1) - p.min(1) < 30)
    iris = (p[:, 0] > 30) & (p[:, 2] < 0.5 * p[:, 0])
    return int(sclera.sum()), int(iris.sum())


def test_closed_eyes_show_no_eye_white_or_iris(renderer, rig):
    v0, v_shut = rig.deform(np.stack([NEUTRAL, SHUT]))
    open_img, shut_img = renderer.render(v0), renderer.render(v_shut)
    for side in (M.EYE_UPPER0 + M.EYE_LOWER0, tuple(rig.mesh.mirror[list(M.EYE_UPPER0 + M.EYE_LOWER0)])):
        where = box(renderer, v0, side, pad=3)
        sclera, iris = eye_pixels(open_img, where)
        assert sclera > 15 and iris > 15  # the detector sees an open eye
        assert eye_pixels(shut_img, where) == (0, 0)
        # a dark lash line marks the shut lid
        assert (shut_img[where].max(-1) < 60).sum() >= 5


def test_missing_egl_is_a_one_line_error(monkeypatch):
    import moderngl

    from paindiffusion.render.renderer import Renderer

    def fail(**kw):
        raise RuntimeError("libEGL.so: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_standalone_context", fail)
    with pytest.raises(PainDiffusionError, match="apt-get install") as e:
        Renderer(64)
    assert "\n" not in str(e.value)


# ---- video ---------------------------------------------------------------------------------------------
def ramp_sequence(n=30) -> FaceSequence:
    s = np.sin(np.linspace(0, np.pi, n))[:, None]
    frames = (s * PAIN[None]).astype(np.float32)
    return FaceSequence(FACS, frames, stimulus=32 + 15 * s[:, 0])


def read_mp4(path):
    import av

    with av.open(str(path)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        return frames, st.average_rate, st.codec_context.name


def test_mp4_has_every_frame_at_25_fps(tmp_path):
    from paindiffusion.render import save_output

    seq = ramp_sequence(30)
    out = save_output(tmp_path / "face.mp4", seq, size=128)
    frames, rate, codec = read_mp4(out)
    assert len(frames) == 30 and rate == 25 and codec == "h264" and frames[0].shape == (128, 128, 3)
    assert np.abs(frames[0].astype(int) - frames[15].astype(int)).mean() > 1  # the face moves
    sbs = save_output(tmp_path / "sbs.mp4", seq, side_by_side=True, size=128)
    frames, rate, _ = read_mp4(sbs)
    assert len(frames) == 30 and rate == 25 and frames[0].shape == (128 + 48, 128, 3)
    panel0, panel29 = frames[0][128:], frames[29][128:]
    assert np.abs(panel0.astype(int) - panel29.astype(int)).sum(-1).max() > 100  # the cursor moved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.mp4", "sbs.mp4"]  # no temporary files


def test_failed_video_leaves_no_file(tmp_path):
    from paindiffusion.render.video import write_mp4

    def frames():
        for _ in range(3):
            yield np.zeros((64, 64, 3), np.uint8)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError):
        write_mp4(tmp_path / "x.mp4", frames())
    assert list(tmp_path.iterdir()) == []


def test_render_cli(tmp_path):
    import typer
    from typer.testing import CliRunner

    from paindiffusion.cli_render import render_command

    app = typer.Typer()
    app.command("render")(render_command)
    app.command("other")(lambda: None)  # two commands, so typer keeps "render" as a subcommand
    ramp_sequence(10).save(tmp_path / "seq.npz")
    r = CliRunner().invoke(app, ["render", str(tmp_path / "seq.npz"), "-o", str(tmp_path / "f.mp4"), "--size", "64"])
    assert r.exit_code == 0, r.output
    frames, rate, _ = read_mp4(tmp_path / "f.mp4")
    assert len(frames) == 10 and rate == 25
