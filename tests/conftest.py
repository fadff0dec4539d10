"""Shared fixtures and helpers: one small synthetic cohort and its packed store per test session (< 1 s to
build), a builder for fake BioVid-layout trees (what real recordings with externally extracted faces look like),
the one set of tiny models (a real Denoiser with every weight random; real checkpoints saved from it), the one
way to run the CLI (a fresh interpreter, or ``cli.main`` in this process), a clock for pacing tests, and the
rule for a missing tool (skipped here, a failure in CI)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from paindiffusion.cohort import write_cohort
from paindiffusion.dataset import pack
from quick_limit import pytest_addoption, pytest_runtest_logreport, pytest_sessionfinish  # noqa: F401  (hooks)

ROOT = Path(__file__).resolve().parents[1]
COHORT_SUBJECTS, COHORT_MINUTES, COHORT_SEED = 6, 3.0, 1
TINY_NET = dict(width=32, depth=1, heads=2)  # the tiny network; ModelConfig(**TINY_NET) is what tests train
TINY_SHAPE = dict(TINY_NET, max_tokens=16)  # and its window for sampling tests


# ---- a missing tool --------------------------------------------------------------------------------------------
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(available: bool, what: str) -> None:
    """Skip the test (or module) when a tool it needs is missing here, saying what installs it; in CI (``CI=true``)
    fail instead, so that CI cannot lose a subsystem (MediaPipe, chromium, footage, a tmpfs) and stay green."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {what} is missing: a missing tool is a failure in CI", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def need_module(name: str, what: str):
    """The module ``name``, or :func:`need`'s skip (a failure in CI)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, what)


MEDIAPIPE = "face tracking needs MediaPipe (scripts/setup.sh installs it)"


# ---- the CLI, as a user runs it --------------------------------------------------------------------------------
CLI_ENV = {"PYTHONWARNINGS": "ignore", "COLUMNS": "100", "OMP_NUM_THREADS": "1"}


def cli(*args, cwd=None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``paindiffusion ARGS`` in a fresh interpreter (the console script's entry point): text stdout, stderr."""
    return subprocess.run([sys.executable, "-m", "paindiffusion.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **CLI_ENV, **(env or {})}, timeout=timeout)


def cli_process(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    """``paindiffusion ARGS`` started in the background (a live command read while it runs)."""
    return subprocess.Popen([sys.executable, "-m", "paindiffusion.cli", *map(str, args)],
                            env={**os.environ, **CLI_ENV, **(env or {})}, cwd=popen.pop("cwd", ROOT), **popen)


def run_main(capsys, main, argv: list) -> tuple[int, str, str]:
    """``main()`` in this process as if started with ``argv``: (exit status, stdout, stderr)."""
    capsys.readouterr()
    old, sys.argv = sys.argv, [str(a) for a in argv]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_here(capsys, *args) -> tuple[int, str, str]:
    """``paindiffusion ARGS`` through ``cli.main`` in this process (no interpreter start): (status, stdout, stderr)."""
    from paindiffusion import cli as cli_module

    return run_main(capsys, cli_module.main, ["paindiffusion", *args])


def refused(capsys, *args, words=()) -> str:
    """``paindiffusion ARGS`` (in this process) refuses with one ``error:`` line naming ``words``, status 2."""
    code, _, err = cli_here(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def one_line(r: subprocess.CompletedProcess, *words) -> str:
    """A run (from :func:`cli`) that refused with one line naming ``words``, status 2, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ---- pacing without wall time ----------------------------------------------------------------------------------
class ManualClock:
    """A clock for pacing tests with the interface of :class:`paindiffusion.live.generator.WallClock`: a wait moves
    its time on at once, so a generator or an input runs as fast as it computes while its timing stays exact.
    Give one clock to one paced thread (two threads waiting on it would add up their waits)."""

    def __init__(self, start: float = 1000.0):
        self.t, self._lock = start, threading.Lock()

    def __call__(self) -> float:
        return self.t

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if not stop.is_set():
            with self._lock:
                self.t += max(0.0, seconds)
        return stop.is_set()


def random_denoiser(dim: int, seed: int = 0, scale: float = 0.15, **shape):
    """A tiny real Denoiser with *every* weight random (the backbone's zero-initialised output and modulation
    layers would otherwise make D(x) = c_skip·x and hide the conditions)."""
    import torch

    from paindiffusion.model import Denoiser, ModelConfig

    torch.manual_seed(seed)
    d = Denoiser(ModelConfig(dim=dim, **{**TINY_SHAPE, **shape}))
    with torch.no_grad():
        for p in d.parameters():
            p.copy_(torch.randn(p.shape) * scale)
    return d.eval()


def tiny_resting_faces() -> dict:
    """Two resting faces per emotion inside the ``facs`` space: AUs 0.1-1.5, head pose a few degrees."""
    from paindiffusion.facespace import EMOTIONS, FACS_AUS

    return {e: [[round(0.1 + 0.08 * ((k + j + r) % 18), 2) for j in range(len(FACS_AUS))] + [1.0 * r, -2.0, 0.5]
                for r in (0, 1)] for k, e in enumerate(EMOTIONS)}


def tiny_model(seed: int = 0, spec=None, mean=None, std=None, info=None, **sampler):
    """A ``facs`` PainModel around :func:`random_denoiser`; keyword arguments are sampler settings."""
    import torch

    from paindiffusion.checkpoint import PainModel
    from paindiffusion.conditions import ConditionSpec
    from paindiffusion.facespace import FACS
    from paindiffusion.model import Standardizer
    from paindiffusion.stream import SamplerSettings

    st = Standardizer(torch.linspace(0.5, 1.5, FACS.dim) if mean is None else mean,
                      torch.linspace(0.2, 2.0, FACS.dim) if std is None else std)
    spec = spec or ConditionSpec(stimulus_mean=36.5, stimulus_std=5.0, presets={"low": 0.3, "medium": 1.7, "high": 3.9})
    denoiser = random_denoiser(FACS.dim, seed)
    if denoiser.cfg.resting_face and not spec.resting_faces:  # the shipped architecture reads a resting face
        spec = dataclasses.replace(spec, resting_faces=tiny_resting_faces())
    return PainModel(denoiser, st, spec, FACS, SamplerSettings(**{"levels": 2, "context": 2, **sampler}),
                     info if info is not None else {"trained_steps": 3}).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved tiny checkpoint folder (real safetensors + config.json). Treat as read-only."""
    return tiny_model().save(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory) -> Path:
    """``paindiffusion cohort`` output: 6 subjects × 3 min, seed 1. Treat as read-only."""
    return write_cohort(tmp_path_factory.mktemp("cohort") / "raw", COHORT_SUBJECTS, COHORT_MINUTES, COHORT_SEED)


@pytest.fixture(scope="session")
def packed_dir(cohort_dir, tmp_path_factory) -> Path:
    """The cohort packed with the default split. Treat as read-only."""
    return pack(cohort_dir, tmp_path_factory.mktemp("packed") / "data")


def write_stream(path: Path, column: str, values, fmt: str = ".2f") -> None:
    lines = [f"time\t{column}"] + [f"{i / 32:.5f}\t{v:{fmt}}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


def make_biovid_tree(root: Path, space: str = "flame", recordings=("r01", "r02", "r03", "r04"),
                     seconds: float = 20.0, pspi: bool = False, face_csv: bool = False, meta: dict | None = None,
                     subjects: dict | None = None, seed: int = 0, extra_video_s: float = 0.4) -> Path:
    """A fake BioVid-Part-C tree as produced by external tools: 32 Hz streams, a face array per video frame
    (a little longer than the streams, as real videos are), optionally ``<rec>_pspi.npy`` or a face CSV."""
    from paindiffusion.facespace import get_space

    fs = get_space(space)
    rng = np.random.default_rng(seed)
    n_stream = int(seconds * 32)
    n_frames = int((seconds + extra_video_s) * 25)
    for k, name in enumerate(recordings):
        d = root / name
        d.mkdir(parents=True)
        label = np.zeros(n_stream, int)
        label[n_stream // 4: n_stream // 2] = 1 + k % 4
        temp = np.where(label > 0, 40.0 + 2 * label, 32.0) + rng.normal(0, 0.02, n_stream)
        write_stream(d / f"{name}_temp.csv", "temperature", temp)
        write_stream(d / f"{name}_label.csv", "label", label, "d")
        lo, hi = np.asarray(fs.low), np.asarray(fs.high)
        frames = (lo + (hi - lo) * rng.uniform(0.3, 0.7, (n_frames, fs.dim))).astype(np.float32)
        if face_csv:
            cols = list(fs.channels)[::-1] + ["confidence"]  # any column order, extra columns ignored
            rows = [",".join(cols)] + [",".join(f"{v:.5f}" for v in list(f[::-1]) + [0.99]) for f in frames]
            (d / f"{name}_face.csv").write_text("\n".join(rows) + "\n")
        else:
            np.save(d / f"{name}_face.npy", frames)
        if pspi:
            np.save(d / f"{name}_pspi.npy", rng.uniform(0, 4, n_frames).astype(np.float32))
        m = {"face_space": space, **(meta or {})}
        if subjects:
            m["subject"] = subjects[name]
        (d / f"{name}.json").write_text(json.dumps(m))
    return root


@pytest.fixture
def biovid_tree():
    return make_biovid_tree


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory) -> Path:
    """``study make`` with the tiny model: 2 windows (+ 1 catch window) of 2 s, 64-pixel faces, 2 tries, the three
    default baselines: 9 trials per participant. Treat as read-only; answer in a copy (``study_copy``)."""
    import torch

    from paindiffusion.study.make import make_study
    from paindiffusion.study.material import StudyConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("study") / "study"
    make_study(out, tiny_model(), StudyConfig(windows=2, seconds=2.0, size=64, tries=2))
    return out


@pytest.fixture
def study_copy(study_dir, tmp_path) -> Path:
    """A fresh copy of ``study_dir`` to serve, answer and observe."""
    import shutil

    return Path(shutil.copytree(study_dir, tmp_path / "study"))


@pytest.fixture
def small_fs(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount; :func:`need` otherwise)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    need(r.returncode == 0, f"a tmpfs mount (root; {r.stderr.strip() or 'not root'}) for the full and read-only disk tests")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
