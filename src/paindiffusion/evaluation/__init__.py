"""Evaluation of a trained model on held-out data: metrics, baselines, report (docs/evaluation.md).

``run_evaluation(model, out_dir, data=None, quick=True, draws=3, seed=0) -> dict`` is the entry point; the
CLI is ``paindiffusion evaluate``. ``realism_two_sample_test(real, generated, fps, seed=…) -> dict`` is the machine
observer's realism figure (a classifier two-sample test, 50 % = indistinguishable).
"""

from .observer import realism_two_sample_test
from .runner import EvalConfig, run_evaluation

__all__ = ["EvalConfig", "realism_two_sample_test", "run_evaluation"]
