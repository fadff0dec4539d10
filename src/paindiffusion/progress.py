"""Progress bars (tqdm) for long work: generate, edit, render, cohort, pack, extract, evaluate, study make. The one
mechanism: every bar of the package comes from :func:`progress` (training's is Lightning's, shown when
:func:`enabled`).

Bars go to stderr and only when it is a terminal; ``paindiffusion --quiet`` (or :func:`set_quiet`) turns
them off, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """True when a bar would be shown: not quiet and stderr is a terminal."""
    return not _quiet and sys.stderr.isatty()


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, unit: str = "it",
             show: bool = True):
    """``tqdm`` over ``iterable`` (or a manual bar with ``total``), silent when :func:`enabled` is False or a caller
    asks for no bar (``show`` False, e.g. ``run_evaluation(progress=False)``)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not (show and enabled()), leave=False,
                dynamic_ncols=True)
