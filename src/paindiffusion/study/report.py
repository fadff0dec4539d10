"""``paindiffusion study analyze``: the report folder (report.md/.html/.json, answers.csv, participants.csv, images/)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import PainDiffusionError  # noqa: E402
from ..files import atomic_directory  # noqa: E402
from ..evaluation.formatting import fmt, table  # noqa: E402
from ..evaluation.report import json_default, html_page  # noqa: E402
from .analyze import analyse  # noqa: E402
from .make import load_manifest  # noqa: E402
from .store import read_tables  # noqa: E402

ANSWER_COLUMNS = ("participant", "trial", "position", "block", "window", "clips", "sources", "answer", "chosen", "rating",
                  "comment", "rt_ms", "shown_at", "answered_at", "stored_at")


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f} %"


def _interval(r: dict) -> str:
    if not np.isfinite(r["lo"]):
        return f"{_pct(r['rate'])} (one participant: no interval)"
    return f"{_pct(r['rate'])} [{_pct(r['lo'])}, {_pct(r['hi'])}]"


def markdown(rep: dict, manifest: dict) -> str:
    p = rep["participants"]
    lines = [f"# Perceptual study {manifest['study_id']}", "",
             f"{p['people']} participants ({p['finished']} finished, {p['with_answers']} with answers), {rep['answers']} answers; "
             f"{rep['trials_per_participant']} trials per participant. Held-out material: {manifest['held_out']}; "
             f"model: {manifest['sources'][rep['model']]['name']}.", ""]
    if p["excluded_failed_catch"]:
        lines += [f"Excluded for failing a catch trial: {', '.join(p['excluded_failed_catch'])}.", ""]
    pref = [r for r in rep["preferences"] if not r["catch"]]
    if pref:
        lines += ["## Preference rates (people)", "",
                  "Realism: how often the source was taken for the real patient against the recording (50 % = "
                  "indistinguishable; the paper's clinicians: " f"{_pct(rep['paper_realism'][0])} ± {_pct(rep['paper_realism'][1])} "
                  "mean ± sd over participants). Overall: how often the model was chosen. Rate = mean over participants "
                  "[95 % bootstrap interval over participants]; p: exact binomial test of the pooled answers against 50 %.", "",
                  table(["block", "source", "against", "rate [95 % CI]", "mean ± sd over participants", "pooled", "p (vs 50 %)",
                          "participants"],
                         [[r["block"], r["source"], r["against"], _interval(r), f"{_pct(r['rate'])} ± {_pct(r['sd'])}",
                           f"{r['chosen']}/{r['trials']}", fmt(r["p_binomial"], 3), str(r["participants"])] for r in pref]), "",
                  "![preference rates](images/preferences.png)", ""]
    if rep["ratings"]:
        lines += ["## Ratings (1-5)", "", table(
            ["block", "source", "mean [95 % CI]", "pooled mean ± sd", "median", "counts 1-5", "participants"],
            [[r["block"], r["source"], f"{fmt(r['mean'], 2)} [{fmt(r['lo'], 2)}, {fmt(r['hi'], 2)}]",
              f"{fmt(r['pooled_mean'], 2)} ± {fmt(r['pooled_sd'], 2)}", fmt(r["median"]), " / ".join(map(str, r["counts"])),
              str(r["participants"])] for r in rep["ratings"]]), "", "![ratings](images/ratings.png)", ""]
    pb = rep["position_bias"]
    if pb["answers"]:
        flagged = [x["participant"] for x in pb["participants"] if x["flagged"]]
        lines += ["## Position bias", "",
                  f"Left chosen in {pb['left']} of {pb['answers']} side-by-side answers ({_pct(pb['share_left'])}, p = "
                  f"{fmt(pb['p_binomial'], 3)} against 50 %). Flagged (one side only, or p < 0.01): "
                  f"{', '.join(flagged) if flagged else 'none'}.", "",
                  table(["participant", "left / answers", "share left", "p", "flagged"],
                         [[x["participant"], f"{x['left']}/{x['answers']}", _pct(x["share_left"]), fmt(x["p_binomial"], 3),
                           "yes" if x["flagged"] else ""] for x in pb["participants"]]), ""]
    c = rep["catch"]
    lines += ["## Catch trials", "", f"Participants who passed every catch trial: {c['passed']}; failed: "
              f"{', '.join(c['failed']) or 'none'}.", ""]
    if rep["groups"]:
        lines += ["## By participant group", "", f"{rep['model']} taken for the real patient (realism trials).", "",
                  table(["by", "group", "participants", "rate [95 % CI]", "mean ± sd", "trials"],
                         [[g["by"], g["group"], str(g["participants"]), _interval(g), f"{_pct(g['rate'])} ± {_pct(g['sd'])}",
                           str(g["trials"])] for g in rep["groups"]]), ""]
    if rep["machine"]:
        lines += ["## Machine observer", "",
                  "A classifier trained on recordings outside the study answers every realism trial "
                  "(`paindiffusion study observe`); k/n with a Wilson 95 % interval. Not counted with the people.", "",
                  table(["participant", "source", "taken for real", "rate [95 % CI]"],
                         [[m["participant"], m["source"] + (" (catch)" if m["catch"] else ""), f"{m['chosen']}/{m['trials']}",
                           _interval(m)] for m in rep["machine"]]), ""]
    return "\n".join(lines) + "\n"


def figures(rep: dict, images: Path) -> None:
    pref = [r for r in rep["preferences"] if not r["catch"]]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(pref))), constrained_layout=True)
    for i, r in enumerate(pref):
        err = None if not np.isfinite(r["lo"]) else [[r["rate"] - r["lo"]], [r["hi"] - r["rate"]]]
        ax.errorbar(r["rate"], i, xerr=err, fmt="o", color="#2166ac", capsize=3)
    for m in rep["machine"]:
        i = next((k for k, r in enumerate(pref) if r["block"] == "realism" and r["source"] == m["source"]), None)
        if i is not None and not m["catch"]:
            ax.plot(m["rate"], i, "x", color="#b2182b", label="machine observer" if i == 0 else None)
    ax.axvline(0.5, color="grey", ls=":")
    ax.set_yticks(range(len(pref)), [f"{r['block']}: {r['source']} vs {r['against']}" for r in pref], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("chosen (people: mean over participants, 95 % bootstrap CI)")
    fig.savefig(images / "preferences.png", dpi=100)
    plt.close(fig)
    rt = rep["ratings"]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * max(1, len(rt))), constrained_layout=True)
    for i, r in enumerate(rt):
        err = None if not np.isfinite(r["lo"]) else [[r["mean"] - r["lo"]], [r["hi"] - r["mean"]]]
        ax.errorbar(r["mean"], i, xerr=err, fmt="o", color="#1b7837", capsize=3)
    ax.set_yticks(range(len(rt)), [f"{r['block']}: {r['source']}" for r in rt], fontsize=8)
    ax.set_xlim(1, 5)
    ax.set_xlabel("mean rating over participants (95 % bootstrap CI)")
    fig.savefig(images / "ratings.png", dpi=100)
    plt.close(fig)


def write_study_report(study: str | Path, out: str | Path, exclude_failed_catch: bool = False, seed: int = 0,
                       overwrite: bool = True) -> dict:
    """Analyse a study's answers and write the report folder (all or nothing); returns the numbers."""
    manifest = load_manifest(study)
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not ((out / "report.json").is_file() and (out / "answers.csv").is_file()):
        raise PainDiffusionError("output exists and is not an earlier study report; choose another -o", out)
    people, answers = read_tables(study)
    if not answers:
        raise PainDiffusionError("the study has no answers yet; nothing to analyse", study)
    rep = analyse(manifest, people, answers, exclude_failed_catch, seed)
    with atomic_directory(out, kind="study-report", overwrite=overwrite, inputs=(study,)) as tmp:
        (tmp / "images").mkdir()
        figures(rep, tmp / "images")
        (tmp / "report.json").write_text(json.dumps(rep, indent=1, default=json_default) + "\n")
        md = markdown(rep, manifest)
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(html_page(md, f"Perceptual study {manifest['study_id']}"))
        with open(tmp / "answers.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(ANSWER_COLUMNS)
            for a in answers:
                w.writerow([json.dumps(a[c]) if c in ("clips", "sources") else a[c] for c in ANSWER_COLUMNS])
        with open(tmp / "participants.csv", "w", newline="", encoding="utf-8") as f:
            cols = ("id", "number", "machine", "role", "years", "frequency", "consented_at", "finished_at", "note")
            w = csv.writer(f)
            w.writerow(cols)
            w.writerows([[p[c] for c in cols] for p in people])
    return rep
