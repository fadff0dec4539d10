"""One exception type for everything a user can get wrong, and all-or-nothing folder writes.

The CLI prints ``str(err)`` as a single line and exits with status 2, so every message names the
problem (and the file, where there is one) and says how to fix it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


class PainDiffusionError(ValueError):
    """A user-facing error: bad input, missing file, mismatched checkpoint."""

    def __init__(self, message: str, path: object | None = None):
        message = " ".join(str(message).split())  # always one line
        super().__init__(f"{path}: {message}" if path is not None else message)


@contextmanager
def atomic_directory(out: Path):
    """Build a folder under a temporary name beside ``out``; it replaces ``out`` only if the block succeeds,
    so an error (or a kill) never leaves a half-written dataset, cohort or checkpoint behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
