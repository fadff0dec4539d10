"""Editing with tiny models (quick): the rolling schedule, strength 0, kept frames, soft edges, extension, inputs,
conditions, the cost in model calls, and the ``edit`` command's outputs and one-line refusals. What a trained
model does with an edit (expressiveness, joins, re-timing, acted video) is in tests/test_edit_shipped.py."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import cli, cli_here, tiny_model
from test_generate_cli import load_npz, only_visible, write_csv
from paindiffusion.edit import edit, keep_ranges, levels_rerun, load_source, parse_keep, start_levels, strength_levels
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS, FLAME
from paindiffusion.generate import generate_sequence
from paindiffusion.sampling import RollingSchedule, karras_sigmas, pyramid_levels, sample_levels, sample_rolling
from paindiffusion.sequence import FaceSequence
from paindiffusion.stimulus import protocol_trace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return tiny_model(levels=4, context=2)


@pytest.fixture(scope="module")
def seq(model) -> FaceSequence:
    return generate_sequence(protocol_trace(12.0, seed=2), "high", model=model, seed=3)


# ---- the schedule and its runner ------------------------------------------------------------------------
@pytest.mark.parametrize("per_row", [1, 2, 3])
def test_rolling_schedule_from_level_zero_is_the_streams_pyramid(per_row):
    s = RollingSchedule(torch.zeros(40, dtype=torch.long), 5, 4, per_row)
    want = pyramid_levels(40, 5, 4, uncertainty=1 / per_row)
    got = torch.stack([s.levels(r) for r in range(s.rows)])
    assert torch.equal(got, want)


def test_rolling_schedule_moves_each_frame_once_per_level_from_its_start():
    start = torch.tensor([2] * 8 + [5] * 6 + [0] * 6 + [3] * 4)  # L = 5: kept frames sit at 5
    s = RollingSchedule(start, 5, 4, per_row=1)
    rows = torch.stack([s.levels(r) for r in range(s.rows)])
    assert torch.equal(rows[0], start) and (rows[-1] == 5).all()
    steps = rows[1:] - rows[:-1]
    assert ((steps == 0) | (steps == 1)).all()  # never back up, never skip a level
    assert torch.equal(steps.sum(0), 5 - start)  # each level once, from its start
    assert (steps[:, 8:14] == 0).all()  # the kept frames never move
    for r in range(s.rows - 1):  # every frame that moves lies in the window, which is the stream's size at most
        a, b = s.window(r, context=2)
        moving = torch.nonzero(steps[r]).flatten()
        assert (b - a) % 4 == 0 and (b - a) // 4 <= 2 + s.depth * s.per_row
        assert len(moving) == 0 or (a <= moving.min() and moving.max() < b)


def test_windowed_runner_does_what_the_whole_matrix_does():
    """With a per-frame denoiser (no frame sees another) the windows must give exactly the full-matrix result."""
    sig = karras_sigmas(4)
    start = torch.tensor([1] * 12 + [4] * 8 + [0] * 12)
    sched = RollingSchedule(start, 4, 4, per_row=1)

    def model(x, sigma, cond):
        return 0.6 * x / (1 + sigma[..., None])

    x0 = torch.randn(1, 32, 3, generator=torch.Generator().manual_seed(0)) * sig[start][None, :, None]
    full = sample_levels(model, x0.clone(), sig, torch.stack([sched.levels(r) for r in range(sched.rows)]), None)
    windowed = sample_rolling(model, x0.clone(), sig, sched, lambda a, b: None, context=2)
    assert torch.equal(full, windowed)


def test_edit_costs_about_half_the_model_calls_of_generation_at_strength_half(model):
    """Cost in model calls, counted (no clock): a minute of face, the stream's 4 levels vs 2 re-run."""
    calls = []
    hook = model.denoiser.register_forward_hook(lambda *_: calls.append(1))
    try:
        seq3 = generate_sequence(protocol_trace(60.0, seed=1), model=model)
        generated = len(calls)
        calls.clear()
        edit(seq3, strength=0.5, model=model, desc=None)
    finally:
        hook.remove()
    assert 0.4 * generated <= len(calls) <= 0.6 * generated, (len(calls), generated)


# ---- strength, kept frames, soft edges, extension ----------------------------------------------------------
def test_strength_zero_returns_the_input_unchanged(model, seq):
    out = edit(seq, strength=0.0, expressiveness="low", emotion="Anger", model=model, desc=None)
    assert np.array_equal(out.frames, seq.frames) and np.array_equal(out.stimulus, seq.stimulus)
    assert out.meta["levels_rerun"] == 0 and out.meta["emotion"] == "Anger"
    assert strength_levels(0.06, 8) == 0 and strength_levels(0.07, 8) == 1  # rounded to the σ levels


def test_kept_frames_are_bit_identical_and_the_rest_is_remade(model, seq, tmp_path):
    out = edit(seq, strength=1.0, expressiveness="low", keep="0-2.5, 6.1-8", model=model, seed=1, desc=None)
    kept = np.zeros(len(seq), bool)
    kept[0:62] = kept[152:200] = True  # round(2.5·25) = 62, round(6.1·25) = 152
    assert np.array_equal(out.frames[kept], seq.frames[kept])
    assert (out.frames[~kept] != seq.frames[~kept]).any(axis=1).all()
    assert out.meta["keep_s"] == [[0.0, 2.48], [6.08, 8.0]]  # the frames kept, in seconds
    back = FaceSequence.load(out.save(tmp_path / "e.npz"))
    assert np.array_equal(back.frames[kept], seq.frames[kept])


@pytest.mark.parametrize("sampler", [dict(order=2), dict(phase_filter=4.0), dict(guidance_max_sigma=3.0), dict(ramp="stack")])
def test_every_sampler_setting_edits_and_keeps_kept_frames(model, seq, sampler):
    import dataclasses

    settings = dataclasses.replace(model.sampler, **sampler)
    out = edit(seq, strength=0.75, keep="1-3", model=model, settings=settings, seed=5, desc=None)
    plain = edit(seq, strength=0.75, keep="1-3", model=model, seed=5, desc=None)
    assert np.array_equal(out.frames[25:75], seq.frames[25:75]) and not np.array_equal(out.frames, plain.frames)


def test_soft_edge_next_to_kept_frames():
    kept = np.zeros(16, bool)
    kept[6:9] = True
    assert levels_rerun(kept, 3).tolist() == [3, 3, 2, 2, 1, 1, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3]  # one level per 2 frames
    assert levels_rerun(np.zeros(5, bool), 4).tolist() == [4] * 5
    # the sweep: a lead-in at the first frame's level, the input, appended frames from pure noise, whole stacks
    start = start_levels(kept[:14], 3, 3, lead=6, n_out=16, group=4)
    assert len(start) == 24 and start[:6].tolist() == [0] * 6 and start[20:].tolist() == [0] * 4
    assert start[6:20].tolist() == (3 - levels_rerun(kept[:14], 3)).tolist()


def test_extension_continues_the_input(model, seq):
    out = edit(seq, strength=0.0, extend=3.3, model=model, seed=2, desc=None)
    n = len(seq)
    assert len(out) == n + 82 and np.array_equal(out.frames[:n], seq.frames)
    assert np.all(out.stimulus[n:] == seq.stimulus[-1])  # the input's stimulus, held
    assert np.abs(np.diff(out.frames[n:], axis=0)).sum() > 0
    hot = np.concatenate([seq.stimulus, np.full(100, 46.0, np.float32)])
    warm = edit(seq, strength=0.5, stimulus=hot, extend=4.0, model=model, desc=None)
    assert np.array_equal(warm.stimulus, hot) and warm.meta["extend_s"] == 4.0


def test_conditions_default_to_the_inputs_own(model, seq, packed_dir):
    out = edit(seq, strength=0.5, model=model, desc=None)
    assert out.meta["expressiveness"] == pytest.approx(min(seq.meta["expressiveness"], 3.86))
    assert out.meta["emotion"] == seq.meta["emotion"] and out.meta["threshold"] == seq.meta["threshold"]
    bare = FaceSequence(FACS, seq.frames)  # no stimulus, no meta: the conditions are unknown
    out = edit(bare, strength=0.5, model=model, desc=None)
    assert out.meta["expressiveness"] is None and out.meta["emotion"] is None and out.stimulus is None
    assert out.meta["stimulus_known"] is False
    rec = load_source(packed_dir, "s002")
    assert rec.stimulus is not None and rec.meta["emotion"] is not None and rec.meta["expressiveness"] is not None
    with pytest.warns(Warning, match="held"):  # a stimulus 4 s short of the sequence: its last value is held
        out = edit(seq, stimulus=seq.stimulus[:-100], model=model, desc=None)
    assert np.all(out.stimulus[-100:] == seq.stimulus[-101])


# ---- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep, words", [
    ("0-40", "reaches past the end"), ("5-2", "end after it starts"), ("a-b", "START-END"), ("1-2;3-4", "START-END"),
    ([(1, "x")], "not two numbers")])
def test_bad_keep_ranges(keep, words):
    with pytest.raises(PainDiffusionError, match=words):
        parse_keep(keep, 12.0)


@pytest.mark.parametrize("strength", [-0.1, 1.01, float("nan"), "0.5", True])
def test_bad_strength(strength):
    with pytest.raises(PainDiffusionError, match="strength"):
        strength_levels(strength, 8)


def test_sequences_the_model_cannot_edit(model):
    with pytest.raises(PainDiffusionError, match="face space 'flame'"):
        edit(FaceSequence(FLAME, np.zeros((50, FLAME.dim), np.float32)), model=model, desc=None)
    with pytest.raises(PainDiffusionError, match="30 fps"):
        edit(FaceSequence(FACS, np.zeros((50, FACS.dim), np.float32), fps=30), model=model, desc=None)
    assert keep_ranges(" 0-1.5 ,2-3") == [(0.0, 1.5), (2.0, 3.0)]


# ---- the command -------------------------------------------------------------------------------------------
def test_edit_command_writes_every_output_generate_writes(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "in.npz"
    code, _, err = cli_here(capsys, "generate", "--protocol", "biovid", "--seconds", 10, "--checkpoint", tiny_checkpoint,
                               "-o", src, "--expressiveness", "high")
    assert code == 0, err
    stim = write_csv(tmp_path / "later.csv", np.arange(0, 12.01, 0.1), np.where(np.arange(121) > 60, 45.0, 32.0))
    out = tmp_path / "out" / "e.npz"
    r = cli("edit", src, "-o", out, "--checkpoint", tiny_checkpoint, "--strength", 0.75, "--expressiveness", "low",
            "--emotion", "Sadness", "--keep", "0-2", "--stimulus", stim, "--extend", 2, "--seed", 4)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "300 frames (12.0 s)" in r.stdout and "2 of 2 noise levels" in r.stdout
    z, z_in = load_npz(out), load_npz(src)
    assert np.array_equal(z["frames"][:50], z_in["frames"][:50])
    assert z["meta"]["emotion"] == "Sadness" and z["meta"]["strength"] == 0.75 and z["meta"]["edited"] == str(src)
    assert z["stimulus"][-1] == pytest.approx(45.0) and only_visible(out.parent) == ["e.npz"]
    for name in ("e.csv", "e.arkit.json", "e.facs.csv"):
        code, _, err = cli_here(capsys, "edit", src, "-o", tmp_path / name, "--checkpoint", tiny_checkpoint)
        assert code == 0, err
    assert len(json.loads((tmp_path / "e.arkit.json").read_text())["frames"]) == 250


def _refused(args, capsys, folder) -> str:
    before = only_visible(folder)
    code, out, err = cli_here(capsys, *args)
    assert code == 2 and out == "" and err.startswith("error:") and err.count("\n") == 1, (code, out, err)
    assert only_visible(folder) == before  # nothing written, no temporary left
    return err


def test_edit_command_refuses_bad_input_in_one_line(tmp_path, tiny_checkpoint, capsys, packed_dir):
    src = generate_sequence(protocol_trace(6.0), model=tiny_model()).save(tmp_path / "in.npz")
    flame = FaceSequence(FLAME, np.zeros((60, FLAME.dim), np.float32)).save(tmp_path / "flame.npz")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    base = ["edit", "-o", tmp_path / "out.npz", "--checkpoint", tiny_checkpoint]
    cases = [
        ([flame], "face space 'flame'"),
        ([src, "--keep", "0-2,5-9"], "reaches past the end"),
        ([src, "--strength", "1.5"], "strength 1.5"),
        ([src, "--strength", "-0.2"], "strength -0.2"),
        ([src, "--keep", "two-three"], "START-END"),
        ([src, "--emotion", "Joyful"], "Joyful"),
        ([src, "--guide-video", tmp_path / "broken.mp4"], "(SOURCE) or --guide-video"),
        ([], "(SOURCE) or --guide-video"),
        ([packed_dir], "pass --recording"),
        (["--guide-video", src], "--guide-video takes a video"),
    ]
    for extra, words in cases:
        err = _refused(base + extra, capsys, tmp_path)
        assert words in err, (extra, err)
    # an unreadable video through the real process: MediaPipe's native start-up notices do not reach the user
    before = only_visible(tmp_path)
    r = cli(*base, "--guide-video", tmp_path / "broken.mp4")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:"), r.stderr
    assert "broken.mp4" in r.stderr or "MediaPipe" in r.stderr  # cannot decode it (without MediaPipe: cannot track)
    assert only_visible(tmp_path) == before and not os.path.exists(tmp_path / "out.npz")


def test_progress_bar_on_a_terminal(model, seq, monkeypatch, capsys):
    import paindiffusion.progress as progress

    monkeypatch.setattr(progress, "enabled", lambda: True)
    edit(seq, strength=0.5, model=model)
    assert "editing" in capsys.readouterr().err


def test_the_frame_ramp_schedule_is_the_streams_and_moves_each_frame_a_quarter_level_from_its_neighbour():
    """ramp 'frame' (SamplerSettings.ramp): a grid of levels × group values, frames one grid value apart, each row
    moving every frame one level (group values); from pure noise it is the stream's frame ramp, from other starts
    each frame still goes down monotonically to clean, kept frames never move, and the windows do what the
    whole matrix does."""
    g, L = 4, 3
    start = torch.tensor([0] * 8 + [L * g] * 8 + [2 * g] * 8 + [0] * 8)
    s = RollingSchedule(start, L * g, g, per_row=1, ramp="frame")
    rows = torch.stack([s.levels(r) for r in range(s.rows)])
    assert torch.equal(rows[0], start) and (rows[-1] == L * g).all()
    steps = rows[1:] - rows[:-1]
    assert (steps >= 0).all() and (steps <= g).all() and (steps[:, 8:16] == 0).all()
    fresh = rows[:, :8][(rows[:, :8] > 0).all(1) & (rows[:, :8] < L * g).all(1)]
    assert len(fresh) and (fresh.diff(dim=1) == -1).all()  # neighbouring frames one grid value apart
    sig = karras_sigmas(L * g)

    def model(x, sigma, cond):
        return 0.6 * x / (1 + sigma[..., None])

    x0 = torch.randn(1, 32, 3, generator=torch.Generator().manual_seed(0)) * sig[start][None, :, None]
    full = sample_levels(model, x0.clone(), sig, rows, None)
    windowed = sample_rolling(model, x0.clone(), sig, s, lambda a, b: None, context=2)
    assert torch.equal(full, windowed)
