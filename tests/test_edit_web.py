"""The demo's edit panel end to end in Debian's headless chromium (playwright-core, as tests/test_live_web.py): the
real DemoServer with the shipped model on 127.0.0.1; the last seconds of the live face and an uploaded file are
edited with the panel's controls, previewed beside the original, scrubbed and downloaded (tests/web/edit_e2e.mjs)."""

from __future__ import annotations


import numpy as np
import pytest

from test_live_web import drive, pytestmark  # noqa: F401  (the same skip rules and slow mark)

SIZE = 192


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    from paindiffusion.checkpoint import PainModel
    from paindiffusion.generate import generate_sequence
    from paindiffusion.live.server import DemoServer
    from paindiffusion.stimulus import protocol_trace

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("edit_e2e")
    model = PainModel.load()
    upload = generate_sequence(protocol_trace(10.0, seed=4), "high", model=model, seed=4).save(out / "upload.npz")
    result = drive(DemoServer(model, port=0, size=SIZE), "edit_e2e.mjs", out, upload, timeout=300,
                   screenshot=("edit_panel.png", "edit_panel.png"))
    return result, out


def test_live_face_is_edited_with_the_panels_controls_and_downloaded(run):
    from paindiffusion.checkpoint import PainModel
    from paindiffusion.sequence import FaceSequence

    r, out = run
    assert r["outside"] == [] and r["live_errors"] == []
    src, res = r["live"]["source"], r["live"]["result"]
    assert 6 * 25 <= src["frames"] <= 30 * 25 and res["frames"] == src["frames"]  # the last seconds of the live face
    assert r["strength_shown"] == "0.75" and res["levels_rerun"] == 6  # the slider's strength: 6 of 8 levels
    edited = FaceSequence.load(out / "live_edit.npz")
    assert r["live_download"] == "edited.npz" and len(edited) == src["frames"]
    assert edited.meta["strength"] == 0.75 and edited.meta["expressiveness"] == PainModel.load().spec.presets["low"]
    assert np.allclose(edited.pspi, res["pspi"], atol=2e-3)  # the file holds what the panel plotted


def test_preview_shows_the_original_beside_the_edit_and_scrubs(run):
    from PIL import Image

    from paindiffusion.render import FaceRig, Renderer
    from paindiffusion.sequence import FaceSequence

    r, out = run
    assert r["preview"] == [2 * SIZE, SIZE]
    frame = r["scrubbed"]
    assert frame == r["live"]["result"]["frames"] // 2
    shot = np.asarray(Image.open(out / "preview.png").convert("RGB"), np.float32)
    assert shot.shape == (SIZE, 2 * SIZE, 3)
    edited = FaceSequence.load(out / "live_edit.npz").frames[frame]
    with Renderer(SIZE) as renderer:
        want = renderer.render(FaceRig().deform(edited)[0]).astype(np.float32)
    err = np.abs(shot[:, SIZE:] - want)  # the right half is the edit at the scrubbed frame (JPEG aside)
    assert err.mean() < 2.5 and np.percentile(err, 99) < 40


def test_uploaded_file_keeps_its_kept_frames_bit_for_bit(run):
    from paindiffusion.sequence import FaceSequence

    r, out = run
    original = FaceSequence.load(out / "upload.npz")
    edited = FaceSequence.load(out / "upload_edit.npz")
    kept = np.zeros(len(original), bool)
    kept[0:50] = kept[150:200] = True  # the panel's "0-2,6-8"
    assert r["upload"]["keep_s"] == [[0.0, 2.0], [6.0, 8.0]] and len(edited) == len(original)
    assert np.array_equal(edited.frames[kept], original.frames[kept])
    assert (edited.frames[~kept] != original.frames[~kept]).any(axis=1).mean() > 0.5
    rows = (out / "upload_edit.facs.csv").read_text().splitlines()
    assert len(rows) == len(original) + 1  # a header and one row per frame: the same writer as 'generate'


def test_bad_input_on_the_panel_is_one_line_and_the_edit_stays(run):
    r, _ = run
    keep_error, file_error = r["errors"][-2:]
    assert "--keep range 0-99 s reaches past the end" in keep_error
    assert file_error.startswith("the uploaded file:") and "\n" not in file_error
    assert r["status"] == file_error
