"""Bad inputs, by class: each gets one line naming the input and exit status 2, never a traceback
and never silently wrong output. Every case writes a real file and goes through ``paindiffusion.cli.main``
(the console script's entry point, in-process to keep the suite fast). docs/bad-inputs.md lists them."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import cli_here, refused, tiny_model
from paindiffusion.checkpoint import CONFIG, WEIGHTS, PainModel
from paindiffusion.errors import PainDiffusionError, PainDiffusionWarning
from paindiffusion.facespace import FACS
from paindiffusion.sequence import FaceSequence
from paindiffusion.stimulus import stimulus_from_csv

torch.set_num_threads(1)


# ---- stimulus CSVs ------------------------------------------------------------------------------------------
GOOD = "time,temperature\n" + "".join(f"{i / 10:.1f},{32 + i % 50 / 5:.2f}\n" for i in range(200))
BAD_STIMULI = {
    "bad cell": GOOD.replace("0.3,32.60", "0.3,hot"),
    "ragged row": GOOD.replace("0.3,32.60\n", "0.3,32.60,7\n"),
    "truncated end": GOOD + "20.0",
    "non-UTF-8 byte": GOOD.replace("0.3,32.60", "0.3,32.6\xff0"),
    "underscore number": GOOD.replace("0.3,32.60", "0.3,3_2.60"),
    "decimal comma": "time;temperature\n0;32,5\n1;33,5\n",
    "NaN": GOOD.replace("0.3,32.60", "0.3,nan"),
    "500 °C": GOOD.replace("0.3,32.60", "0.3,500"),
    "time backwards": GOOD.replace("0.3,32.60", "0.1,32.60"),
    "missing column": GOOD.replace("temperature", "temp", 1),
    "header only": "time,temperature\n",
    "empty": "",
    "one sample": "time,temperature\n0,32\n",
}


@pytest.mark.parametrize("case", list(BAD_STIMULI))
def test_bad_stimulus_files(tmp_path, capsys, case):
    f = tmp_path / "stim.csv"
    f.write_bytes(BAD_STIMULI[case].encode("latin-1" if case == "non-UTF-8 byte" else "utf-8"))
    refused(capsys, "generate", "--rule-based", "--stimulus", f, "-o", tmp_path / "o.npz", words=[str(f)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stim.csv"]


def test_missing_stimulus_file_does_not_speak_of_biovid(tmp_path, capsys):
    line = refused(capsys, "generate", "--rule-based", "--stimulus", tmp_path / "nope.csv", "-o", tmp_path / "o.npz")
    assert "not found" in line and "recording" not in line and "BioVid" not in line


def test_spreadsheet_csvs_read_like_plain_ones(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text(GOOD)
    want = stimulus_from_csv(plain)
    for name, text, enc in (("bom.csv", GOOD, "utf-8-sig"), ("semi.csv", GOOD.replace(",", ";"), "utf-8"),
                            ("tab.csv", GOOD.replace(",", "\t"), "utf-8"), ("crlf.csv", GOOD.replace("\n", "\r\n"), "utf-8"),
                            ("spaces.csv", GOOD.replace(",", ", "), "utf-8")):
        (tmp_path / name).write_bytes(text.encode(enc))
        np.testing.assert_array_equal(stimulus_from_csv(tmp_path / name), want, err_msg=name)


def test_millisecond_time_column_warns(tmp_path, capsys):
    f = tmp_path / "ms.csv"
    f.write_text("time,temperature\n" + "".join(f"{i * 31.25},{32 + i % 50 / 5:.2f}\n" for i in range(20)))  # 32 Hz in ms
    code, out, err = cli_here(capsys, "generate", "--rule-based", "--stimulus", f, "-o", tmp_path / "o.npz")
    assert code == 0 and err.startswith("warning: ") and "milliseconds" in err and len(err.strip().splitlines()) == 1, err
    with pytest.warns(PainDiffusionWarning):
        stimulus_from_csv(f)


def test_long_stimulus_csv_is_read_in_bounded_memory(tmp_path):
    """200 000 samples (1 kHz, 200 s): the reader's peak Python allocation stays far below what holding the
    file's rows as strings takes (the old reader: ~70 MB here, growing with the file)."""
    f = tmp_path / "long.csv"
    t = np.arange(200_000) / 1000.0
    v = 32.0 + 10.0 * np.sin(t / 7.0) ** 2
    with open(f, "w") as fh:
        fh.write("time,temperature\n")
        for a in range(0, len(t), 50_000):
            fh.write("".join(f"{x:.3f},{y:.3f}\n" for x, y in zip(t[a:a + 50_000], v[a:a + 50_000])))
    tracemalloc.start()
    trace = stimulus_from_csv(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(trace, np.interp(np.arange(len(trace)) / 25, t, v), atol=1e-3)  # 3 decimals written
    assert len(trace) == 5000
    assert peak < 15e6, f"peak {peak / 1e6:.1f} MB"


def test_short_stimuli_are_fine_for_the_rules(tmp_path, capsys):
    f = tmp_path / "s.csv"
    f.write_text("time,temperature\n0,40\n0.5,45\n")  # 0.5 s: shorter than the response delay
    code, out, err = cli_here(capsys, "generate", "--rule-based", "--stimulus", f, "-o", tmp_path / "o.csv")
    assert code == 0, err
    assert len(FaceSequence.load(tmp_path / "o.csv")) == 13


# ---- sequence files ---------------------------------------------------------------------------------------
def _seq_npz(path: Path, fps=25, stimulus=None, pspi=None, n=30):
    frames = np.full((n, FACS.dim), 0.5, np.float32)
    arrays = {"frames": frames, "meta": np.array(json.dumps({"space": "facs", "fps": fps}))}
    if stimulus is not None:
        arrays["stimulus"] = np.full(n, stimulus, np.float32)
    if pspi is not None:
        arrays["pspi"] = np.full(n, pspi, np.float32)
    np.savez(path, **arrays)
    return path


def _good_csv(tmp_path) -> str:
    p = tmp_path / "good.csv"
    FaceSequence(FACS, np.full((30, FACS.dim), 0.5, np.float32), np.full(30, 40.0)).save(p)
    return p.read_text()


@pytest.mark.parametrize("case", ["fps 0", "fps -25", "fps 1e9", "fps 12.7", "fps text", "stimulus NaN",
                                  "stimulus 500", "pspi NaN", "pspi 99", "csv bad cell", "csv ragged",
                                  "csv truncated", "csv non-UTF-8", "csv ms time", "csv half-empty pspi",
                                  "npz garbage", "npz meta list"])
def test_bad_sequence_files(tmp_path, capsys, case):
    if case.startswith("fps"):
        f = _seq_npz(tmp_path / "s.npz", fps={"fps 0": 0, "fps -25": -25, "fps 1e9": 1e9, "fps 12.7": 12.7,
                                             "fps text": "fast"}[case])
    elif case.startswith(("stimulus", "pspi")):
        what, value = case.split()
        f = _seq_npz(tmp_path / "s.npz", **{what: float(value)})
    elif case.startswith("csv"):
        text = _good_csv(tmp_path)
        lines = text.splitlines()
        f = tmp_path / "s.csv"
        if case == "csv bad cell":
            lines[5] = lines[5].replace("0.50000", "x", 1)
        elif case == "csv ragged":
            lines[5] += ",1"
        elif case == "csv truncated":
            lines[-1] = lines[-1][:20]
        elif case == "csv ms time":
            lines = [lines[0]] + [",".join([r.split(",")[0], str(40 * i)] + r.split(",")[2:]) for i, r in enumerate(lines[1:])]
        elif case == "csv half-empty pspi":
            lines[5] = ",".join(c if k != 3 else "nan" for k, c in enumerate(lines[5].split(",")))
        data = ("\n".join(lines) + "\n").encode()
        f.write_bytes(data.replace(b"0.50000", b"0.5\xff000", 1) if case == "csv non-UTF-8" else data)
        (tmp_path / "good.csv").unlink()
    elif case == "npz garbage":
        f = tmp_path / "s.npz"
        f.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        f = tmp_path / "s.npz"
        np.savez(f, frames=np.zeros((5, FACS.dim), np.float32), meta=np.array("[1, 2]"))
    refused(capsys, "render", f, "-o", tmp_path / "o.facs.csv", words=[str(f)])
    assert not (tmp_path / "o.facs.csv").exists()


# ---- checkpoints ------------------------------------------------------------------------------------------
def _tamper(path: Path, case: str) -> None:
    cfg = json.loads((path / CONFIG).read_text())
    state = load_file(str(path / WEIGHTS))
    if case == "int weights":
        k = next(k for k in state if k.startswith("denoiser."))
        state[k] = state[k].round().to(torch.int32)
    elif case == "zero std":
        state["standardizer.std"][3] = 0.0
    elif case == "NaN weights":
        k = next(k for k in state if k.startswith("denoiser."))
        state[k][..., 0] = float("nan")
    elif case == "no sampler block":
        cfg.pop("sampler")
    elif case == "no presets":
        cfg["conditions"].pop("presets")
    elif case == "NaN statistics":
        cfg["conditions"]["stimulus_std"] = float("nan")
    elif case == "warmup 1e9":
        cfg["sampler"]["warmup"] = 10**9
    elif case == "levels 1e9":
        cfg["sampler"]["levels"] = 10**9
    elif case == "guidance text":
        cfg["sampler"]["guidance"] = "strong"
    elif case == "lags wrong":
        cfg["conditions"]["lags"] = [0, 1]
    elif case == "presets text":
        cfg["conditions"]["presets"] = {"low": "a", "medium": 1, "high": 2}
    elif case == "unknown key":
        cfg["sampler"]["levles"] = 4
    elif case == "deep nesting":
        (path / CONFIG).write_text("[" * 100_000 + "]" * 100_000)
        return
    elif case == "huge config":
        with open(path / CONFIG, "ab") as f:
            f.truncate(64 * 2**20)  # sparse: no disk used
        return
    elif case == "huge weights":
        with open(path / WEIGHTS, "ab") as f:
            f.truncate(2 * 2**30)
        return
    cfg.pop("weights_sha256", None)
    save_file(state, str(path / WEIGHTS))
    (path / CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("case", ["int weights", "zero std", "NaN weights", "no sampler block", "no presets",
                                  "NaN statistics", "warmup 1e9", "levels 1e9", "guidance text", "lags wrong",
                                  "presets text", "unknown key", "deep nesting", "huge config", "huge weights"])
def test_tampered_checkpoints(tmp_path, capsys, case):
    path = tiny_model().save(tmp_path / "model")
    _tamper(path, case)
    with pytest.raises(PainDiffusionError) as e:
        PainModel.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value), str(e.value)
    refused(capsys, "generate", "--checkpoint", path, "--protocol", "biovid", "--seconds", 2, "-o", tmp_path / "o.npz",
            words=[str(path)])


# ---- packed datasets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["truncated frames", "index garbage", "index deep", "offsets wrong",
                                  "stats missing", "label dtype"])
def test_corrupt_packed_dataset(tmp_path, capsys, packed_dir, case):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(packed_dir, d)
    meta = json.loads((d / "index.json").read_text())
    if case == "truncated frames":
        a = np.load(d / "frames.npy")
        np.save(d / "frames.npy", a[: len(a) // 2])
    elif case == "index garbage":
        (d / "index.json").write_bytes(b"\x00\xff{")
    elif case == "index deep":
        (d / "index.json").write_text("[" * 100_000)
    elif case == "offsets wrong":
        meta["recordings"][1]["offset"] += 7
    elif case == "stats missing":
        meta.pop("stats")
    else:
        np.save(d / "label.npy", np.load(d / "label.npy").astype(np.float64))
    if case in ("offsets wrong", "stats missing"):
        (d / "index.json").write_text(json.dumps(meta))
    refused(capsys, "plot", d, "-r", "s001", "-o", tmp_path / "f.png", words=[str(d)])
    refused(capsys, "train", d, "--out", tmp_path / "run", "--steps", 1, words=[str(d)])
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "run").exists()


# ---- flags ------------------------------------------------------------------------------------------------
BAD_FLAGS = [
    ("cohort", "{t}/c", "--seed", "-1"), ("cohort", "{t}/c", "--seed", str(2**63)), ("cohort", "{t}/c", "--minutes", "1e9"),
    ("cohort", "{t}/c", "--minutes", "nan"), ("cohort", "{t}/c", "--subjects", "0"),
    ("generate", "--rule-based", "-o", "{t}/o.npz", "--threads", "-1"),
    ("generate", "--rule-based", "-o", "{t}/o.mp4", "--size", "100000"),
    ("generate", "--rule-based", "-o", "{t}/o.npz", "--seconds", "nan"),
    ("generate", "--rule-based", "-o", "{t}/o.npz", "--seconds", "-3"),
    ("generate", "-o", "{t}/o.npz", "--noise-levels", "1000000000"),
    ("render", "{t}/s.npz", "-o", "{t}/o.mp4", "--size", "100000"),
    ("render", "{t}/s.npz", "-o", "{t}/o.mp4", "--size", "63"),
    ("train", "{p}", "--out", "{t}/r", "--window", "0"),
    ("train", "{p}", "--out", "{t}/r", "--window", "6"),
    ("train", "{p}", "--out", "{t}/r", "--lr", "nan"),
    ("train", "{p}", "--out", "{t}/r", "--devices", "-2"),
    ("train", "{p}", "--out", "{t}/r", "--devices", "many"),
    ("train", "{p}", "--out", "{t}/r", "--strategy", "fast"),
    ("train", "{p}", "--out", "{t}/r", "--accelerator", "quantum"),
    ("train", "{p}", "--out", "{t}/r", "--num-nodes", "0"),
    ("train", "{p}", "--out", "{t}/r", "--change-fraction", "2"),
    ("pack", "{c}", "-o", "{t}/d", "--face-space", "foo"),
    ("pack", "{c}", "-o", "{t}/d", "--val", "nan"),
    ("plot", "{p}", "-r", "s001", "-o", "{t}/f.png", "--seconds", "-5"),
    ("plot", "{p}", "-r", "s001", "-o", "{t}/f.png", "--seconds", "0"),
    ("plot", "{p}", "-r", "s001", "-o", "{t}/f.png", "--seconds", "nan"),
    ("plot", "{p}", "-r", "s001", "-o", "{t}/f.txt"),
    ("generate", "--no-such-flag"), ("no-such-command",), ("cohort",), ("train", "{p}", "--steps", "many"),
]


@pytest.mark.parametrize("args", BAD_FLAGS, ids=[" ".join(a) for a in BAD_FLAGS])
def test_bad_flags(tmp_path, capsys, packed_dir, cohort_dir, args):
    FaceSequence(FACS, np.full((8, FACS.dim), 0.5, np.float32)).save(tmp_path / "s.npz")
    before = sorted(p.name for p in tmp_path.iterdir())
    refused(capsys, *(a.format(t=tmp_path, p=packed_dir, c=cohort_dir) for a in args))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_plot_seconds_draws_only_the_requested_recording(tmp_path, capsys, packed_dir):
    code, _, err = cli_here(capsys, "plot", packed_dir, "-r", "s002", "-o", tmp_path / "f.png", "--seconds", "0.01")
    assert code == 0 and (tmp_path / "f.png").stat().st_size > 1000, err


def test_flame_npz_loads_as_a_sequence(tmp_path, capsys):
    """An avatar tool's FLAME npz (expr, jaw_pose) is a sequence too: ``render`` converts it."""
    from paindiffusion.facespace import FLAME
    from paindiffusion.render import save_output

    rng = np.random.default_rng(0)
    seq = FaceSequence(FLAME, rng.uniform(-0.5, 0.5, (12, FLAME.dim)).astype(np.float32))
    save_output(tmp_path / "a.flame.npz", seq)
    back = FaceSequence.load(tmp_path / "a.flame.npz")
    assert back.space is FLAME and back.fps == 25
    np.testing.assert_array_equal(back.frames, seq.frames)
    code, _, err = cli_here(capsys, "render", tmp_path / "a.flame.npz", "-o", tmp_path / "b.csv")
    assert code == 0, err
    np.testing.assert_allclose(FaceSequence.load(tmp_path / "b.csv").frames, seq.frames, atol=1e-5)
