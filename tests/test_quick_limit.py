"""The quick loop's time limit (tests/quick_limit.py, run by .ci/run with 10 s): a real pytest run in a fresh
interpreter over two tests that sleep, one marked slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SLEEPERS = """
import time
import pytest

def test_quick():
    pass

def test_sleeps_unmarked():
    time.sleep(1.0)

@pytest.mark.slow
def test_sleeps_marked():
    time.sleep(1.0)
"""


def pytest_run(folder: Path, *args) -> subprocess.CompletedProcess:
    (folder / "conftest.py").write_text("from quick_limit import *  # noqa: F401,F403\n")
    (folder / "test_sleepers.py").write_text(SLEEPERS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder),
                           "-o", "markers=slow", str(folder), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_slow_unmarked_test_fails_the_run_and_is_named(tmp_path):
    r = pytest_run(tmp_path, "--max-unmarked-s", "0.5")
    assert r.returncode == 1, r.stdout
    assert "test_sleeps_unmarked" in r.stdout and "3 passed" in r.stdout
    assert "test_sleeps_marked" not in r.stdout.split("took more than")[1] and "test_quick " not in r.stdout


def test_without_the_option_nothing_is_checked(tmp_path):
    r = pytest_run(tmp_path)
    assert r.returncode == 0 and "took more than" not in r.stdout, r.stdout
