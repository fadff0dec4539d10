"""The study's numbers from its answers (docs/study.md, "Analysis").

* **Preference rate** of a pair of sources: in realism trials the share of answers that took the generated face
  for the real patient (the paper's figure: 31.2 % ± 4.8 %, 50 % = indistinguishable); in overall trials the
  share that chose the model. Per participant p: r_p = k_p / n_p. Reported: the mean of r_p over participants
  with a 95 % percentile bootstrap interval over participants (each participant weighs the same, and trials of
  one participant are not independent), the paper's form mean ± sd over participants, and the pooled k / n with
  an exact two-sided binomial test against 50 % (which treats trials as independent: read it beside the bootstrap).
* **Ratings** (reaction, diversity) per source: per-participant means, their mean with a bootstrap interval, and
  the pooled mean, sd, median and counts of 1-5.
* **Position bias**: the share of side-by-side answers that chose the left clip (exact test against 50 %), overall
  and per participant; a participant who answered on one side only (at least 4 answers) or with p < 0.01 is flagged.
* **Catch trials**: the real face against a lifeless one; a participant who does not pick the real face failed.
* **Machine observers** (participants flagged as machines) are reported apart from people: k / n with a Wilson
  95 % interval (the observer answers each realism cell once).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..evaluation.metrics import bootstrap_ci
from .plan import ORDER, REFERENCE, Trial
from .questions import experience_band

PAPER_REALISM = (0.312, 0.048)  # the paper's clinicians: generated chosen as real, mean ± sd over participants
BOOTSTRAP = 4000


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial test of k successes in n trials against p = 0.5:
    p = min(1, 2 · Σ_{i ≤ min(k, n − k)} C(n, i) / 2ⁿ)."""
    if n == 0:
        return float("nan")
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n: (p̂ + z²/2n ± z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def focus(trial: Trial) -> tuple[str, str]:
    """(the source whose choice is counted, the other): the generated face in realism, the model in overall."""
    return (trial.sources[1], trial.sources[0]) if trial.block == "realism" else (trial.sources[0], trial.sources[1])


def rate_summary(per_participant: dict[str, tuple[int, int]], seed: int = 0) -> dict:
    """Per-participant (k, n) → the mean rate with its bootstrap interval, mean ± sd, pooled k/n and its test."""
    rates = np.array([k / n for k, n in per_participant.values() if n], float)
    k = sum(k for k, _ in per_participant.values())
    n = sum(n for _, n in per_participant.values())
    # one participant gives no interval over participants
    lo, hi = bootstrap_ci(rates, n=BOOTSTRAP, seed=seed) if len(rates) > 1 else (float("nan"), float("nan"))
    return {"rate": float(rates.mean()) if len(rates) else float("nan"), "lo": lo, "hi": hi,
            "sd": float(rates.std(ddof=1)) if len(rates) > 1 else float("nan"), "participants": len(rates),
            "chosen": k, "trials": n, "pooled": k / n if n else float("nan"), "p_binomial": binomial_two_sided(k, n)}


def preferences(answers: list[dict], trials: dict[str, Trial], seed: int = 0) -> list[dict]:
    """One row per (block, pair of sources) of the side-by-side blocks, catch trials apart."""
    counts: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for a in answers:
        t = trials[a["trial"]]
        if t.block not in ("realism", "overall"):
            continue
        chosen, other = focus(t)
        c = counts[(t.block, t.catch, chosen, other)][a["participant"]]
        c[0] += a["chosen"] == chosen
        c[1] += 1
    rows = []
    for (block, catch, chosen, other), per in sorted(counts.items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1:])):
        rows.append({"block": block, "catch": catch, "source": chosen, "against": other,
                     **rate_summary({p: tuple(v) for p, v in per.items()}, seed)})
    return rows


def ratings(answers: list[dict], trials: dict[str, Trial], seed: int = 0) -> list[dict]:
    """One row per (block, source) of the rating blocks."""
    by: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for a in answers:
        t = trials[a["trial"]]
        if a["rating"] is not None:
            by[(t.block, t.sources[0])][a["participant"]].append(int(a["rating"]))
    rows = []
    for (block, source), per in sorted(by.items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1])):
        means = np.array([np.mean(v) for v in per.values()])
        pooled = np.concatenate([np.array(v) for v in per.values()])
        lo, hi = bootstrap_ci(means, n=BOOTSTRAP, seed=seed) if len(means) > 1 else (float("nan"), float("nan"))
        rows.append({"block": block, "source": source, "mean": float(means.mean()), "lo": lo, "hi": hi,
                     "sd_participants": float(means.std(ddof=1)) if len(means) > 1 else float("nan"),
                     "pooled_mean": float(pooled.mean()), "pooled_sd": float(pooled.std(ddof=1)) if len(pooled) > 1 else float("nan"),
                     "median": float(np.median(pooled)), "counts": [int((pooled == v).sum()) for v in range(1, 6)],
                     "participants": len(means), "answers": int(len(pooled))})
    return rows


def position_bias(answers: list[dict]) -> dict:
    """Share of left choices over every side-by-side answer, overall and per participant (flagged if one-sided)."""
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        if a["answer"] in ("left", "right"):
            per[a["participant"]][0] += a["answer"] == "left"
            per[a["participant"]][1] += 1
    k = sum(v[0] for v in per.values())
    n = sum(v[1] for v in per.values())
    people = []
    for p, (kl, nl) in sorted(per.items()):
        pv = binomial_two_sided(kl, nl)
        people.append({"participant": p, "left": kl, "answers": nl, "share_left": kl / nl, "p_binomial": pv,
                       "flagged": nl >= 4 and (kl in (0, nl) or pv < 0.01)})
    return {"left": k, "answers": n, "share_left": k / n if n else float("nan"), "p_binomial": binomial_two_sided(k, n),
            "participants": people}


def catch_results(answers: list[dict], trials: dict[str, Trial]) -> dict[str, bool]:
    """Participant → passed every catch trial (chose the real face)."""
    out: dict[str, bool] = {}
    for a in answers:
        if trials[a["trial"]].catch:
            out[a["participant"]] = out.get(a["participant"], True) and a["chosen"] == REFERENCE
    return out


def by_group(answers: list[dict], people: list[dict], trials: dict[str, Trial], model: str, seed: int = 0) -> list[dict]:
    """The model's realism rate (as real, against the reference) per role, experience band and frequency."""
    info = {p["id"]: p for p in people}
    rows = []
    for field, label in (("role", "role"), ("years", "clinical experience"), ("frequency", "sees patients in pain")):
        groups: dict[str, list[dict]] = defaultdict(list)
        for a in answers:
            p = info[a["participant"]]
            groups[experience_band(p["years"]) if field == "years" else (p[field] or "not given")].append(a)
        for name, rows_g in sorted(groups.items()):
            pref = [r for r in preferences(rows_g, trials, seed) if r["block"] == "realism" and not r["catch"] and r["source"] == model]
            rows.append({"by": label, "group": name, "participants": len({a["participant"] for a in rows_g}),
                         **({k: pref[0][k] for k in ("rate", "lo", "hi", "sd", "trials")} if pref else
                            {"rate": float("nan"), "lo": float("nan"), "hi": float("nan"), "sd": float("nan"), "trials": 0})})
    return rows


def machine_rows(answers: list[dict], trials: dict[str, Trial]) -> list[dict]:
    """Each machine participant's realism rate per source: k / n with a Wilson interval."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        t = trials[a["trial"]]
        if t.block == "realism":
            chosen, other = focus(t)
            c = counts[(a["participant"], t.catch, chosen)]
            c[0] += a["chosen"] == chosen
            c[1] += 1
    out = []
    for (p, catch, source), (k, n) in sorted(counts.items()):
        lo, hi = wilson(k, n)
        out.append({"participant": p, "catch": catch, "source": source, "chosen": k, "trials": n, "rate": k / n, "lo": lo, "hi": hi})
    return out


def analyse(manifest: dict, people: list[dict], answers: list[dict], exclude_failed_catch: bool = False, seed: int = 0) -> dict:
    """Every number of the report, from the manifest and the database's rows."""
    trials = {t["id"]: Trial.from_json(t) for t in manifest["trials"]}
    machines = {p["id"] for p in people if p["machine"]}
    human = [a for a in answers if a["participant"] not in machines]
    catch = catch_results(human, trials)
    excluded = sorted(p for p, ok in catch.items() if not ok) if exclude_failed_catch else []
    human = [a for a in human if a["participant"] not in excluded]
    model = manifest["generators"][0]
    humans = [p for p in people if not p["machine"]]
    return {
        "participants": {"people": len(humans), "with_answers": len({a["participant"] for a in human}),
                         "finished": sum(p["finished_at"] is not None for p in humans), "machines": sorted(machines),
                         "excluded_failed_catch": excluded},
        "answers": len(human), "trials_per_participant": manifest["plan"]["trials_per_participant"],
        "preferences": preferences(human, trials, seed), "ratings": ratings(human, trials, seed),
        "position_bias": position_bias(human), "catch": {"passed": sum(catch.values()), "failed": sorted(p for p, ok in catch.items() if not ok)},
        "groups": by_group(human, humans, trials, model, seed), "machine": machine_rows([a for a in answers if a["participant"] in machines], trials),
        "model": model, "paper_realism": list(PAPER_REALISM), "seed": seed,
    }
