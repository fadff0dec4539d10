"""Evaluate a trained run and ship it as the package's default checkpoint.

    python scripts/ship_model.py runs/v6/model runs/data300 [--minutes 10] --name paindiffusion-synthetic-v6

Writes the test metrics into the checkpoint's ``info`` (they are the model card's numbers) and saves it,
fp16, to src/paindiffusion/assets/model. The numbers come from the evaluation (``paindiffusion.evaluation``,
quick run: 3 held-out draws of fresh subjects, mean ± 95% interval; see docs/evaluation.md) plus the PSPI
following on the packed data's own test subjects. It ships with the sampler defaults (``SamplerSettings()``:
the recipe's sampler, chosen on validation subjects, MODEL_CARD.md). Regenerate the full report afterwards with
scripts/evaluate_shipped.sh. See scripts/train_shipped.sh for the whole recipe.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from paindiffusion.checkpoint import PainModel
from paindiffusion.dataset import PackedData
from paindiffusion.heldout_checks import expressiveness_response, pspi_following
from paindiffusion.evaluation import run_evaluation
from paindiffusion.evaluation.summary import model_card_metrics
from paindiffusion.sampling import SamplerSettings

ASSET = Path(__file__).resolve().parents[1] / "src" / "paindiffusion" / "assets" / "model"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of each test recording to generate")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--name", required=True, help="checkpoint name recorded in its config")
    ap.add_argument("--dry-run", action="store_true", help="print the metrics, do not ship")
    a = ap.parse_args()
    torch.set_num_threads(2)
    model = PainModel.load(a.run_model)
    if "recipe" not in model.info:
        raise SystemExit(f"{a.run_model}: its config.json records no training recipe (info.recipe); train it with "
                         f"this release's 'paindiffusion train'")
    model.sampler = SamplerSettings().validate()  # the recipe's sampler
    data = PackedData(a.data)
    t0 = time.time()
    runs = [pspi_following(model, data, "test", a.minutes * 60, seed) for seed in range(a.seeds)]
    follow = {
        "pspi_pearson_r_model": float(np.mean([r.model_r for r in runs])),
        "pspi_pearson_r_model_per_seed": [round(r.model_r, 4) for r in runs],
        "pspi_pearson_r_random_clip": float(np.mean([r.random_clip_r for r in runs])),
        "pspi_pearson_r_rule_based_random_subject": float(np.mean([r.rule_based_r for r in runs])),
        "per_recording_seed0": {k: round(v, 4) for k, v in runs[0].per_recording.items()},
    }
    expr = expressiveness_response(model, seconds=180, seed=0)
    metrics = {"sampler": model.sampler.to_dict(), "test_subjects": [data.recordings[i]["name"] for i in data.split("test")],
               "minutes_per_recording": a.minutes, "seeds": a.seeds, **follow,
               "mean_pspi_by_expressiveness_preset": {k: round(v, 3) for k, v in expr.items()},
               "evaluation": model_card_metrics(run_evaluation(model, None, quick=True, seed=0, progress=False)),
               "eval_seconds": round(time.time() - t0, 1),
               "note": "Pearson r of 0.5 s-smoothed PSPI vs the cohort's ground truth, mean over recordings"}
    print(json.dumps(metrics, indent=1))
    if not a.dry_run:
        cohort = Path(data.meta["source"]) / "cohort.json"
        cohort_info = json.loads(cohort.read_text()) if cohort.is_file() else {}
        model.info = {**model.info, "name": a.name, "cohort": cohort_info, "test_metrics": metrics}
        model.save(ASSET, half=True)
        print(f"shipped to {ASSET}")


if __name__ == "__main__":
    main()
