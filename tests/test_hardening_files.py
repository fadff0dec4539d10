"""No data loss: --overwrite replaces only what we wrote, every file is written through
one atomic helper (unique exclusive temp, no symlink following), SIGTERM to a real process leaves nothing
half-written, killed runs' temporaries are swept, training resume never unpickles, and write errors (a full
or read-only file system, a file in the path, a folder as output) are one line.

Real files, real subprocesses and signals, and a real small tmpfs where this machine lets us mount one."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, cli_here, cli_process, one_line, refused
from paindiffusion.errors import PainDiffusionError
from paindiffusion.files import MARKER, STALE_AFTER_S, TMP_PREFIX, atomic_file, sweep_stale
from paindiffusion.facespace import FACS
from paindiffusion.sequence import FaceSequence


def sequence(n: int = 50, seed: int = 0) -> FaceSequence:
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(FACS.low), np.asarray(FACS.high)
    frames = (lo + (hi - lo) * rng.uniform(0.2, 0.4, (n, FACS.dim))).astype(np.float32)
    return FaceSequence(FACS, frames, np.full(n, 40.0, np.float32))


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- --overwrite replaces only what we wrote --------------------------------------------------------------
def test_overwrite_never_deletes_what_we_did_not_write(tmp_path, cohort_dir, capsys, monkeypatch):

    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("precious")
    # the working directory, and a folder above it
    monkeypatch.chdir(work)
    refused(capsys, "cohort", ".", "--subjects", 1, "--minutes", 1, "--overwrite", words=["working directory"])
    refused(capsys, "cohort", "..", "--subjects", 1, "--minutes", 1, "--overwrite", words=["working directory"])
    monkeypatch.chdir(tmp_path)
    # the input of pack (also a folder we wrote: the overlap rule comes first)
    raw_before = snapshot(cohort_dir)
    refused(capsys, "pack", cohort_dir, "-o", cohort_dir, "--overwrite", words=["overlaps the input"])
    refused(capsys, "pack", cohort_dir, "-o", cohort_dir / "s001", "--overwrite", words=["overlaps the input"])
    assert snapshot(cohort_dir) == raw_before
    # an unrelated, unmarked folder
    refused(capsys, "cohort", work, "--subjects", 1, "--minutes", 1, "--overwrite", words=[MARKER])
    assert (work / "notes.txt").read_text() == "precious" and sorted(os.listdir(work)) == ["notes.txt"]
    # a training run into a foreign folder is refused too (it would write checkpoints among the user's files)
    packed = tmp_path / "packed"
    assert cli_here(capsys, "pack", cohort_dir, "-o", packed)[0] == 0
    refused(capsys, "train", packed, "--out", work, "--steps", 1, words=["not written by paindiffusion"])
    refused(capsys, "train", packed, "--out", packed / "run", "--steps", 1, words=["overlaps the input"])
    # what we wrote is replaced
    assert (packed / MARKER).is_file()
    code, _, err = cli_here(capsys, "pack", cohort_dir, "-o", packed, "--overwrite", "--seed", 3)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "work"]  # no temp folder left


def test_checkpoint_save_refuses_a_foreign_folder(tmp_path):
    from conftest import tiny_model

    m = tiny_model()
    target = tmp_path / "model"
    target.mkdir()
    (target / "thesis.tex").write_text("x")
    with pytest.raises(PainDiffusionError, match="only folders written by paindiffusion"):
        m.save(target)
    assert sorted(os.listdir(target)) == ["thesis.tex"]
    m.save(tmp_path / "ok")
    m.save(tmp_path / "ok")  # ours: replaced


# ---- one atomic writer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["s.npz", "s.csv", "s.arkit.json", "s.facs.csv", "fig.png"])
def test_a_planted_symlink_is_replaced_not_followed(tmp_path, name):
    from paindiffusion.plots import plot_stimulus_response
    from paindiffusion.render import save_output

    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    out = tmp_path / "out" / name
    out.parent.mkdir()
    out.symlink_to(victim)
    # the old fixed temporary names, planted as symlinks, must not matter either
    for old in (f".{name}.part", f".{name}.part{Path(name).suffix}"):
        (out.parent / old).symlink_to(victim)
    seq = sequence()
    if name.endswith(".png"):
        plot_stimulus_response(out, seq.stimulus, seq.pspi, 25)
    else:
        save_output(out, seq)
    assert victim.read_text() == "do not touch"
    assert out.is_file() and not out.is_symlink() and out.stat().st_size > 100
    assert not [p for p in out.parent.iterdir() if p.name.startswith(TMP_PREFIX)]


def _write_many(path: str, seed: int, n: int) -> None:
    for _ in range(n):
        sequence(2000, seed).save(path)


def test_two_writers_to_one_path_leave_one_whole_file(tmp_path):
    """Two processes write different sequences to the same path at once: the file is always one of the two,
    complete (fixed temp names made them write into the same temporary and corrupt it)."""
    import multiprocessing as mp

    path = tmp_path / "same.npz"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), s, 15)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = FaceSequence.load(path).frames
    assert any(np.array_equal(got, sequence(2000, s).frames) for s in (1, 2))
    assert sorted(os.listdir(tmp_path)) == ["same.npz"]


def test_atomic_file_is_exclusive_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with atomic_file(target) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert oct(target.stat().st_mode & 0o777) != "0o600"  # an ordinary file, not a private temp


# ---- SIGTERM to a real process -----------------------------------------------------------------------------
def _wait_for(pred, timeout: float = 60.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_like_ctrl_c_leaves_nothing(tmp_path, sig, code):
    """Signal ``paindiffusion cohort`` while its temporary folder exists: exit 143/130, one line, no output
    and no temporary left. (5000 subjects: the build must outlast the poll; with 200 a fast machine could finish
    and rename the folder between the poll and the signal, which then leaves the complete output.)"""
    p = cli_process("cohort", tmp_path / "c", "--subjects", "5000", "--minutes", "3", stderr=subprocess.PIPE, text=True)
    try:
        started = _wait_for(lambda: any(x.name.startswith(TMP_PREFIX) for x in tmp_path.iterdir()))
        assert started and p.poll() is None, "the cohort finished or never started writing"
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


def test_numpy_modules_imported_lazily_are_imported_before_the_signal_handlers():
    """numpy imports numpy.random on first use (the cohort's first subject, just after its temporary folder
    appears); a signal that lands inside that import is swallowed and the command runs on (the test above then
    times out). The CLI imports it before installing its handlers."""
    code = ("import signal, sys\nimport paindiffusion.cli as c\nseen = []\n"
            "def spy(sig, handler):\n    seen.append(('numpy.random' in sys.modules, 'numpy.fft' in sys.modules))\n"
            "c.signal.signal = spy\nsys.argv = ['paindiffusion', '--help']\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\nprint(seen)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.stdout.strip().splitlines()[-1] == "[(True, True), (True, True)]", r.stdout + r.stderr


# ---- stale temporaries of killed runs ---------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_are_swept_on_the_next_write(tmp_path):
    dead, old = _dead_pid(), time.time() - STALE_AFTER_S - 60
    stale_dir = tmp_path / f"{TMP_PREFIX}{dead}.aaaa.cohort"
    stale_dir.mkdir()
    (stale_dir / "big.npy").write_bytes(b"x" * 1000)
    stale_file = tmp_path / f"{TMP_PREFIX}{dead}.bbbb.face.mp4"
    stale_file.write_bytes(b"x")
    fresh = tmp_path / f"{TMP_PREFIX}{dead}.cccc.face.npz"  # a dead writer, but recent: kept for now
    fresh.write_bytes(b"x")
    live = tmp_path / f"{TMP_PREFIX}{os.getppid()}.dddd.face.npz"  # a live process's: never touched
    live.write_bytes(b"x")
    foreign = tmp_path / ".face.npz.part"  # not our prefix
    foreign.write_bytes(b"x")
    for p in (stale_dir, stale_file, live):
        os.utime(p, (old, old))
    sequence().save(tmp_path / "new.npz")  # any write into the folder sweeps it
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([fresh.name, live.name, foreign.name, "new.npz"])
    assert sweep_stale(tmp_path, now=time.time() + STALE_AFTER_S + 1) == [fresh]


# ---- resume never unpickles --------------------------------------------------------------------------------
class _Payload:
    def __init__(self, flag: str):
        self.flag = flag

    def __reduce__(self):
        return (open, (self.flag, "w"))


def test_resume_never_runs_a_pickle(tmp_path, packed_dir):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / MARKER).write_text('{"written_by": "paindiffusion", "kind": "training run"}')
    flag = tmp_path / "pwned"
    with open(run / "checkpoints" / "last.ckpt", "wb") as f:
        pickle.dump({"state_dict": _Payload(str(flag))}, f)
    # torch's opt-out variable must not re-enable unpickling through Lightning
    r = cli("train", packed_dir, "--out", run, "--steps", 1, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    one_line(r, "last.ckpt", "delete it to start over")
    assert not flag.exists()


# ---- write errors: one line, nothing left ----------------------------------------------------------------
def test_full_and_read_only_file_systems(small_fs, tmp_path):
    big = sequence(20000)
    big.save(tmp_path / "big.npz")
    r = cli("render", tmp_path / "big.npz", "-o", small_fs / "out.csv")
    one_line(r, "disk is full", str(small_fs / "out.csv"))
    assert os.listdir(small_fs) == []  # no partial file, no temporary
    r = cli("cohort", small_fs / "c", "--subjects", 4, "--minutes", 3)
    one_line(r, "disk is full")
    assert os.listdir(small_fs) == []
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)]).returncode == 0
    r = cli("render", tmp_path / "big.npz", "-o", small_fs / "x.arkit.json")
    one_line(r, "read-only")


def test_paths_that_cannot_be_written(tmp_path):
    src = tmp_path / "s.npz"
    sequence().save(src)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.csv").mkdir()
    one_line(cli("render", src, "-o", tmp_path / "afile" / "out.csv"), "is a file, not a folder")
    one_line(cli("render", src, "-o", tmp_path / "adir.csv"), "is a folder")
    one_line(cli("cohort", tmp_path / "afile" / "c", "--subjects", 1, "--minutes", 1), "is a file, not a folder")
    assert sorted(os.listdir(tmp_path)) == ["adir.csv", "afile", "s.npz"]
    assert os.listdir(tmp_path / "adir.csv") == []
