"""What the file commands may write (docs/bad-inputs.md, "Overwrite, inputs and disks"): ``--overwrite``
replaces only an output of the same kind that paindiffusion wrote, a command never writes one of its own inputs
(by resolved path and file identity, symlinks of the inputs followed), a full disk is one line and leaves
nothing, a refused ``prepare-biovid`` writes nothing, and two training runs never share a folder.

Real folders, real subprocesses (a full tmpfs kills a memory-mapped writer with SIGBUS, which would take pytest
with it) and a real small tmpfs where this machine lets us mount one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, cli_here, cli_process, make_biovid_tree, one_line, refused, run_main, tiny_model
from paindiffusion.errors import PainDiffusionError
from paindiffusion.facespace import FACS
from paindiffusion.files import MARKER, TMP_PREFIX, claim_folder
from paindiffusion.sequence import FaceSequence
from test_hardening_files import snapshot

ROOT = Path(__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


# ---- --overwrite replaces only the same kind ---------------------------------------------------------------
def test_overwrite_replaces_only_an_output_of_the_same_kind(tmp_path, capsys, cohort_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = claim_folder(tmp_path / "run1", "training run")
    (run_dir / "notes.txt").write_text("a training run's files")
    model = tmp_path / "run1" / "model"
    tiny_model().save(model)
    before_run, before_model = snapshot(run_dir), snapshot(model)
    refused(capsys, "cohort", run_dir, "--subjects", 1, "--minutes", 1, "--overwrite",
            words=["replaces only a cohort", "training run"])
    refused(capsys, "pack", cohort_dir, "-o", model, "--overwrite", words=["replaces only a packed dataset", "checkpoint"])
    assert snapshot(run_dir) == before_run and snapshot(model) == before_model
    # a cohort that holds another output of ours (a run inside it) is not replaced either
    c = tmp_path / "c"
    assert cli_here(capsys, "cohort", c, "--subjects", 1, "--minutes", 1)[0] == 0
    claim_folder(c / "run", "training run")
    refused(capsys, "cohort", c, "--subjects", 1, "--minutes", 1, "--overwrite", words=["holds another paindiffusion output"])
    shutil.rmtree(c / "run")
    assert cli_here(capsys, "cohort", c, "--subjects", 1, "--minutes", 1, "--overwrite", "--seed", 2)[0] == 0  # same kind
    assert json.loads((c / MARKER).read_text())["kind"] == "cohort" and leftovers(tmp_path) == []
    # a training run continues only in a training run's folder
    with pytest.raises(PainDiffusionError, match="holds a cohort of paindiffusion, not a training run"):
        claim_folder(c, "training run")


# ---- a command never writes its own input ------------------------------------------------------------------
def test_an_output_file_is_never_an_input_and_exists_only_with_overwrite(tmp_path, capsys, packed_dir):
    stim = tmp_path / "stim.csv"
    stim.write_text("time,temperature\n0,32\n5,45\n10,32\n")
    original = stim.read_bytes()
    (tmp_path / "link.csv").symlink_to(stim)
    os.link(stim, tmp_path / "hard.csv")
    for out in (stim, tmp_path / "link.csv", tmp_path / "hard.csv"):
        for extra in ((), ("--overwrite",)):
            refused(capsys, "generate", "--rule-based", "--stimulus", stim, "-o", out, *extra, words=["input"])
    assert stim.read_bytes() == original and (tmp_path / "link.csv").is_symlink()
    # an existing file: only with --overwrite, and only one of ours of the same type
    mine = tmp_path / "face.npz"
    assert cli_here(capsys, "generate", "--rule-based", "--stimulus", stim, "-o", mine)[0] == 0
    refused(capsys, "generate", "--rule-based", "--stimulus", stim, "-o", mine, words=["exists", "--overwrite"])
    assert cli_here(capsys, "generate", "--rule-based", "--stimulus", stim, "-o", mine, "--overwrite", "--seed", 2)[0] == 0
    thesis = tmp_path / "thesis.csv"
    thesis.write_text("chapter,pages\n1,20\n")
    refused(capsys, "generate", "--rule-based", "--stimulus", stim, "-o", thesis, "--overwrite", words=["not one"])
    assert thesis.read_text() == "chapter,pages\n1,20\n"
    refused(capsys, "render", mine, "-o", mine, "--overwrite", words=["input"])
    for name in ("a.csv", "a.facs.json", "a.arkit.csv"):  # every type recognises its own files
        assert cli_here(capsys, "render", mine, "-o", tmp_path / name)[0] == 0
        assert cli_here(capsys, "render", mine, "-o", tmp_path / name, "--overwrite")[0] == 0, name
    fig = tmp_path / "f.png"
    fig.write_bytes(b"\x89PNG\r\n\x1a\n a photo of the cat")
    refused(capsys, "plot", packed_dir, "-r", "s001", "-o", fig, "--overwrite", words=["not one"])
    assert cli_here(capsys, "plot", packed_dir, "-r", "s001", "-o", tmp_path / "g.svg")[0] == 0
    assert cli_here(capsys, "plot", packed_dir, "-r", "s001", "-o", tmp_path / "g.svg", "--overwrite")[0] == 0
    assert leftovers(tmp_path) == []


def test_pack_never_deletes_recordings_linked_into_its_output(tmp_path, capsys, cohort_dir):
    """The recordings kept inside an earlier packed store, linked from the raw tree: packing onto that store
    would delete what it reads."""
    out = tmp_path / "data"
    assert cli_here(capsys, "pack", cohort_dir, "-o", out)[0] == 0
    raw = tmp_path / "raw"
    raw.mkdir()
    for d in sorted(cohort_dir.glob("s*")):
        shutil.copytree(d, out / "keep" / d.name)
        (raw / d.name).symlink_to(out / "keep" / d.name)
    kept = snapshot(out / "keep")
    refused(capsys, "pack", raw, "-o", out, "--overwrite", words=["overlaps the input"])
    assert snapshot(out / "keep") == kept
    # a single linked file is enough
    (raw / "s001").unlink()
    shutil.copytree(cohort_dir / "s001", raw / "s001")
    (raw / "s001" / "s001_face.npy").unlink()
    (raw / "s001" / "s001_face.npy").symlink_to(out / "keep" / "s001" / "s001_face.npy")
    refused(capsys, "pack", raw, "-o", out, "--overwrite", words=["overlaps the input"])
    assert snapshot(out / "keep") == kept and leftovers(tmp_path) == []


# ---- full disks ----------------------------------------------------------------------------------------------
def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:  # ENOSPC: the file system is full
        pass
    finally:
        os.close(fd)


def test_pack_onto_a_full_disk_is_one_line_and_leaves_nothing(small_fs, cohort_dir):
    r = cli("pack", cohort_dir, "-o", small_fs / "data")  # 2 MB of frames onto 256 KiB
    one_line(r, "disk is full")
    assert os.listdir(small_fs) == []


def test_train_onto_a_full_disk_leaves_no_folder(small_fs, packed_dir, capsys):
    _fill(small_fs)
    refused(capsys, "train", packed_dir, "--out", small_fs / "run", "--steps", 1, words=["disk is full"])
    assert os.listdir(small_fs) == ["filler"]


def test_a_second_training_run_into_a_busy_folder_is_refused(tmp_path, capsys, packed_dir):
    from paindiffusion.files import LOCK, folder_lock

    run_dir = claim_folder(tmp_path / "run", "training run")
    with folder_lock(run_dir, "training run"):
        assert (run_dir / LOCK).read_text() == str(os.getpid())
        line = refused(capsys, "train", packed_dir, "--out", run_dir, "--steps", 1, words=["another training run"])
        assert str(os.getpid()) in line
    assert not (run_dir / LOCK).exists() and sorted(os.listdir(run_dir)) == [MARKER]


@pytest.mark.slow
def test_two_real_training_runs_into_one_folder(tmp_path, packed_dir):
    """Two ``train`` processes into one --out: while the first runs, the second is refused in one line; the first,
    stopped with SIGTERM, leaves its folder unlocked."""
    import signal

    from paindiffusion.files import LOCK

    args = ["--quiet", "train", packed_dir, "--out", tmp_path / "run", "--steps", "100000", "--batch", "2", "--window", "32",
            "--threads", "1"]
    first = cli_process(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 120
        while not (tmp_path / "run" / LOCK).exists() and time.time() < end and first.poll() is None:
            time.sleep(0.05)
        second = cli(*args)
        assert first.poll() is None, "the first run ended before the second started"
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    finally:
        first.kill()
    one_line(second, "another training run", str(first.pid))
    assert first.returncode == 143 and not (tmp_path / "run" / LOCK).exists()


# ---- prepare-biovid: checked before anything is written ------------------------------------------------------
def _tree(root: Path, n: int = 3) -> Path:

    make_biovid_tree(root / "biovid", space="facs", recordings=tuple(f"rec{i}" for i in range(n)), seconds=12.0)
    faces = root / "faces"
    faces.mkdir()
    for d in sorted((root / "biovid").iterdir()):  # the face arrays come from "another tool"
        shutil.move(d / f"{d.name}_face.npy", faces / f"{d.name}_face.npy")
    return root / "biovid"


def test_a_refused_prepare_biovid_writes_nothing(tmp_path, capsys):
    tree = _tree(tmp_path)
    label = tree / "rec2" / "rec2_label.csv"
    label.write_text(label.read_text().replace("\t0\n", "\t7\n", 1))  # a level that does not exist
    before = sorted(os.listdir(tmp_path))
    refused(capsys, "prepare-biovid", tree, "-o", tmp_path / "data", "--faces-from", tmp_path / "faces",
            words=["rec2_label.csv", "label 7"])
    assert sorted(os.listdir(tmp_path)) == before  # no data/, no data.work/, no temporary copy
    label.write_text(label.read_text().replace("\t7\n", "\t0\n", 1))
    code, _, err = cli_here(capsys, "prepare-biovid", tree, "-o", tmp_path / "data", "--faces-from", tmp_path / "faces")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == sorted(before + ["data"])  # the raw copy was a temporary
    from paindiffusion.dataset import PackedData

    assert len(PackedData(tmp_path / "data").recordings) == 3


def test_prepare_biovid_refuses_a_recording_whose_stream_is_misnamed(tmp_path, capsys):
    tree = _tree(tmp_path)
    (tree / "rec1" / "rec1_temp.csv").rename(tree / "rec1" / "rec1_temperature.csv")
    line = refused(capsys, "prepare-biovid", tree, "-o", tmp_path / "data", "--faces-from", tmp_path / "faces",
                   words=["rec1", "rec1_temp.csv", "rec1_temperature.csv"])
    assert "rec0" not in line and not (tmp_path / "data").exists()


# ---- the expressiveness map's script -----------------------------------------------------------------------------------
SCRIPT = ROOT / "scripts" / "fit_expressiveness_map.py"


def _fit_map(*args, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def _fit_map_here(capsys, *args) -> tuple[int, str, str]:
    """The script in this process (as ``python scripts/fit_expressiveness_map.py ARGS``): no interpreter start."""
    import runpy

    return run_main(capsys, lambda: runpy.run_path(str(SCRIPT), run_name="__main__"), [SCRIPT, *args])


def test_map_script_refuses_bad_arguments_in_one_line_before_measuring(tmp_path, packed_dir, tiny_checkpoint,
                                                                                capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    (tmp_path / "empty").mkdir()
    m, d, o = tiny_checkpoint, packed_dir, tmp_path / "out"
    cases = [
        ((tmp_path / "nope", d, "-o", o), "missing"), ((m, tmp_path / "empty", "-o", o), "not a packed dataset"),
        ((m, d, "-o", o, "--recordings", 0), "--recordings"), ((m, d, "-o", o, "--points", 1), "--points"),
        ((m, d, "-o", o, "--seconds", "nan"), "--seconds"), ((m, d, "-o", o, "--threads", 0), "--threads"),
        ((m, d, "-o", m), "exists"), ((m, d, "-o", m / "mapped"), "overlaps the input"),
        ((m, d, "-o", tmp_path / "taken"), "exists"), ((m, d, "-o", o, "--points", "many"), "--points"),
        ((m, d), "-o"),
    ]
    for args, words in cases:
        code, out, err = _fit_map_here(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (args, err)
        assert "saved" not in out and not o.exists()


def test_a_checkpoint_its_loader_refuses_is_never_written(tmp_path):
    import dataclasses


    m = tiny_model()
    m.spec = dataclasses.replace(m.spec, expressiveness_map=((1.0, 1.0), (1.0, 2.0)))  # requested not increasing
    with pytest.raises(PainDiffusionError, match="would not load.*expressiveness_map.*nothing was written"):
        m.save(tmp_path / "model")
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_map_script_never_saves_a_checkpoint_that_does_not_load(tmp_path, packed_dir):
    """A model trained on a narrow expressiveness range: its map's knots round to equal values, which the
    loader refuses; the script says so in one line, writes nothing and never prints "saved"."""
    import dataclasses


    m = tiny_model()
    m.spec = dataclasses.replace(m.spec, expressiveness_range=(1.0, 1.0002))
    model = m.save(tmp_path / "narrow")
    r = _fit_map(model, packed_dir, "-o", tmp_path / "mapped", "--recordings", 2, "--points", 3, "--seconds", 20)
    one_line(r, "would not load", "expressiveness_map")
    assert "saved" not in r.stdout and not (tmp_path / "mapped").exists() and leftovers(tmp_path) == []


# ---- options checked at start, messages that name the real problem ----------------------------------------
def test_options_are_checked_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    refused(capsys, "evaluate", "--seed", -1, "-o", tmp_path / "r", words=["--seed"])
    refused(capsys, "evaluate", "--threads", 0, "-o", tmp_path / "r", words=["--threads"])
    line = refused(capsys, "evaluate", tmp_path / "afile", "-o", tmp_path / "r", words=["not a checkpoint folder"])
    assert line.startswith(f"error: {tmp_path / 'afile'}: ")  # the file given, not the folder it is in
    for workers in ("0", "-5"):
        refused(capsys, "extract", tmp_path / "afile", "-o", tmp_path / "faces", "--workers", workers, words=["--workers"])
    labels = tmp_path / "labels.csv"
    labels.write_bytes("name,emotion\nclip1,Fear\nclip2,Tr\xe4urig\n".encode("latin-1"))
    refused(capsys, "extract", tmp_path / "afile", "-o", tmp_path / "faces", "--labels", labels,
            words=["labels.csv", "not a UTF-8 text file"])
    assert sorted(os.listdir(tmp_path)) == ["afile", "labels.csv"]


def test_extract_writes_only_into_a_folder_of_extracted_faces(tmp_path, capsys):
    """extract's output follows the one overwrite policy (a claimed folder, as a training run's): never a folder
    of other files, never the folder of its inputs; the faces of an earlier run are continued."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a video")  # refused before any tracking: the folder is claimed first
    refused(capsys, "extract", video, "-o", tmp_path, words=["overlaps the input"])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    refused(capsys, "extract", video, "-o", tmp_path / "notes", words=["not written by paindiffusion"])
    assert os.listdir(tmp_path / "notes") == ["mine.txt"]
    claim_folder(tmp_path / "faces", "extracted faces")
    assert claim_folder(tmp_path / "faces", "extracted faces") == tmp_path / "faces"  # continued (a resumed run)
    claim_folder(tmp_path / "a-cohort", "cohort")
    (tmp_path / "a-cohort" / "s001").mkdir()
    refused(capsys, "extract", video, "-o", tmp_path / "a-cohort", words=["holds a cohort"])


def test_a_sequence_file_written_by_us_is_recognised(tmp_path):
    from paindiffusion.render.exports import written_by_us

    seq = FaceSequence(FACS, np.full((8, FACS.dim), 0.5, np.float32), np.full(8, 40.0, np.float32))
    seq.save(tmp_path / "a.npz")
    seq.save(tmp_path / "a.csv")
    np.savez(tmp_path / "b.npz", frames=seq.frames)
    (tmp_path / "b.csv").write_text("frame,time\n0,0\n")
    assert written_by_us(tmp_path / "a.npz") and written_by_us(tmp_path / "a.csv")
    assert not written_by_us(tmp_path / "b.npz") and not written_by_us(tmp_path / "b.csv")
