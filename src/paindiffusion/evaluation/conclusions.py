"""Plain statements read off a report's numbers (its "Conclusions" section), so a regenerated report never keeps
stale prose. Each line states a measured fact and, where the data bounds it, the bound (docs/evaluation.md)."""

from __future__ import annotations

import numpy as np

from . import metrics as M
from .formatting import beats_table, fmt
from .generation import MODEL


def rate_noise_line(lv: dict, oracle: dict | None, draws: int) -> str:
    """How precisely the held-out data pins each level's response rate: a binomial 95 % half-width on the
    pooled episodes, and how far the oracle (the same subjects re-sampled) lands from the data."""
    def half(v):
        n = max(v["episodes"] * draws, 1)
        return 1.96 * np.sqrt(v["rate_data"] * (1 - v["rate_data"]) / n)

    text = ("- Response rates are measured on few episodes: the data's rate per level is "
            + ", ".join(f"L{k} {v['rate_data']:.2f} ± {half(v):.2f} ({round(v['episodes'] * draws)} episodes)"
                        for k, v in lv.items()))
    if oracle:
        gaps = {k: abs(oracle[k]["rate"] - oracle[k]["rate_data"]) for k in oracle if k in lv}
        worst = max(gaps, key=gaps.get)
        text += (f"; the oracle (the same subjects, new noise) lands up to {gaps[worst]:.2f} from it (L{worst}: "
                 f"{oracle[worst]['rate']:.2f}), the model up to "
                 f"{max(abs(v['rate'] - v['rate_data']) for v in lv.values()):.2f}")
    return text + "."


def auto_conclusions(report: dict) -> str:
    """Plain statements read off the numbers (so a regenerated report never keeps stale prose)."""
    s, ms = report["summary"], report["targets"]
    m = s[MODEL]
    out = []
    head, rows = beats_table(s)
    for row in rows:
        wins = [h for h, c in zip(head[1:], row[1:]) if c == "✓"]
        losses = [h for h, c in zip(head[1:], row[1:]) if c == "✗"]
        if losses:
            out.append(f"- Against **{row[0]}** the model loses on {', '.join(losses)}"
                       + (f"; it wins on {', '.join(wins)}." if wins else "."))
        else:
            out.append(f"- The model beats **{row[0]}** on every ranked metric.")
    failed = [k for k, v in ms.items() if v["pass"] is False]
    passed = [k for k, v in ms.items() if v["pass"] is True]
    out.append(f"- Targets met: {', '.join(passed) or 'none'}; not met: {', '.join(failed) or 'none'}.")
    if "stimulus copier" in s:
        c = s["stimulus copier"]["pspi_r"]["mean"]
        out.append(f"- PSPI correlation alone cannot rank generators: the one-line stimulus copier reaches r {c:.2f} "
                   f"against the model's {m['pspi_r']['mean']:.2f}; distribution-level metrics (DTW per frame, Fréchet, "
                   "response rates, latency, expressiveness) separate them.")
    fm, fr = m["frechet_motion"]["mean"], s.get("rules given the controls", {}).get("frechet_motion", {}).get("mean")
    if fr and "frechet_other_aus_level" in m:
        parts = {k: m[f"frechet_{k}"]["mean"] for k in ("pain_aus_level", "pain_aus_velocity", "other_aus_level",
                                                         "other_aus_velocity", "head_level", "head_velocity")}
        worst = max(parts, key=parts.get)
        out.append(f"- Motion realism: Fréchet {fm:.2f} against {fr:.2f} for the rules given the controls "
                   f"({fm / fr:.1f}×); by channel group and feature the largest part is {worst.replace('_', ' ')} "
                   f"({parts[worst]:.2f}).")
    seen = [d["pspi_r_as_seen"] for d in report["draws"] if "pspi_r_as_seen" in d]
    if seen:
        out.append(f"- PSPI as seen (render → face tracker → PSPI, what a trainee sees): r {np.mean(seen):.2f} with the "
                   f"ground truth, against {m['pspi_r']['mean']:.2f} for the PSPI the model generated.")
    if "random clip" in s:
        out.append(f"- The paper's PainCorr (maximum r over windows) inflates: the model {m['paper_PainCorr_max']['mean']:.2f}, "
                   f"a random clip of another recording {s['random clip']['paper_PainCorr_max']['mean']:.2f}.")
    if "oracle" in s:
        o = s["oracle"]
        out.append(f"- The oracle (true subject, new noise) is the ceiling on synthetic data: DTW per frame "
                   f"{o['dtw_per_frame']['mean']:.2f} (model {m['dtw_per_frame']['mean']:.2f}), Fréchet "
                   f"{o['frechet_motion']['mean']:.2f} (model {m['frechet_motion']['mean']:.2f}), between-try r "
                   f"{o['between_try_r']['mean']:.2f} (model {m['between_try_r']['mean']:.2f}).")
        bm, bd = m["between_try_r"]["mean"], o["between_try_r"]["mean"]
        out.append(f"- How alike a generator's tries are caps its PSPI r: r ≤ √(between-try r × the data's) "
                   f"(metrics.correlation_ceiling). The model: √({bm:.2f} × {bd:.2f}) = "
                   f"{M.correlation_ceiling(bm, bd):.2f}, measured {m['pspi_r']['mean']:.2f}; the oracle: "
                   f"{M.correlation_ceiling(bd, bd):.2f}, measured {o['pspi_r']['mean']:.2f} (each estimate carries "
                   f"its interval in the table below). Tries as varied as the "
                   f"data's (between-try r ≤ {bd + 0.1:.2f}) cap r at {M.correlation_ceiling(bd + 0.1, bd):.2f}.")
    sw = [d["sweep"]["strictly_increasing"] for d in report["draws"]]
    rules = s.get("rules given the controls")
    out.append(f"- Expressiveness: requested vs achieved r {m['expressiveness_r_pooled']:.2f} over the held-out recordings"
               + (f" (rules given the same value: {rules['expressiveness_r_pooled']:.2f})" if rules else "")
               + f"; the sweep over the trained range is strictly increasing in {sum(sw)} of {len(sw)} draws; "
               f"the 'low' preset's 99th-percentile smoothed PSPI is {ms['low_preset_p99_smoothed_pspi']['value']:.1f}.")
    lv = m["levels"]
    if lv:
        out.append("- Timing by level (model − data, median paired latency; response rate model vs data): " + "; ".join(
            f"L{k} {fmt(v['latency_paired_diff_s'], 2)} s, {v['rate']:.2f} vs {v['rate_data']:.2f}" for k, v in lv.items()) + ".")
        out.append(rate_noise_line(lv, s.get("oracle", {}).get("levels"), len(report["draws"])))
    data_seam = np.mean([d["data"]["seam_ratio"] for d in report["draws"]])
    data_peak = np.mean([d["data"]["spectral_peak_6p25"] for d in report["draws"]])
    out.append(f"- Stack seams: |Δ| across 4-frame boundaries / within = {m['seam_ratio']['mean']:.2f} (data {data_seam:.2f}); "
               f"6.25 Hz spectral peak ratio {m['spectral_peak_6p25']['mean']:.2f} (data {data_peak:.2f}).")
    ab = report.get("extras", {}).get("ablations")
    if ab and "shipped sampler" in ab:
        base = ab["shipped sampler"]
        best = max(ab, key=lambda k: ab[k]["pspi_r"])
        seams = [v["seam_ratio"] for v in ab.values()]
        out.append(f"- Ablations (one draw, 4 recordings: indicative only): shipped sampler PSPI r {base['pspi_r']:.2f}; best "
                   f"'{best}' {ab[best]['pspi_r']:.2f}"
                   + (f"; full-sequence sampling {ab['full-sequence (no diffusion forcing)']['pspi_r']:.2f}"
                      if "full-sequence (no diffusion forcing)" in ab else "")
                   + f". The seam ratio stays {min(seams):.2f}-{max(seams):.2f} in every variant.")
    n = report["config"]["draws"]
    out.append(f"- Intervals over {n} draws are wide (95% t-interval): differences inside them are not established.")
    return "\n".join(out)
