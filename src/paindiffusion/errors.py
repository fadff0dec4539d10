"""One exception type for everything a user can get wrong, one warning type, and OSErrors said as such.

The CLI prints ``str(err)`` as a single line and exits with status 2, so every message names the
problem (and the file, where there is one) and says how to fix it (docs/design.md §10).
"""

from __future__ import annotations

import errno

class PainDiffusionError(ValueError):
    """A user-facing error: bad input, missing file, mismatched checkpoint."""

    def __init__(self, message: str, path: object | None = None):
        message = " ".join(str(message).split())  # always one line
        super().__init__(f"{path}: {message}" if path is not None else message)


class PainDiffusionWarning(UserWarning):
    """Input that is accepted but probably not what was meant (the CLI prints it as one ``warning:`` line).
    ``once`` names a kind of warning the CLI shows once per run, however often it recurs (a clamped value in
    every one of 700 generated sequences is one fact)."""

    def __init__(self, message: str, once: str | None = None):
        super().__init__(message)
        self.once = once


def warn(message: str, path: object | None = None, once: str | None = None) -> None:
    import warnings

    message = " ".join(str(message).split())
    warnings.warn(PainDiffusionWarning(f"{path}: {message}" if path is not None else message, once), stacklevel=3)


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; write elsewhere or fix the permissions",
    errno.EPERM: "permission denied; write elsewhere or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder, not a file; give a file name",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
    errno.ELOOP: "too many symbolic links; give a real path",
}


def os_error(e: OSError, path: object | None = None, doing: str = "cannot write") -> PainDiffusionError:
    """An OSError (disk full, read-only, a file in the path...) as a one-line user error."""
    where = path if path is not None else (e.filename if e.filename is not None else None)
    code = e.errno or (errno.ENOSPC if "requested and" in str(e) else -1)  # numpy's short write has no errno
    advice = _OS_ADVICE.get(code, "check the path and try again")
    return PainDiffusionError(f"{doing}: {e.strerror or e}; {advice}", where)
