"""Measure a trained model's expressiveness response and store its inverse in a new checkpoint.

    python scripts/fit_expressiveness_map.py runs/shipped/model runs/data300 -o runs/shipped/model_mapped

Feeds 9 values over the trained range to 16 training recordings' protocols (3 minutes each), measures the
achieved expressiveness, and writes ``conditions.expressiveness_map`` so that a request achieves itself
(paindiffusion.evaluation.expressiveness_map.fit_expressiveness_map). Uses training recordings only: evaluate
afterwards on held-out subjects. About 4 minutes on 2 CPU cores. See scripts/train_shipped.sh for the whole
recipe. The output is a new folder, never the input; it is loaded back before "saved" is printed. Any bad
argument or input gives one line starting with "error:" and exit status 2, before the measurement starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from paindiffusion.errors import PainDiffusionError, os_error
from paindiffusion.evaluation.expressiveness_map import fit_expressiveness_map
from paindiffusion.progress import enabled as progress_enabled


class OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as one line and exit status 2, like the paindiffusion command's."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def main() -> None:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_model", type=Path)
    ap.add_argument("data", type=Path, help="the packed dataset the model was trained on (its train split is used)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="new folder for the checkpoint with its map")
    ap.add_argument("--recordings", type=int, default=16)
    ap.add_argument("--points", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=180.0, help="protocol length per run")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    try:
        if not 1 <= a.threads <= 1024:
            raise PainDiffusionError(f"--threads {a.threads} must be 1-1024")
        torch.set_num_threads(a.threads)
        resp, knots = fit_expressiveness_map(a.run_model, a.data, a.out, a.recordings, a.points, a.seconds,
                                           progress=progress_enabled())
    except (PainDiffusionError, OSError) as e:
        print(f"error: {e if isinstance(e, PainDiffusionError) else os_error(e, doing='failed')}", file=sys.stderr)
        sys.exit(2)
    se = resp.achieved.std(1, ddof=1) / resp.achieved.shape[1] ** 0.5
    print("fed → achieved expressiveness (mean ± s.e. over recordings)")
    for g, m, s in zip(resp.grid, resp.mean, se):
        print(f"  {g:5.2f} → {m:5.2f} ± {s:.2f}")
    print("requested → fed:", ", ".join(f"{r:.2f}→{f:.2f}" for r, f in knots))
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
