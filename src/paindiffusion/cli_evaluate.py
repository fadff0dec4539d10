"""``paindiffusion evaluate``: score a checkpoint on held-out data against fair baselines; write a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def evaluate_command(
    checkpoint: Annotated[Optional[Path], typer.Argument(help="checkpoint folder (default: the shipped model)")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="packed dataset: evaluate on its test split "
                                                 "(default: freshly simulated held-out cohorts, seed 7000 + draw)")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="report folder (report.md/.html/.json, images/); "
                                      "replaced if it holds an earlier report")] = Path("evaluation-report"),
    quick: Annotated[bool, typer.Option("--quick/--full", help="quick (≤ 5 min on 2 cores) or the full run "
                                        "(all baselines, ablations, 20-min drift; ≤ 30 min)")] = True,
    draws: Annotated[Optional[int], typer.Option(help="held-out draws (new subjects and seeds each; default 3)")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="sampling seed of the run (same seed, same report)")] = 0,
    drift_minutes: Annotated[Optional[float], typer.Option(help="length of the long rollout in the full run "
                                                           "(default 20; 60 for the one-hour check)")] = None,
    threads: Annotated[int, typer.Option(min=1, max=1024, help="CPU threads for torch (1 is the most efficient on a shared machine: 'OpenMP threads spin-wait')")] = 1,
    as_seen: Annotated[bool, typer.Option("--as-seen", help="also score PSPI as a viewer sees it: render each "
                                          "generated sequence, read it back with the face tracker (needs .[track]; "
                                          "slow: ~2 frames per ms of video on one core)")] = False,
) -> None:
    """Evaluate a model: paper-compatible and corrected metrics, baselines, controls, timing; one report."""
    from .checkpoint import PainModel
    from .errors import PainDiffusionError
    from .files import check_output_dir
    from .evaluation import EvalConfig, run_evaluation
    from .evaluation.report import REPORT_KIND

    inputs = tuple(p for p in (checkpoint, data) if p is not None)
    check_output_dir(out, True, inputs, kind=REPORT_KIND)  # only an earlier report is replaced
    if draws is not None and draws < 1:
        raise PainDiffusionError(f"--draws must be at least 1 (got {draws})")
    if drift_minutes is not None and not drift_minutes > 0:
        raise PainDiffusionError(f"--drift-minutes must be positive (got {drift_minutes})")
    model = PainModel.load(checkpoint)
    cfg = EvalConfig.quick() if quick else EvalConfig.full(**({"drift_minutes": drift_minutes} if drift_minutes else {}))
    seen = _pspi_as_seen(model.space) if as_seen else None
    report = run_evaluation(model, out, data=data, config=cfg, draws=draws, seed=seed, threads=threads, pspi_as_seen=seen)
    for key, item in report["targets"].items():
        mark = {True: "pass", False: "FAIL", None: "n/a"}[item["pass"]]
        typer.echo(f"{mark:4}  {key}: {item['value']}  (target {item['target']})")
    typer.echo(f"wrote {out / 'report.md'} ({report['timing']['total_s']:.0f} s)")


def _pspi_as_seen(space):
    """(B, T, dim) generated frames → (B, T) PSPI read back from their rendered videos by the face tracker."""
    import tempfile

    import numpy as np

    from .errors import PainDiffusionError
    from .render import save_output
    from .sequence import FaceSequence

    try:
        from .tracking import pspi_as_seen
    except ImportError as e:
        raise PainDiffusionError(f"--as-seen needs the face tracker ({e}); install it with scripts/setup.sh (.[track])") from None

    def score(frames: np.ndarray) -> np.ndarray:
        out = np.zeros(frames.shape[:2], np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            for i, f in enumerate(frames):
                path = save_output(f"{tmp}/seq{i}.mp4", FaceSequence(space, f, None, None))
                seen = pspi_as_seen(path)
                n = min(len(seen), len(out[i]))
                out[i, :n] = np.nan_to_num(seen[:n])
        return out

    return score
