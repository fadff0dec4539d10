"""The study's trial plan: which trials exist, and which participant sees which trial, on which side and when.

Blocks follow the paper's study: realism as a two-alternative forced choice ("which face is the real
patient?"), reaction strength to the shown heat (5-point), diversity across tries (5-point) and an overall
choice with free text. A *cell* (a trial of the manifest) is one block × window × condition, where a condition
is a source (or a pair of sources) shown for that window.

Each participant sees every window at most once per block, so the real recording of a window never appears
in two realism trials of one person (it would give itself away as the clip that repeats). Which condition a
window gets rotates with the participant as a Latin square (Bradley 1958): participant n sees window w under
condition (w + n) mod C, so every C consecutive participants see every cell exactly once. Left/right flips
between the successive participants who see a cell, so every 2C participants see it on both sides equally.
Trial order within a block is a row of a Williams balanced Latin square (Williams 1949): each window is at
each serial position, and follows each other window, equally often over a full set of rows. The seed permutes
windows and conditions before the squares are laid, so two studies with different seeds pair differently.
The plan repeats after :func:`cycle_length` participants; at any participant count no cell, position or
serial place is more than one participant ahead of another (docs/study.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REFERENCE = "reference"  # the recording's own face sequence
STATIC = "static face"  # the catch trials' obviously lifeless face (the pool's mean face, every frame)
PAIRED = ("2afc", "choice")  # kinds that show two clips side by side


@dataclass(frozen=True)
class Block:
    name: str
    kind: str  # "2afc" (left/right), "likert" (1-5), "choice" (left/right + free text)
    question: str
    intro: str
    labels: tuple[str, str] = ("", "")  # anchors of 1 and 5 (likert)


BLOCKS = {
    "realism": Block("realism", "2afc", "Which face is the real patient?",
                     "Each trial shows two faces reacting to the same heat. One of them is a recording of a real "
                     "patient's face; the other is made by a computer. Choose the real patient."),
    "reaction": Block("reaction", "likert", "How strongly does this face react to the heat shown under it?",
                      "Each trial shows one face and, under it, the heat applied to the patient's arm. Rate how "
                      "strongly the face reacts to the heat.", ("no reaction", "very strong reaction")),
    "diversity": Block("diversity", "likert", "How different are the three faces' reactions from each other?",
                       "Each trial shows three faces made for the same patient and the same heat. Rate how different "
                       "their reactions are.", ("identical", "very different")),
    "overall": Block("overall", "choice", "Which face would you rather have on a patient simulator?",
                     "Each trial shows two computer-made faces reacting to the same heat. Choose the one you would "
                     "rather use to train clinicians, and say why if you like."),
}
ORDER = tuple(BLOCKS)  # realism first: before anyone has seen a window's real recording in another block


@dataclass(frozen=True)
class Trial:
    """A cell: ``sources`` in their unflipped order (left, right for paired kinds); ``clips`` likewise."""

    id: str
    block: str
    window: str
    sources: tuple[str, ...]
    clips: tuple[str, ...]
    catch: bool = False

    def to_json(self) -> dict:
        return {"id": self.id, "block": self.block, "window": self.window, "sources": list(self.sources),
                "clips": list(self.clips), "catch": self.catch}

    @classmethod
    def from_json(cls, d: dict) -> "Trial":
        return cls(d["id"], d["block"], d["window"], tuple(d["sources"]), tuple(d["clips"]), bool(d.get("catch", False)))


def conditions(block: str, generators: list[str], reference: bool) -> list[tuple[str, ...]]:
    """The sources a block shows for one window. ``generators[0]`` is the model; the rest are baselines."""
    if block == "realism":
        return [(REFERENCE, g) for g in generators] if reference else []
    if block == "reaction":
        return [(s,) for s in ([REFERENCE] if reference else []) + generators]
    if block == "diversity":
        return [(g,) for g in generators]
    if block == "overall":
        return [(generators[0], b) for b in generators[1:]]
    raise ValueError(block)


def williams_row(n: int, row: int) -> list[int]:
    """Row ``row`` of a Williams balanced Latin square on n items: 0, 1, n−1, 2, n−2, … shifted by the row; for
    odd n, rows n…2n−1 are the first n rows reversed (odd n needs both to balance carry-over)."""
    base = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    r = row % williams_period(n)
    seq = [(b + r) % n for b in base]
    return seq[::-1] if r >= n else seq


def williams_period(n: int) -> int:
    return n if n % 2 == 0 else 2 * n


def cycle_length(counts: dict[str, int], windows: int, catch: bool) -> int:
    """Participants after which the whole plan repeats: every block's Latin square (2C for side-by-side kinds),
    the Williams order and the catch trial's place and side."""
    periods = [williams_period(windows)]
    for name, c in counts.items():
        if c:
            periods.append(2 * c if BLOCKS[name].kind in PAIRED else c)
    if catch:
        periods += [windows, 2]
    return math.lcm(*periods)


@dataclass
class Design:
    """Everything the rows are laid from: windows, per-block conditions, catch windows and the seed."""

    windows: list[str]
    generators: list[str]
    reference: bool
    blocks: list[str]
    catch_windows: list[str]
    seed: int

    def cells(self) -> dict[str, list[tuple[str, ...]]]:
        return {b: conditions(b, self.generators, self.reference) for b in self.blocks}


def make_trials(design: Design, clip_of) -> list[Trial]:
    """Every cell of the design as a Trial; ``clip_of(block, window, source)`` names the clip to show."""
    trials = []
    for block, conds in design.cells().items():
        for w in design.windows:
            for c in conds:
                trials.append(Trial(f"t{len(trials) + 1:03d}", block, w, c, tuple(clip_of(block, w, s) for s in c)))
    if design.reference and "realism" in design.blocks:
        for w in design.catch_windows:
            c = (REFERENCE, STATIC)
            trials.append(Trial(f"t{len(trials) + 1:03d}", "realism", w, c, tuple(clip_of("realism", w, s) for s in c), True))
    return trials


def plan_rows(design: Design, trials: list[Trial]) -> list[list[dict]]:
    """One row per participant of a full cycle: ``[{"trial": id, "flip": bool}, …]`` in the order shown."""
    rng = np.random.default_rng([design.seed, 77])
    w_index = {w: int(i) for w, i in zip(design.windows, rng.permutation(len(design.windows)))}
    by_window = {(t.block, t.window, t.sources): t for t in trials if not t.catch}
    cells = design.cells()
    c_perm = {b: [int(i) for i in rng.permutation(len(c))] for b, c in cells.items()}
    offset = int(rng.integers(williams_period(len(design.windows))))
    catch = [t for t in trials if t.catch]
    cycle = cycle_length({b: len(c) for b, c in cells.items()}, len(design.windows), bool(catch))
    ordered = sorted(design.windows, key=w_index.get)  # windows by their Latin index
    rows = []
    for n in range(cycle):
        row = []
        for block in design.blocks:
            conds = cells[block]
            if not conds:
                continue
            c_n = len(conds)
            entries = []
            for pos in williams_row(len(ordered), n + offset):
                w = ordered[pos]
                wi = w_index[w]
                cond = conds[c_perm[block][(wi + n) % c_n]]
                flip = BLOCKS[block].kind in PAIRED and (wi + n // c_n) % 2 == 1
                entries.append({"trial": by_window[(block, w, cond)].id, "flip": bool(flip)})
            if block == "realism" and catch:
                t = catch[n % len(catch)]
                entries.insert(1 + n % len(design.windows), {"trial": t.id, "flip": bool(n % 2)})
            row += entries
        rows.append(row)
    return rows


def shown(trial: Trial, flip: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sources, clips) in the order the participant sees them (left → right)."""
    if flip:
        return trial.sources[::-1], trial.clips[::-1]
    return trial.sources, trial.clips
