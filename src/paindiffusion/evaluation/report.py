"""report.json + report.md + report.html + figures from an evaluation dict (written all or nothing)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..files import atomic_directory  # noqa: E402
from ..facespace import EMOTIONS  # noqa: E402
from .conclusions import auto_conclusions  # noqa: E402
from .formatting import CORRECTED, METRIC_NAMES, PAPER, beats_table, cell, fmt, table  # noqa: E402
from .generation import MODEL  # noqa: E402
from .summary import summarise  # noqa: E402
from .targets import judge  # noqa: E402

REPORT_KIND = "evaluation report"  # the kind its folder's marker records (errors.MARKER)

def markdown(report: dict, conclusions: str = "") -> str:
    s, cfg = report["summary"], report["config"]
    lines = [f"# Evaluation of `{report['checkpoint']}`", "",
             f"{cfg['draws']} draws × {len(report['draws'][0]['recordings'])} held-out recordings × {cfg['tries']} tries, "
             f"{cfg['frames'] / 25:.0f} s each ({'full' if cfg['extras'] else 'quick'} run, seed {cfg['seed']}). "
             f"Held-out: {report['held_out'][0].split(',')[0]} (seed 7000 + draw for simulated cohorts). "
             f"Training reference for the data-driven baselines: {report['pool']}. "
             "Values: mean ± half-width of the 95% t-interval over draws (PSPI r also: bootstrap over recordings). "
             "Metric definitions: docs/evaluation.md.", ""]
    if conclusions:
        lines += ["## Conclusions", "", conclusions.strip(), ""]
    lines += ["## Targets", "",
              "The rules given the controls are the data's own process fed the model's controls: a faithful generator "
              "ties them (docs/evaluation.md).", "",
              table(["target", "value", "passes when", "pass"],
                    [[k, fmt(v["value"], 2), v["target"], fmt(v["pass"])] for k, v in report["targets"].items()]), ""]
    names = list(s)
    lines += ["## Corrected metrics", "", table(["generator"] + [METRIC_NAMES[m] for m in CORRECTED],
                                                 [[n] + [cell(s[n][m]) for m in CORRECTED] for n in names]), ""]
    lines += ["PSPI r, bootstrap 95% interval over all recordings: " + "; ".join(
        f"{n} [{fmt(s[n]['pspi_r']['bootstrap_lo'])}, {fmt(s[n]['pspi_r']['bootstrap_hi'])}]" for n in names), ""]
    lines += ["## Paper-compatible metrics (kept for comparison; see the quirks in docs/evaluation.md)", "",
              table(["generator"] + [METRIC_NAMES[m] for m in PAPER], [[n] + [cell(s[n][m]) for m in PAPER] for n in names]), ""]
    lines += realism_markdown(report)
    head, rows = beats_table(s)
    lines += ["## Does the model beat each baseline? (✓ model better on the mean over draws, ✗ not)", "", table(head, rows), ""]
    lv_rows = []
    for n in names:
        for lv, v in s[n]["levels"].items():
            lv_rows.append([n, lv, fmt(v["rate"], 2), fmt(v["rate_data"], 2), fmt(v["latency_s"], 2),
                            fmt(v["latency_s_data"], 2), fmt(v["latency_paired_diff_s"], 2), fmt(v["peak"], 2),
                            fmt(v["peak_data"], 2)])
    lines += ["## Responses by stimulus level", "",
              "Response: 0.5 s-smoothed PSPI rises ≥ 1 above its median of the 2 s before the episode; latency: plateau "
              "onset → half of the episode's peak rise (paired: same episodes, both responded).", "",
              table(["generator", "level", "rate", "rate (data)", "median latency s", "data", "paired diff s", "peak rise", "data"],
                     lv_rows), ""]
    sw_rows = [[str(i), fmt(d["sweep"]["requested"], 2), fmt(d["sweep"]["achieved"], 2), fmt(d["sweep"]["strictly_increasing"]),
                fmt(d["sweep"]["low_preset_achieved"], 2), fmt(d["sweep"]["low_preset_p99_smoothed_pspi"], 2)]
               for i, d in enumerate(report["draws"])]
    lines += ["## Expressiveness sweep (same protocol, Neutral)", "",
              f"Numeric range: {fmt(report['expressiveness_range'], 2)} from {report['expressiveness_range_source']}.", "",
              table(["draw", "requested", "achieved mean PSPI while stimulated", "strictly increasing", "'low' achieved",
                      "'low' p99 smoothed PSPI"], sw_rows), ""]
    data_rows = [[str(i), fmt(d["data"]["seam_ratio"]), fmt(d["data"]["spectral_peak_6p25"]), fmt(d["data"]["mean_pspi"])]
                 for i, d in enumerate(report["draws"])]
    lines += ["## The held-out data itself", "", table(["draw", "seam ratio", "6.25 Hz peak ratio", "mean PSPI"], data_rows), ""]
    notes = {k: v for d in report["draws"] for k, v in d["notes"].items()}
    if notes:
        lines += ["Notes: " + "; ".join(f"{k}: {v}" for k, v in notes.items()), ""]
    if "extras" in report:
        lines += extras_markdown(report["extras"])
    figs = report.get("figures", [])
    if figs:
        lines += ["## Figures", ""] + [f"![{f}](images/{f})" for f in figs] + [""]
    t = report["timing"]
    lines += [f"Run time {t.get('total_s', '?')} s ({t['frames_generated']} model frames in {t['generation_s']} s, "
              f"{t['threads']} torch threads). Sampler: {json.dumps(report['sampler'])}.", ""]
    return "\n".join(lines)


def realism_markdown(report: dict) -> list[str]:
    """Where generated motion differs from the data's, by channel group and feature, and the resting faces."""
    s = report["summary"]
    groups = (("pain_aus", "pain AUs"), ("other_aus", "other AUs"), ("head", "head"))
    keys = [f"frechet_{g}_{f}" for g, _ in groups for f in ("level", "velocity")]
    head = ["generator", "machine observer: taken for real", "Fréchet (motion)"] + [f"{label} {f}" for _, label in groups for f in ("level", "velocity")] + [
        "AU frames", "AU velocity", "AU values at 0"] + [f"seam {label}" for _, label in groups] + [
        f"6.25 Hz {label}" for _, label in groups]
    cols = ["observer_preference", "frechet_motion", *keys, "frechet_au_frames", "frechet_au_velocity", "zero_share",
            *(f"seam_ratio_{g}" for g, _ in groups), *(f"spectral_peak_6p25_{g}" for g, _ in groups)]
    rows = [[n] + [cell(s[n][c]) if c in s[n] else "–" for c in cols] for n in s]
    data_zero = np.mean([d["data"].get("zero_share", np.nan) for d in report["draws"]])
    lines = ["## Where motion differs from the data", "",
             "Machine observer: the 2AFC rate at which a classifier trained on other recordings takes the generator's "
             "first try for the real recording (50 % = indistinguishable; evaluation/observer.py). "
             "Fréchet distance of motion features (32-frame windows: each channel's level and mean |velocity|, "
             "standardised) restricted to each channel group and feature; of per-frame AU vectors and of their first "
             f"differences (AU units); share of AU values at exactly 0 (data: {fmt(data_zero)}); seam ratio and 6.25 Hz "
             "peak per channel group (data ≈ 1).", "", table(head, rows), ""]
    rest = report.get("resting")
    if rest:
        rrows = []
        for e, v in rest["emotions"].items():
            aus = "; ".join(f"{au} {fmt(a, 2)} / {fmt(b, 2)}" for au, (a, b) in v["aus"].items()) or "–"
            rrows.append([e, f"{fmt(v['pspi'], 2)} / {fmt(v['pspi_data'], 2)}", aus])
        lines += ["## Resting faces", "", rest["note"], "", table(["emotion", "resting PSPI model / data",
                                                                    "prototype AUs model / data"], rrows), ""]
    return lines


def extras_markdown(ex: dict) -> list[str]:
    lines = ["## Ablations and long rollouts", "", ex.get("note", ""), ""]
    if ex.get("ablations"):
        speed = "frames_per_cpu_s" if "frames_per_cpu_s" in next(iter(ex["ablations"].values())) else "frames_per_s"
        keys = ("pspi_r", "dtw_per_frame", "expressiveness_r", "seam_ratio", "spectral_peak_6p25", "frechet_motion", speed)
        lines += [table(["variant"] + [METRIC_NAMES.get(k, k) for k in keys],
                         [[v] + [fmt(r.get(k)) for k in keys] for v, r in ex["ablations"].items()]), ""]
    if ex.get("drift"):
        d = ex["drift"]
        lines += [f"Drift over a {d['minutes']:g}-minute rollout ({d['recordings']} recordings), per {d['segment_s']:.0f} s segment:", "",
                  table(["segment start (min)", "PSPI r", "mean PSPI", "data mean PSPI", "AU std", "data AU std"],
                         [[fmt(a), fmt(b), fmt(c), fmt(e), fmt(f), fmt(g)] for a, b, c, e, f, g in
                          zip(d["start_min"], d["pspi_r"], d["mean_pspi"], d["mean_pspi_data"], d["au_std"], d["au_std_data"])]), ""]
    return lines


def html_page(md: str, title: str) -> str:
    """A small self-contained HTML rendering of the Markdown report (tables, headings, images, paragraphs)."""
    out, table = [], []

    def inline(t: str) -> str:
        t = html.escape(t)
        t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', t)
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)

    def flush():
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|(---\|)+", r)]
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
            out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:]) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            k = len(line) - len(line.lstrip("#"))
            out.append(f"<h{k}>{inline(line[k:].strip())}</h{k}>")
        elif line.startswith("- "):
            out.append(f"<li>{inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
             "font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(out)}</body></html>\n")


# ---- figures ------------------------------------------------------------------------------------------------------
def _save(fig, path: Path) -> str:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def figures(report: dict, plots: dict, images: Path) -> list[str]:
    """Stimulus/PSPI of test windows, event-locked response by level, calibration, confusion, metric vs length."""
    names = []
    if "windows" in plots:
        w = plots["windows"]
        fig, axes = plt.subplots(len(w), 1, figsize=(12, 2.6 * len(w)), squeeze=False, constrained_layout=True)
        for ax, item in zip(axes[:, 0], w):
            t = np.arange(len(item["stimulus"])) / 25
            ax2 = ax.twinx()
            ax2.plot(t, item["stimulus"], color="#b2182b", lw=0.8, alpha=0.5)
            ax2.set_ylabel("°C")
            for key, colour in (("data", "k"), (MODEL, "#2166ac"), ("oracle", "#1b7837"), ("rules given the controls", "#e08214")):
                if key in item:
                    ax.plot(t, item[key], color=colour, lw=0.9, label=key)
            ax.set_ylabel("PSPI (smoothed)")
            ax.set_title(item["title"], fontsize=9)
            ax.legend(loc="upper left", fontsize=7)
        axes[-1, 0].set_xlabel("time (s)")
        names.append(_save(fig, images / "windows.png"))
    if "event_locked" in plots:
        ev = plots["event_locked"]
        fig, axes = plt.subplots(1, 4, figsize=(14, 3), sharey=True, constrained_layout=True)
        for ax, lv in zip(axes, ("1", "2", "3", "4")):
            for name, curves in ev.items():
                if lv in curves:
                    g, d = curves[lv]
                    t = np.arange(len(g)) / 25 - 2
                    ax.plot(t, g, label=name)
                    if name == MODEL:
                        ax.plot(t, d, "k--", label="data")
            ax.set_title(f"level {lv}")
            ax.set_xlabel("s from episode start")
        axes[0].set_ylabel("mean smoothed PSPI")
        axes[0].legend(fontsize=7)
        names.append(_save(fig, images / "event_locked.png"))
    s = report["summary"]
    fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    for name in (MODEL, "rules given the controls", "oracle"):
        if name in s:
            req = np.concatenate([d["scores"][name]["per_recording"]["requested"] for d in report["draws"]])
            ach = np.concatenate([d["scores"][name]["per_recording"]["achieved"] for d in report["draws"]])
            ax.scatter(req, ach, s=10, label=f"{name} (held-out recordings)")
    for i, d in enumerate(report["draws"]):
        ax.plot(d["sweep"]["requested"], d["sweep"]["achieved"], "k-", alpha=0.5, lw=1, label="model sweep" if i == 0 else None)
    lim = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([0, lim], [0, lim], ":", color="grey")
    ax.set_xlabel("requested expressiveness")
    ax.set_ylabel("achieved (mean PSPI while stimulated)")
    ax.legend(fontsize=7, loc="upper left")
    names.append(_save(fig, images / "calibration.png"))
    conf = np.sum([d["scores"][MODEL]["confusion"] for d in report["draws"]], axis=0)
    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=60, fontsize=7)
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS, fontsize=7)
    for (i, j), v in np.ndenumerate(conf):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ax.set_xlabel("recognised (nearest prototype)")
    ax.set_ylabel("requested")
    ax.set_title("emotion confusion, model")
    names.append(_save(fig, images / "emotion_confusion.png"))
    drift = report.get("extras", {}).get("drift")
    if drift:
        fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
        ax.plot(drift["start_min"], drift["pspi_r"], "o-", label="PSPI r")
        ax.plot(drift["start_min"], drift["mean_pspi"], "s-", label="mean PSPI")
        ax.plot(drift["start_min"], drift["mean_pspi_data"], "k--", label="mean PSPI (data)")
        ax.plot(drift["start_min"], drift["au_std"], "^-", label="AU std")
        ax.plot(drift["start_min"], drift["au_std_data"], "k:", label="AU std (data)")
        ax.set_xlabel("minutes into the rollout")
        ax.legend(fontsize=7, loc="upper right")
        names.append(_save(fig, images / "drift.png"))
    return names


def write_report(report: dict, out: Path, plots: dict | None = None, conclusions: str = "") -> Path:
    """Write the report folder; ``plots.json`` keeps the figure data so :func:`rerender` can redo the text and
    figures without generating again. ``conclusions`` default to :func:`auto_conclusions` (from the numbers)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out, REPORT_KIND) as tmp:
        images = tmp / "images"
        images.mkdir()
        report["figures"] = figures(report, plots or {}, images)
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=json_default) + "\n")
        (tmp / "plots.json").write_text(json.dumps(plots or {}, default=json_default) + "\n")
        md = markdown(report, conclusions or auto_conclusions(report))
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(html_page(md, f"Evaluation of {report['checkpoint']}"))
    return out


def rerender(out: Path, conclusions: str = "") -> Path:
    """Rewrite report.md/.html and the figures of an existing report folder from its report.json and plots.json."""
    out = Path(out)
    report = json.loads((out / "report.json").read_text())
    report["summary"] = summarise(report)  # recomputed: the current definitions apply
    report["targets"] = judge(report)
    plots_path = out / "plots.json"
    plots = json.loads(plots_path.read_text()) if plots_path.is_file() else {}
    return write_report(report, out, plots, conclusions)


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
