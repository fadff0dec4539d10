"""The all-or-nothing writers every output uses, and the one overwrite policy (docs/design.md §10).

* :func:`atomic_file` and :func:`atomic_directory` build the output under a temporary name in the target's
  own folder and rename it into place only when it is complete: an error, Ctrl-C, SIGTERM or a kill never
  leaves a half-written file. Temporary names are unpredictable (``.pdtmp.<pid>.<random>.<name>``), created
  exclusively (``O_EXCL``) without following symlinks, and fsynced before the rename.
* One overwrite policy for folders and files. Folders we create hold a marker file (:data:`MARKER`) that records
  their kind; ``overwrite`` replaces only a folder of the same kind (:func:`check_output_dir`), and an existing
  file only if it is ours of the same type (:func:`check_output_file`). Never an input of the command (by
  resolved path, symlinks followed, and by file identity: :func:`check_not_input`), the working directory or a
  folder above it. A long job's folder is claimed atomically and locked while it writes (:func:`claim_folder`,
  :func:`folder_lock`).
* Stale temporaries are swept on the next write into the same folder: an entry named with our prefix whose
  writer process is gone and which is older than :data:`STALE_AFTER_S` (a killed run's leftovers).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import PainDiffusionError, os_error

TMP_PREFIX = ".pdtmp."
MARKER = ".paindiffusion-output"  # in every folder we write; what ``overwrite`` is allowed to replace
STALE_AFTER_S = 600.0  # a temporary older than this, whose process is gone, is a killed run's leftover

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(folder: Path, now: float | None = None) -> list[Path]:
    """Remove our temporaries in ``folder`` left by killed runs: name ``.pdtmp.<pid>.…``, that process gone,
    last modified more than :data:`STALE_AFTER_S` ago. Returns what was removed; never raises."""
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TMP_PREFIX):
            continue
        try:
            pid = int(entry.name[len(TMP_PREFIX):].split(".", 1)[0])
            st = entry.stat(follow_symlinks=False)
        except (ValueError, OSError):
            continue
        if pid == os.getpid() or _pid_alive(pid) or now - st.st_mtime < STALE_AFTER_S:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _tmp_name(path: Path, tag: str = "") -> Path:
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}.{secrets.token_hex(6)}{tag}.{path.name}")


def _prepare_parent(path: Path) -> None:
    """Create the target's folder (one line if a part of it is a file) and sweep stale temporaries there."""
    parent = path.parent
    for p in (parent, *parent.parents):
        if p.exists() and not p.is_dir():
            raise PainDiffusionError(f"{p} is a file, not a folder; choose another output path", path)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, parent, "cannot create the output folder") from None
    sweep_stale(parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, text: bool = False):
    """Yield an open file (binary, or text with ``newline=""`` for csv) for ``path``; it appears under ``path``
    only if the block succeeds. A symlink already at ``path`` is replaced, its target never written."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise PainDiffusionError("the output is a folder; give a file name", path)
    _prepare_parent(path)
    tmp = _tmp_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any ordinary file
    except OSError as e:
        raise os_error(e, path) from None
    f = os.fdopen(fd, "w" if text else "wb", **({"newline": "", "encoding": "utf-8"} if text else {}))
    try:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
            f.close()
            if path.is_dir() and not path.is_symlink():
                raise PainDiffusionError("the output is a folder; give a file name", path)
            os.replace(tmp, path)
        except OSError as e:
            raise os_error(e, path) from None
        _fsync_dir(path.parent)
    finally:
        if not f.closed:
            try:
                f.close()
            except OSError:
                pass
        try:
            os.unlink(tmp)
        except OSError:
            pass


def marker_kind(folder: Path) -> str | None:
    """The kind of output recorded in ``folder``'s :data:`MARKER` ("cohort", "packed dataset", "training run",
    "checkpoint", "evaluation report"); None when there is no readable marker."""
    try:
        doc = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def is_ours(folder: Path, kind: str | None = None, known_files: tuple[str, ...] = ()) -> bool:
    """A folder we wrote: it holds :data:`MARKER` (of ``kind``, when given), or, without a marker (a checkpoint of
    an older release), only ``known_files``."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return kind is None or marker_kind(folder) == kind
    names = {p.name for p in folder.iterdir()}
    return bool(known_files) and names <= set(known_files) and bool(names)


def identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file or folder ``path`` names, symlinks followed; None if there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def overlapping_input(out: Path, inputs) -> Path | None:
    """The first input that is the output, lies inside it or holds it. Paths are compared resolved (symlinks of
    the inputs followed, so a link into the output counts as the output) and by file identity (a hard link,
    a bind mount or another spelling of the same file)."""
    real, same = Path(out).resolve(), identity(out)
    for i in inputs:
        ri = Path(i).resolve()
        if real == ri or real in ri.parents or ri in real.parents or (same is not None and identity(i) == same):
            return Path(i)
    return None


def check_not_input(out: Path, inputs) -> None:
    """Refuse an output that is (or holds, or lies in) one of the command's inputs: it is never written."""
    hit = overlapping_input(out, inputs)
    if hit is not None:
        raise PainDiffusionError(f"the output overlaps the input {hit}; write to a separate path", out)


def _nested_output(folder: Path) -> Path | None:
    """An output of ours inside ``folder`` (a training run's model, a report in a cohort): replacing the
    folder would delete it too."""
    for root, dirs, files in os.walk(folder):
        if root != str(folder) and MARKER in files:
            return Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
    return None


def check_output_dir(out: Path, overwrite: bool, inputs: tuple = (), known_files: tuple[str, ...] = (),
                     kind: str = "output") -> None:
    """Refuse an output folder that may not be (re)written: a file; a non-empty folder without ``overwrite``;
    with ``overwrite``, anything that is not a ``kind`` we wrote, an input, the working directory or a folder
    above it, or a folder that holds another of our outputs."""
    out = Path(out)
    if out.is_symlink():
        raise PainDiffusionError("the output is a symbolic link; give a real folder path", out)
    if out.exists() and not out.is_dir():
        raise PainDiffusionError("output exists and is not a folder; choose another path", out)
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise PainDiffusionError("output folder exists and is not empty; choose another path or pass --overwrite", out)
    real = out.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise PainDiffusionError("--overwrite would delete the working directory or a folder above it; "
                                 "give a new folder for the output", out)
    check_not_input(out, inputs)
    if not is_ours(out, None, known_files):
        raise PainDiffusionError(f"paindiffusion replaces only folders written by paindiffusion (they hold {MARKER}); "
                                 "this one was not, so it is left alone: choose another path", out)
    if not is_ours(out, kind, known_files):
        raise PainDiffusionError(f"paindiffusion replaces only a {kind} written by paindiffusion; this folder holds a "
                                 f"{marker_kind(out) or 'paindiffusion output of unknown kind'}, so it is left alone: "
                                 "choose another path", out)
    nested = _nested_output(out)
    if nested is not None:
        raise PainDiffusionError(f"it holds another paindiffusion output ({nested}, a {marker_kind(nested)}) that "
                                 "replacing it would delete; move that away or choose another path", out)


def check_output_file(out: Path, overwrite: bool, inputs: tuple = (), kind: str = "output file",
                      recognise=None) -> None:
    """The file counterpart of :func:`check_output_dir`: an input is never written; an existing file is
    replaced only with ``overwrite`` and only if ``recognise(out)`` says it is a ``kind`` we wrote."""
    out = Path(out)
    if out.is_dir() and not out.is_symlink():
        raise PainDiffusionError("the output is a folder; give a file name", out)
    check_not_input(out, inputs)
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise PainDiffusionError("output file exists; choose another path or pass --overwrite", out)
    if out.is_symlink() or recognise is None or not recognise(out):
        raise PainDiffusionError(f"--overwrite replaces only a {kind} written by paindiffusion; this file is not "
                                 "one, so it is left alone: choose another path", out)


def claim_folder(out: Path, kind: str, inputs: tuple = ()) -> Path:
    """A folder that a long job writes into directly (a training run, extracted faces): new or empty, or a
    ``kind`` of ours (it is continued, e.g. resumed). Never an input, an unmarked folder or another kind; marked as ours. A new
    folder appears with its marker in one rename, so a refused or failed claim leaves nothing."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise PainDiffusionError("the output exists and is not a folder; choose another path", out)
    check_not_input(out, inputs)
    if out.exists() and any(out.iterdir()) and not is_ours(out, kind):
        what = marker_kind(out)
        raise PainDiffusionError(f"folder holds a {what} of paindiffusion, not a {kind}; choose a new folder" if what
                                 else f"folder is not empty and was not written by paindiffusion (no {MARKER}); "
                                 "choose a new folder", out)
    if out.is_dir() and (out / MARKER).is_file():
        return out
    try:
        with atomic_directory(out, kind, overwrite=False):  # an empty folder is replaced by the marked one
            pass
    except PainDiffusionError:
        if not (out.is_dir() and is_ours(out, kind)):  # else another process claimed it first (a cluster's shards)
            raise
    return out


LOCK = ".paindiffusion-lock"


@contextmanager
def folder_lock(folder: Path, what: str):
    """Hold an exclusive lock on ``folder`` (``flock`` on :data:`LOCK` inside it) while the block runs: a
    second writer is refused at once, in one line, instead of both writing the same files."""
    import fcntl

    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise os_error(e, path, "cannot lock the folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            raise PainDiffusionError(f"another {what} (process {holder}) is writing into this folder; wait for it "
                                     "to finish or choose another folder", folder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield folder
        finally:
            try:
                os.unlink(path)  # before unlocking: a later writer starts from a fresh lock file
            except OSError:
                pass
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(out: Path, kind: str = "output", overwrite: bool = True, inputs: tuple = (),
                     known_files: tuple[str, ...] = ()):
    """Build a folder under a temporary name beside ``out``; it replaces ``out`` only if the block succeeds,
    so an error (or a kill) never leaves a half-written dataset, cohort or checkpoint behind. The folder gets
    :data:`MARKER` naming ``kind``; an existing ``out`` is replaced only as :func:`check_output_dir` allows."""
    out = Path(out)
    check_output_dir(out, overwrite, inputs, known_files, kind)
    _prepare_parent(out)
    tmp = _tmp_name(out)
    try:
        tmp.mkdir(mode=0o755)
    except OSError as e:
        raise os_error(e, out) from None
    old = None
    try:
        try:
            yield tmp
            (tmp / MARKER).write_text(json.dumps({"written_by": "paindiffusion", "kind": kind}) + "\n")
            check_output_dir(out, overwrite, inputs, known_files, kind)  # still allowed after the (long) build
            if out.exists():
                old = _tmp_name(out, ".old")
                os.replace(out, old)  # set aside, so the swap is one rename and the old one goes only after it
            os.replace(tmp, out)
        except OSError as e:
            if old is not None and not out.exists():
                os.replace(old, out)
                old = None
            raise os_error(e, out) from None
        _fsync_dir(out.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
