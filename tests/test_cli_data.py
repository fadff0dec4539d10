"""The real command line (a subprocess): cohort → pack → plot, determinism, and one-line errors that leave
nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import cli, make_biovid_tree


def error_lines(stderr: str) -> list[str]:
    # matplotlib may announce a one-off font-cache build on a fresh machine; that is not our output
    return [ln for ln in stderr.splitlines() if not ln.startswith("Matplotlib is building the font cache")]


def test_help_lists_the_subcommands():
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("cohort", "pack", "plot"):
        assert cmd in r.stdout
    script = Path(sys.executable).parent / "paindiffusion"
    if script.exists():  # the console script installed with the package
        r2 = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
        assert r2.returncode == 0 and "cohort" in r2.stdout and "pack" in r2.stdout


def test_cohort_pack_plot(tmp_path, cohort_dir):
    c, d, fig = tmp_path / "c", tmp_path / "d", tmp_path / "figs" / "fig.png"
    r = cli("cohort", c, "--subjects", 6, "--minutes", 3, "--seed", 1)
    assert r.returncode == 0, r.stderr
    # the CLI and the library (the session fixture, same arguments) give byte-identical files
    for f in sorted(cohort_dir.glob("*/*.csv")) + sorted(cohort_dir.glob("*/*.npy")):
        assert (c / f.relative_to(cohort_dir)).read_bytes() == f.read_bytes(), f
    r = cli("pack", c, "-o", d)
    assert r.returncode == 0, r.stderr
    assert "packed 6 recordings (27000 frames)" in r.stdout
    index = json.loads((d / "index.json").read_text())
    assert [x["name"] for x in index["recordings"]] == [f"s{i:03d}" for i in range(1, 7)]
    r = cli("plot", d, "--recording", "s002", "-o", fig)
    assert r.returncode == 0, r.stderr
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.stat().st_size > 20_000
    r = cli("plot", d, "-r", "s003", "-o", tmp_path / "short.svg", "--seconds", 30)
    assert r.returncode == 0 and (tmp_path / "short.svg").read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d", "figs", "short.svg"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["fig.png"]


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("x", 6)):
        assert cli("cohort", tmp_path / name, "--subjects", 2, "--minutes", 1, "--seed", seed).returncode == 0
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 2 + 2 * 4  # cohort.json, the marker, 4 files per recording
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a/s001/s001_temp.csv").read_bytes() != (tmp_path / "x/s001/s001_temp.csv").read_bytes()


def _drop_column(d, n):
    p = d / f"{n}_temp.csv"
    p.write_text("\n".join(ln.split("\t")[0] for ln in p.read_text().splitlines()) + "\n")


def _nan_temperature(d, n):
    p = d / f"{n}_temp.csv"
    lines = p.read_text().splitlines()
    lines[40] = lines[40].split("\t")[0] + "\tnan"
    p.write_text("\n".join(lines) + "\n")


def _label_5(d, n):
    p = d / f"{n}_label.csv"
    lines = p.read_text().splitlines()
    lines[-3] = lines[-3].split("\t")[0] + "\t5"
    p.write_text("\n".join(lines) + "\n")


def _face_width(d, n):
    np.save(d / f"{n}_face.npy", np.zeros((160, 19), np.float32))


def _face_csv_missing_channel(d, n):
    (d / f"{n}_face.npy").unlink()
    (d / f"{n}_face.csv").write_text("AU1,AU2\n0,0\n")


def _bad_emotion(d, n):
    (d / f"{n}.json").write_text(json.dumps({"face_space": "facs", "emotion": "Joy"}))


def _missing_label_file(d, n):
    (d / f"{n}_label.csv").unlink()


def _bad_pspi(d, n):
    np.save(d / f"{n}_pspi.npy", np.full(160, np.nan, np.float32))


BAD = {  # case: (mutation, file the message must name, words the message must contain)
    "missing column": (_drop_column, "r02_temp.csv", ["missing column 'temperature'"]),
    "NaN temperature": (_nan_temperature, "r02_temp.csv", ["NaN"]),
    "label outside 0-4": (_label_5, "r02_label.csv", ["label 5", "0-4"]),
    "face array width": (_face_width, "r02_face.npy", ["(160, 19)", "20"]),
    "face csv channel": (_face_csv_missing_channel, "r02_face.csv", ["lacks channels"]),
    "unknown emotion": (_bad_emotion, "r02.json", ["unknown emotion 'Joy'"]),
    "missing label file": (_missing_label_file, "r02_label.csv", ["missing file"]),
    "bad pspi": (_bad_pspi, "r02_pspi.npy", ["finite"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_line_error_and_no_output(tmp_path, case):
    mutate, fname, words = BAD[case]
    raw = make_biovid_tree(tmp_path / "raw", "facs", recordings=("r01", "r02", "r03"), seconds=6, extra_video_s=0.4)
    mutate(raw / "r02", "r02")
    out = tmp_path / "data"
    r = cli("pack", raw, "-o", out)
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert fname in lines[0] and str(raw / "r02") in lines[0], lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["raw"]  # no .part or temp folders


def test_empty_or_missing_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    for src, problem in ((tmp_path / "empty", "no recordings found"), (tmp_path / "nowhere", "not a directory")):
        r = cli("pack", src, "-o", tmp_path / "data")
        lines = r.stderr.splitlines()
        assert r.returncode != 0 and len(lines) == 1 and str(src) in lines[0] and problem in lines[0], r.stderr
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_cohort_bad_arguments(tmp_path):
    for args, problem in ((["--subjects", 0], "--subjects"), (["--minutes", 0.1], "too short"),
                          (["--seed", -3], "--seed")):
        r = cli("cohort", tmp_path / "c", *args)
        lines = r.stderr.splitlines()
        assert r.returncode != 0 and len(lines) == 1 and problem in lines[0], r.stderr
    assert os.listdir(tmp_path) == []


def test_pack_and_plot_refuse_without_clobbering(tmp_path):
    raw = make_biovid_tree(tmp_path / "raw", "flame", recordings=("r01", "r02"), seconds=6)
    assert cli("pack", raw, "-o", tmp_path / "d").returncode == 0
    before = (tmp_path / "d" / "index.json").read_bytes()
    r = cli("pack", raw, "-o", tmp_path / "d")
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1 and "--overwrite" in r.stderr
    assert (tmp_path / "d" / "index.json").read_bytes() == before
    # flame recordings without a PSPI file have nothing to plot: a clear error, no figure
    r = cli("plot", tmp_path / "d", "-r", "r01", "-o", tmp_path / "f.png")
    lines = error_lines(r.stderr)
    assert r.returncode != 0 and len(lines) == 1 and "no PSPI" in lines[0], r.stderr
    r = cli("plot", tmp_path / "d", "-r", "r09", "-o", tmp_path / "f.png")
    lines = error_lines(r.stderr)
    assert r.returncode != 0 and len(lines) == 1 and "no recording 'r09'" in lines[0], r.stderr
    assert sorted(os.listdir(tmp_path)) == ["d", "raw"]
