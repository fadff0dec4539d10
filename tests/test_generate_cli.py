"""``paindiffusion generate`` and ``render`` end to end with a tiny saved checkpoint: stimulus files at any rate
(comma or tab separated), the BioVid protocol, the controls, seeds, mp4 output, and one-line errors that leave
no output file behind.

Each real-CLI subprocess costs ~3 s (importing torch), so the happy paths and two error cases run as real
subprocesses; the rest of the error table calls ``paindiffusion.cli.main`` in-process (the same entry point,
argument parsing and error handling the console script uses)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli, cli_here, tiny_model as make_tiny
from paindiffusion.checkpoint import PainModel
from paindiffusion.conditions import ConditionSpec
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS
from paindiffusion.generate import generate_sequence, rule_based_sequence
from paindiffusion.biovid import FPS

torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead (and the CPU is shared)

PRESETS = {"low": 0.4, "medium": 1.5, "high": 3.7}


def tiny_model() -> PainModel:
    return make_tiny(0, spec=ConditionSpec(stimulus_mean=36.0, stimulus_std=5.0, presets=dict(PRESETS)),
                     mean=torch.full((FACS.dim,), 0.8), std=torch.full((FACS.dim,), 0.6), levels=2, context=2)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("ckpt") / "model")


def write_csv(path: Path, t, v, sep=",", header=("time", "temperature")) -> Path:
    rows = [sep.join(header)] + [f"{a:.5f}{sep}{b:.3f}" for a, b in zip(t, v)]
    path.write_text("\n".join(rows) + "\n")
    return path


def ramp(rate: float, seconds: float, t0: float = 0.0):
    t = t0 + np.arange(int(round(seconds * rate)) + 1) / rate
    v = 32.0 + 14.0 * np.clip(np.sin((t - t0) / seconds * np.pi), 0, None) ** 2  # 32 → 46 → 32 °C
    return t, v


def load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["meta"] = json.loads(str(d["meta"]))
    return d


def expected_stimulus(t, v):
    """stimulus_from_csv's rule: 25 fps from the first to the last time stamp, linear interpolation."""
    t, v = np.round(t, 5), np.round(v, 3)  # what the file holds
    n = int(np.floor((t[-1] - t[0]) * FPS)) + 1
    return np.interp(t[0] + np.arange(n) / FPS, t, v)


def only_visible(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ---- happy paths -----------------------------------------------------------------------------------------
def test_stimulus_csv_10hz_comma_to_npz(tmp_path, ckpt):
    t, v = ramp(10, 3.0, t0=1.3)  # starts at 1.3 s: resampling runs from the first time stamp
    src = write_csv(tmp_path / "stim.csv", t, v)
    out = tmp_path / "out" / "face.npz"
    r = cli("generate", "--stimulus", src, "--checkpoint", ckpt, "-o", out, "--seed", 1)
    assert r.returncode == 0, r.stderr
    assert "76 frames" in r.stdout
    z = load_npz(out)
    want = expected_stimulus(t, v)
    assert len(want) == 3 * 25 + 1
    assert z["frames"].shape == (76, FACS.dim) and z["frames"].dtype == np.float32
    assert list(z["channels"]) == list(FACS.channels)
    assert z["stimulus"].shape == (76,) and z["pspi"].shape == (76,)
    np.testing.assert_allclose(z["stimulus"], want, atol=1e-4)
    assert np.isfinite(z["frames"]).all() and np.isfinite(z["pspi"]).all()
    np.testing.assert_allclose(z["pspi"], FACS.pspi(z["frames"]), atol=1e-4)  # PSPI belongs to these frames
    assert z["meta"]["fps"] == 25 and z["meta"]["seed"] == 1 and z["meta"]["emotion"] == "Neutral"
    assert z["meta"]["expressiveness"] == pytest.approx(PRESETS["medium"])  # the default is the checkpoint's preset
    assert only_visible(out.parent) == ["face.npz"]


def test_stimulus_tsv_32hz_to_csv(tmp_path, ckpt):
    t, v = ramp(32, 2.5)
    src = write_csv(tmp_path / "stim_temp.csv", t, v, sep="\t")
    out = tmp_path / "face.csv"
    r = cli("generate", "--stimulus", src, "--checkpoint", ckpt, "-o", out, "--expressiveness", "high")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    assert header == ["frame", "time", "stimulus", "pspi", *FACS.channels]
    a = np.array([ln.split(",") for ln in lines[1:]], float)
    want = expected_stimulus(t, v)
    assert len(a) == len(want) == int(np.floor(2.5 * 25)) + 1
    np.testing.assert_array_equal(a[:, 0], np.arange(len(a)))
    np.testing.assert_allclose(a[:, 1], np.arange(len(a)) / 25, atol=0.006)
    np.testing.assert_allclose(a[:, 2], want, atol=2e-3)
    assert np.isfinite(a[:, 3]).all() and (a[:, 3] >= 0).all()
    assert sorted(os.listdir(tmp_path)) == ["face.csv", "stim_temp.csv"]


def test_protocol_controls_and_seeds(tmp_path, ckpt, capsys):
    a = tmp_path / "a.npz"
    r = cli("generate", "--protocol", "biovid", "--seconds", 8, "--checkpoint", ckpt, "-o", a,
            "--expressiveness", 3.5, "--emotion", "Sadness", "--seed", 7)
    assert r.returncode == 0, r.stderr
    za = load_npz(a)
    assert za["frames"].shape == (200, FACS.dim) and za["stimulus"].shape == (200,) and za["pspi"].shape == (200,)
    assert za["meta"]["expressiveness"] == 3.5 and za["meta"]["emotion"] == "Sadness" and za["meta"]["seed"] == 7
    s = za["stimulus"]
    # 8 s hold no whole BioVid episode (3-8 s baseline, then ramp + 4 s plateau + ramp): the baseline
    assert np.isfinite(s).all() and 30 <= s.min() and s.max() <= 55
    # the same arguments again (in-process this time): the very same frames
    b = tmp_path / "b.npz"
    code, _, err = cli_here(capsys, "generate", "--protocol", "biovid", "--seconds", 8, "--checkpoint", ckpt, "-o", b,
                               "--expressiveness", "3.5", "--emotion", "Sadness", "--seed", 7)
    assert code == 0, err
    zb = load_npz(b)
    for k in ("frames", "stimulus", "pspi"):
        np.testing.assert_array_equal(za[k], zb[k], err_msg=k)
    # another seed: other frames (the protocol's schedule is drawn from the seed too)
    c = tmp_path / "c.npz"
    code, _, err = cli_here(capsys, "generate", "--protocol", "biovid", "--seconds", 8, "--checkpoint", ckpt, "-o", c,
                               "--expressiveness", "3.5", "--emotion", "Sadness", "--seed", 8)
    assert code == 0, err
    zc = load_npz(c)
    assert zc["frames"].shape == (200, FACS.dim)
    assert np.abs(zc["frames"] - za["frames"]).mean() > 1e-3
    # the controls reach the model: another emotion / expressiveness on the same seed and stimulus changes the face
    for extra, meta in ((["--emotion", "Happiness"], {"emotion": "Happiness"}),
                        (["--expressiveness", "low"], {"expressiveness": PRESETS["low"]})):
        d = tmp_path / "d.npz"
        code, _, err = cli_here(capsys, "generate", "--protocol", "biovid", "--seconds", 8, "--checkpoint", ckpt, "-o", d,
                                   "--expressiveness", "3.5", "--emotion", "Sadness", "--seed", 7, "--overwrite", *extra)
        assert code == 0, err
        zd = load_npz(d)
        for k, v in meta.items():
            assert zd["meta"][k] == pytest.approx(v) if isinstance(v, float) else zd["meta"][k] == v
        np.testing.assert_array_equal(zd["stimulus"], za["stimulus"])
        assert not np.array_equal(zd["frames"], za["frames"]), extra


def test_rule_based_mp4_and_render(tmp_path, ckpt, capsys):
    import av

    mp4 = tmp_path / "x.mp4"
    r = cli("generate", "--rule-based", "--protocol", "biovid", "--seconds", 4, "-o", mp4, "--size", 64)
    assert r.returncode == 0, r.stderr
    with av.open(str(mp4)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        assert st.average_rate == 25
    assert len(frames) == 100 and frames[0].shape == (64, 64, 3)
    assert frames[0].std() > 5  # a picture, not a blank frame
    # render: a generated npz (model output) → mp4 through the real CLI, with the side-by-side panel
    seq = tmp_path / "seq.npz"
    code, _, err = cli_here(capsys, "generate", "--protocol", "biovid", "--seconds", 2, "--checkpoint", ckpt, "-o", seq)
    assert code == 0, err
    vid = tmp_path / "seq.mp4"
    r = cli("render", seq, "-o", vid, "--size", 64, "--side-by-side")
    assert r.returncode == 0, r.stderr
    with av.open(str(vid)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        assert st.average_rate == 25
    assert len(frames) == 50 and frames[0].shape[1] == 64 and frames[0].shape[0] > 64  # the panel adds rows
    assert sorted(os.listdir(tmp_path)) == ["seq.mp4", "seq.npz", "x.mp4"]


# ---- bad inputs: one line, exit ≠ 0, no output ------------------------------------------------------------
def _stim(tmp: Path, text: str) -> Path:
    p = tmp / "stim.csv"
    p.write_text(text)
    return p


GOOD_ROWS = "time,temperature\n0,32\n0.5,40\n1.0,45\n1.5,32\n"

BAD_STIMULUS = {  # case: (file text, words the message must contain)
    "NaN temperature": ("time,temperature\n0,32\n0.5,nan\n1.0,45\n", ["NaN"]),
    "non-monotonic time": ("time,temperature\n0,32\n0.5,40\n0.4,45\n1.0,33\n", ["strictly increasing"]),
    "60 C": ("time,temperature\n0,32\n0.5,60\n1.0,45\n", ["60", "outside 20-55"]),
    "15 C": ("time,temperature\n0,15\n0.5,32\n1.0,45\n", ["15", "outside 20-55"]),
    "missing temperature column": ("time,temp\n0,32\n0.5,40\n", ["missing column 'temperature'"]),
    "empty file": ("", ["empty"]),
    "single row": ("time,temperature\n0,32\n", ["at least two samples"]),
}


@pytest.mark.parametrize("case", list(BAD_STIMULUS))
def test_bad_stimulus_file(tmp_path, ckpt, capsys, case):
    text, words = BAD_STIMULUS[case]
    src = _stim(tmp_path, text)
    out = tmp_path / "o" / "face.npz"
    code, stdout, err = cli_here(capsys, "generate", "--stimulus", src, "--checkpoint", ckpt, "-o", out)
    lines = err.splitlines()
    assert code != 0 and len(lines) == 1, err
    assert str(src) in lines[0], lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in err and stdout == ""
    assert not out.exists() and not out.parent.exists()
    assert sorted(os.listdir(tmp_path)) == ["stim.csv"]


BAD_ARGS = {  # case: (extra arguments, output name, words the message must contain)
    "unknown emotion": (["--emotion", "Joy"], "face.npz", ["Joy"]),
    "expressiveness huge": (["--expressiveness", "huge"], "face.npz", ["huge", "low"]),
    "expressiveness 20": (["--expressiveness", "20"], "face.npz", ["20", "0-16"]),
    "unknown output type": ([], "face.xyz", ["face.xyz", "unknown output type"]),
    "side-by-side with npz": (["--side-by-side"], "face.npz", ["--side-by-side", ".mp4"]),
    "stimulus and protocol": (["--protocol", "biovid"], "face.npz", ["either"]),
    "unknown protocol": (["--protocol", "foo"], "face.npz", ["'foo'"]),
    "missing checkpoint": (["--checkpoint", "{tmp}/nowhere"], "face.npz", ["nowhere", "missing"]),
    "corrupt checkpoint": (["--checkpoint", "{tmp}/bad"], "face.npz", ["bad", "model.safetensors"]),
}


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_arguments(tmp_path, ckpt, capsys, case):
    import shutil

    extra, name, words = BAD_ARGS[case]
    src = _stim(tmp_path, GOOD_ROWS)
    shutil.copytree(ckpt, tmp_path / "bad")
    (tmp_path / "bad" / "model.safetensors").write_bytes(os.urandom(3000))
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if case == "unknown protocol":
        args = ["generate", "--checkpoint", ckpt, "-o", tmp_path / "o" / name, *extra]
    else:
        args = ["generate", "--stimulus", src, *(["--checkpoint", ckpt] if "--checkpoint" not in extra else []),
                "-o", tmp_path / "o" / name, *extra]
    code, stdout, err = cli_here(capsys, *args)
    lines = err.splitlines()
    assert code != 0 and len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in err and stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["bad", "stim.csv"]  # no output folder, no hidden .part files


def test_errors_through_the_real_process(tmp_path, ckpt):
    """The console entry point itself: status 2, one stderr line, nothing written."""
    src = _stim(tmp_path, "time,temperature\n0,32\n0.5,nan\n1.0,45\n")
    r = cli("generate", "--stimulus", src, "--checkpoint", ckpt, "-o", tmp_path / "face.npz")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and str(src) in r.stderr and "NaN" in r.stderr, r.stderr
    (tmp_path / "bad").mkdir()
    for f in ckpt.iterdir():
        (tmp_path / "bad" / f.name).write_bytes(f.read_bytes())
    w = tmp_path / "bad" / "model.safetensors"
    w.write_bytes(b"\x00garbage" * 400)
    r = cli("generate", "--protocol", "biovid", "--seconds", 2, "--checkpoint", tmp_path / "bad", "-o", tmp_path / "face.mp4")
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "model.safetensors" in r.stderr and "corrupt" in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad", "stim.csv"]


# ---- library level ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("trace, words", [
    (np.array([], np.float32), "empty"),
    (np.array([32.0, np.nan, 40.0], np.float32), "NaN"),
    (np.array([32.0, 40.0, 57.0], np.float32), "outside 20-55"),
    (np.array([19.0, 32.0, 40.0], np.float32), "outside 20-55"),
    (np.array([32.0, np.inf], np.float32), "inf"),
])
def test_library_rejects_bad_traces(trace, words):
    model = tiny_model()
    with pytest.raises(PainDiffusionError, match=words):
        generate_sequence(trace, model=model)
    with pytest.raises(PainDiffusionError, match=words):
        rule_based_sequence(trace)


def test_library_sequences_follow_the_trace():
    trace = np.concatenate([np.full(30, 32.0), np.full(40, 47.0), np.full(30, 32.0)]).astype(np.float32)
    seq = generate_sequence(trace, "high", "Fear", seed=3, model=tiny_model())
    assert len(seq) == 100 and seq.frames.shape == (100, FACS.dim)
    np.testing.assert_array_equal(seq.stimulus, trace)
    assert seq.meta["emotion"] == "Fear" and seq.meta["expressiveness"] == pytest.approx(PRESETS["high"])
    rb = rule_based_sequence(trace, 6.0, "Sadness", seed=3)
    assert len(rb) == 100 and rb.meta["source"] == "rule-based" and rb.meta["emotion"] == "Sadness"
    assert rb.pspi[30:70].mean() > rb.pspi[:25].mean()  # the rules respond to the heat
    with pytest.raises(PainDiffusionError, match="Joy"):
        rule_based_sequence(trace, "medium", "Joy")
    with pytest.raises(PainDiffusionError, match="0-16"):
        generate_sequence(trace, 17.0, model=tiny_model())
