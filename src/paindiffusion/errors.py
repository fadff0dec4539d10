"""One exception type for everything a user can get wrong.

The CLI prints ``str(err)`` as a single line and exits with status 2, so every message names the
problem (and the file, where there is one) and says how to fix it.
"""

from __future__ import annotations


class PainDiffusionError(ValueError):
    """A user-facing error: bad input, missing file, mismatched checkpoint."""

    def __init__(self, message: str, path: object | None = None):
        message = " ".join(str(message).split())  # always one line
        super().__init__(f"{path}: {message}" if path is not None else message)
