"""``paindiffusion study make | serve | analyze | observe``: a perceptual study, as in the paper (docs/study.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_live import load_model, serve_until_stopped
from .errors import PainDiffusionError

study_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                        help="Run a perceptual study: make the clips, serve them to participants, analyse the answers.")


@study_app.command("make")
def make_command(
    study: Annotated[Path, typer.Argument(help="study folder to create (clips, manifest.json, material)")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="model folder (default: the shipped model)")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="packed dataset: windows from its test split "
                                                 "(default: a fresh simulated cohort, seed 7500 + --seed)")] = None,
    stimulus: Annotated[Optional[list[Path]], typer.Option("--stimulus", help="stimulus CSV (time, temperature), one "
                                                           "window each (repeatable); no real face then: no realism block")] = None,
    windows: Annotated[int, typer.Option(help="windows per block (each participant sees each once per block)")] = 5,
    seconds: Annotated[float, typer.Option(help="clip length in seconds (2-30)")] = 10.0,
    tries: Annotated[int, typer.Option(help="tries per generator, side by side in the diversity block (1-4)")] = 3,
    baselines: Annotated[str, typer.Option(help="comma-separated: rules (given the controls), arx (ridge ARX), random-clip, "
                                           "or any evaluation baseline's name; '' for none")] = "rules,arx,random-clip",
    size: Annotated[int, typer.Option(help="face size in pixels (even, 64-768)")] = 320,
    strip: Annotated[bool, typer.Option("--strip/--no-strip", help="the stimulus under every face (the reaction block needs it)")] = True,
    catch: Annotated[bool, typer.Option("--catch/--no-catch", help="one attention trial: the real face against a lifeless one")] = True,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="seed of the cohort, sampling, baselines and plan")] = 0,
    expressiveness: Annotated[str, typer.Option(help="with --stimulus: low/medium/high or a number")] = "medium",
    emotion: Annotated[str, typer.Option(help="with --stimulus: the emotion")] = "Neutral",
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
    overwrite: Annotated[bool, typer.Option(help="replace STUDY if it is a study made earlier (never one with results)")] = False,
) -> None:
    """Render the study's clips (same renderer, camera and face for every source) and write its manifest."""
    from .facespace import emotion_index
    from .stimulus import stimulus_from_csv
    from .study.make import make_study
    from .study.material import StudyConfig, baseline_names

    cfg = StudyConfig(windows=windows, seconds=seconds, tries=tries, baselines=baseline_names(baselines), size=size,
                      strip=strip, catch=catch, seed=seed).validate()
    if stimulus and data:
        raise PainDiffusionError("give either --data or --stimulus, not both")
    emotion_index(emotion)  # an unknown emotion fails before any work
    stimuli = [stimulus_from_csv(p) for p in stimulus] if stimulus else None
    model = load_model(checkpoint, threads)
    m = make_study(study, model, cfg, data=data, stimuli=stimuli, stimulus_names=[p.stem for p in stimulus or []],
                   expressiveness=expressiveness, emotion=emotion, overwrite=overwrite, checkpoint=checkpoint)
    typer.echo(f"wrote {study}: {len(m['clips'])} clips, {len(m['trials'])} trials, "
               f"{m['plan']['trials_per_participant']} per participant (plan repeats every {m['plan']['cycle']} "
               f"participants), blocks {', '.join(b['name'] for b in m['blocks'])}; {m['made_in_s']:.0f} s")


@study_app.command("serve")
def serve_command(
    study: Annotated[Path, typer.Argument(help="study folder (from 'study make')")],
    host: Annotated[str, typer.Option(help="address to listen on; 127.0.0.1 = this computer only, 0.0.0.0 = the "
                                      "room's network too (then an access code is required)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 = any free port)")] = 8100,
    access_code: Annotated[Optional[str], typer.Option("--access-code", help="the code participants type "
                                                       "(default with --host: 6 random digits, printed at start)")] = None,
    consent: Annotated[Optional[Path], typer.Option("--consent", help="your own consent text (UTF-8 text file; "
                                                    "paragraphs separated by blank lines)")] = None,
    allow_name: Annotated[Optional[list[str]], typer.Option("--allow-name", help="a host name participants may use in "
                                                            "the URL besides IP addresses (repeatable)")] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
    seconds: Annotated[Optional[float], typer.Option(help="stop after SECONDS (default: until Ctrl-C)")] = None,
) -> None:
    """Serve the study to participants; every answer is stored at once in STUDY/results/answers.sqlite."""
    from .live.guard import is_loopback
    from .study.access import AccessCode
    from .study.questions import CONSENT
    from .study.server import StudyServer

    if not 0 <= port < 65536:
        raise PainDiffusionError(f"--port {port} must be 0-65535")
    if seconds is not None and not seconds > 0:
        raise PainDiffusionError(f"--seconds {seconds} must be positive")
    code = access_code
    if code is None and not is_loopback(host):
        code = AccessCode.generate().code
    if code is not None and not (4 <= len(code.strip()) <= 40):
        raise PainDiffusionError("--access-code must be 4-40 characters")
    text = CONSENT if consent is None else _consent(consent)
    server = StudyServer(study, host, port, code.strip() if code else None, text, tuple(allow_name or ()))
    url = server.start()
    where = url if host not in ("0.0.0.0", "::") else url.replace(host if host != "::" else "[::]", "THIS-COMPUTER'S-IP")
    typer.echo(f"PainDiffusion study: {where}  (Ctrl-C to stop)")
    if code:
        typer.echo(f"access code: {code.strip()}")
    serve_until_stopped(server, url, open_browser, seconds)


def _consent(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise PainDiffusionError(f"cannot read the consent text ({e}); give a UTF-8 text file", path) from None
    paragraphs = tuple(" ".join(p.split()) for p in text.split("\n\n") if p.strip())
    if not paragraphs:
        raise PainDiffusionError("the consent text is empty", path)
    return paragraphs


@study_app.command("analyze")
def analyze_command(
    study: Annotated[Path, typer.Argument(help="study folder with answers")],
    out: Annotated[Path, typer.Option("-o", "--out", help="report folder (report.md/.html/.json, answers.csv, images/); "
                                      "replaced if it holds an earlier study report")],
    exclude_failed_catch: Annotated[bool, typer.Option("--exclude-failed-catch", help="leave out participants who "
                                                       "failed a catch trial")] = False,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="seed of the bootstrap")] = 0,
) -> None:
    """Preference rates with intervals and tests, ratings, position bias, groups, plots and the raw answers."""
    from .study.report import write_study_report

    rep = write_study_report(study, out, exclude_failed_catch, seed)
    for r in rep["preferences"]:
        if not r["catch"]:
            typer.echo(f"{r['block']}: {r['source']} vs {r['against']}: {100 * r['rate']:.1f} % "
                       f"[{100 * r['lo']:.1f}, {100 * r['hi']:.1f}] over {r['participants']} participants ({r['trials']} answers)")
    pb = rep["position_bias"]
    typer.echo(f"position: left chosen in {pb['left']} of {pb['answers']} side-by-side answers")
    typer.echo(f"wrote {out / 'report.md'}")


@study_app.command("observe")
def observe_command(
    study: Annotated[Path, typer.Argument(help="study folder (from 'study make')")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="model folder (default: the one the "
                                                       "study was made with)")] = None,
    recordings: Annotated[int, typer.Option(help="training recordings (fresh simulated subjects outside the study)")] = 16,
    minutes: Annotated[float, typer.Option(help="length of each training recording")] = 2.0,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1, help="seed of the training cohort and the classifier")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads")] = 1,
) -> None:
    """A machine observer answers the realism trials as its own participant (flagged as a machine)."""
    from .study.make import load_manifest
    from .study.observe import observe_study

    if not 0.5 <= minutes <= 30:
        raise PainDiffusionError(f"--minutes {minutes} must be 0.5-30")
    made_with = load_manifest(study)["sources"]
    if checkpoint is None:
        checkpoint = next((Path(s["checkpoint"]) for s in made_with.values() if s.get("kind") == "model" and s.get("checkpoint")), None)
    s = observe_study(study, load_model(checkpoint, threads), recordings, minutes, seed)
    typer.echo(f"machine observer trained on {s['trained_on']}; {s['answers']} realism trials answered")
    for source, (k, n) in s["taken_for_real"].items():
        typer.echo(f"  {source}: taken for the real patient in {k} of {n}")
