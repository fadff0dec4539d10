"""How alike two recordings of the same synthetic subject are: the data process's between-try r.

    python scripts/cohort_diversity.py [--draws 12] [--subjects 16]

For each draw, a fresh cohort (seed 7100 + draw: never a test draw, which use 7000-7002) is re-simulated twice
per subject with new noise (the evaluation's oracle), and twice with only the controls a model gets (the rules
given the controls). Prints each draw's between-try r of smoothed PSPI and the r of a re-simulation with the
recording, then the mean ± standard error over draws. This number bounds every generator's PSPI r through
``metrics.correlation_ceiling`` (docs/evaluation.md). About 20 s.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from paindiffusion.errors import PainDiffusionWarning
from paindiffusion.evaluation import metrics as M
from paindiffusion.evaluation.baselines import BASELINES
from paindiffusion.evaluation.data import fresh_cohort
from paindiffusion.facespace import FACS

GENERATORS = ("oracle", "rules given the controls")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=12)
    ap.add_argument("--subjects", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=3.0)
    a = ap.parse_args()
    warnings.simplefilter("ignore", PainDiffusionWarning)  # the rules clamp nothing; the model's range is moot here
    tries = {g: [] for g in GENERATORS}
    truth = {g: [] for g in GENERATORS}
    for d in range(100, 100 + a.draws):
        held = fresh_cohort(a.subjects, a.minutes, d)
        rng = np.random.default_rng(d)
        for g in GENERATORS:
            pspi = FACS.pspi(BASELINES[g](held, None, 2, rng, None))
            tries[g].append(M.between_try_r(pspi))
            truth[g].append(float(M.pearson(M.smooth(pspi), M.smooth(held.pspi)[:, None]).mean()))
        print(f"draw seed {7000 + d}: " + "; ".join(f"{g} between-try r {tries[g][-1]:.3f}, r with the recording "
                                                    f"{truth[g][-1]:.3f}" for g in GENERATORS))
    for g in GENERATORS:
        b, r = np.array(tries[g]), np.array(truth[g])
        se = lambda v: v.std(ddof=1) / np.sqrt(len(v))  # noqa: E731
        print(f"{g}: between-try r {b.mean():.3f} ± {se(b):.3f}, r with the recording {r.mean():.3f} ± {se(r):.3f} "
              f"(mean ± s.e. over {len(b)} draws × {a.subjects} subjects)")


if __name__ == "__main__":
    main()
