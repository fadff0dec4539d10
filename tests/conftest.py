"""Shared fixtures: one small synthetic cohort and its packed store per test session (< 1 s to build), a
builder for fake BioVid-layout trees (what real recordings with externally extracted faces look like), and
the one set of tiny models (a real Denoiser with every weight random; real checkpoints saved from it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from paindiffusion.cohort import write_cohort
from paindiffusion.dataset import pack

COHORT_SUBJECTS, COHORT_MINUTES, COHORT_SEED = 6, 3.0, 1
TINY_SHAPE = dict(width=32, depth=1, heads=2, max_tokens=16)


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
    return PainModel(random_denoiser(FACS.dim, seed), st, spec, FACS, SamplerSettings(**{"levels": 2, "context": 2, **sampler}),
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
    """A real 256 KiB tmpfs (needs root and mount; skipped with the reason otherwise)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}): full/read-only FS not tested")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
