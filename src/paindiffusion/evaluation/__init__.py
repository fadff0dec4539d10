"""Evaluation of a trained model on held-out data: metrics, baselines, report (docs/evaluation.md).

``run_evaluation(model, out_dir, data=None, quick=True, draws=3, seed=0) -> dict`` is the entry point; the
CLI is ``paindiffusion evaluate``.
"""

from .runner import EvalConfig, run_evaluation

__all__ = ["EvalConfig", "run_evaluation"]
