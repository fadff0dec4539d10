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
    seed: Annotated[int, typer.Option(help="sampling seed of the run (same seed, same report)")] = 0,
    drift_minutes: Annotated[Optional[float], typer.Option(help="length of the long rollout in the full run "
                                                           "(default 20; 60 for the one-hour check)")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (1 is the most efficient on a shared machine: 'OpenMP threads spin-wait')")] = 1,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")] = True,
) -> None:
    """Evaluate a model: paper-compatible and corrected metrics, baselines, controls, timing; one report."""
    from .checkpoint import PainModel
    from .errors import PainDiffusionError
    from .evaluation import EvalConfig, run_evaluation

    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "report.json").is_file())):
        raise PainDiffusionError("output exists and is not an earlier report folder; choose another -o", out)
    if draws is not None and draws < 1:
        raise PainDiffusionError(f"--draws must be at least 1 (got {draws})")
    if drift_minutes is not None and not drift_minutes > 0:
        raise PainDiffusionError(f"--drift-minutes must be positive (got {drift_minutes})")
    model = PainModel.load(checkpoint)
    cfg = EvalConfig.quick() if quick else EvalConfig.full(**({"drift_minutes": drift_minutes} if drift_minutes else {}))
    report = run_evaluation(model, out, data=data, config=cfg, draws=draws, seed=seed, progress=progress, threads=threads)
    for key, item in report["must_show"].items():
        mark = {True: "pass", False: "FAIL", None: "n/a"}[item["pass"]]
        typer.echo(f"{mark:4}  {key}: {item['value']}  (target {item['target']})")
    typer.echo(f"wrote {out / 'report.md'} ({report['timing']['total_s']:.0f} s)")
