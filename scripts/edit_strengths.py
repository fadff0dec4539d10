"""What each edit strength does with a checkpoint: the table in README.md ("Editing sequences").

    python scripts/edit_strengths.py [--checkpoint RUN/model] [--seconds 60] [--draws 3]

For a sequence generated "high" on a BioVid-like protocol and edited to "low" (and the reverse), per strength:
the achieved expressiveness (dataset.expressiveness_of with the protocol's labels, as the evaluation measures
it; mean of ``--draws`` seeds) and the correlation of the edit's PSPI with the input's (how much of its timing
and character survives). Then the same sequence re-timed to its stimulus 10 s later: the lag at which the
edit's PSPI best follows the new stimulus, against the model's own (generation from the new stimulus).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from paindiffusion.biovid import stimulus_index
from paindiffusion.checkpoint import PainModel
from paindiffusion.cohort import biovid_protocol
from paindiffusion.dataset import expressiveness_of
from paindiffusion.edit import edit
from paindiffusion.generate import generate_sequence

FPS = 25


def best_lag(stimulus: np.ndarray, pspi: np.ndarray, most: int = 100) -> int:
    s, p = stimulus - stimulus.mean(), pspi - pspi.mean()
    return int(np.argmax([np.corrcoef(s[: len(s) - k], p[k:])[0, 1] for k in range(most)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = PainModel.load(args.checkpoint)
    temp, label = biovid_protocol(tuple(np.linspace(*model.spec.calibration, 4)), args.seconds, np.random.default_rng(3))
    i = np.minimum(stimulus_index(int(args.seconds * FPS)), len(temp) - 1)
    trace, label = temp[i].astype(np.float32), label[i]
    strengths = (0.0, 0.25, 0.5, 0.625, 0.75, 0.875, 1.0)
    for start, asked in (("high", "low"), ("low", "high")):
        seq = generate_sequence(trace, start, model=model, seed=1)
        made = [expressiveness_of(generate_sequence(trace, asked, model=model, seed=10 + k).pspi, label) for k in range(args.draws)]
        print(f"input generated {start!r}, edited to {asked!r} (requested {model.spec.presets[asked]:.2f}; "
              f"generation achieves {np.mean(made):.2f})")
        print("  strength  achieved expressiveness  r(PSPI, input's)")
        for s in strengths:
            outs = [edit(seq, strength=s, expressiveness=asked, model=model, seed=k, desc=None) for k in range(args.draws)]
            x = [expressiveness_of(o.pspi, label) for o in outs]
            r = [np.corrcoef(o.pspi, seq.pspi)[0, 1] if o.pspi.std() > 0 else 1.0 for o in outs]
            print(f"  {s:8.3f}  {np.mean(x):6.2f} ± {np.std(x):4.2f}           {np.mean(r):5.2f}")
    later = np.concatenate([np.full(10 * FPS, 32.0, np.float32), trace[: -10 * FPS]])
    seq = generate_sequence(trace, "high", model=model, seed=1)
    own = np.median([best_lag(later, generate_sequence(later, "high", model=model, seed=30 + k).pspi) for k in range(args.draws)])
    print(f"re-timed: the stimulus 10 s later; the model's own delay {own / FPS:.2f} s")
    for s in strengths[2:]:
        lags = [best_lag(later, edit(seq, strength=s, stimulus=later, model=model, seed=k, desc=None).pspi) / FPS
                for k in range(args.draws)]
        print(f"  {s:8.3f}  best lag {np.mean(lags):5.2f} s")


if __name__ == "__main__":
    main()
