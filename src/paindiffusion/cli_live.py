"""``paindiffusion demo`` (the live face in a local web page) and ``paindiffusion stream`` (headless live
streaming to robots and avatars over OSC, WebSocket or stdout, controlled over OSC, serial, stdin or a CSV)."""

from __future__ import annotations

import re
import sys
import time
import webbrowser
from pathlib import Path
from typing import Annotated, Optional

import typer

from .biovid import BASELINE_C, FPS
from .errors import PainDiffusionError


def load_model(checkpoint: Optional[Path], threads: int):
    """The model a command runs (the shipped one without ``checkpoint``) on ``threads`` torch threads."""
    import torch

    from .checkpoint import PainModel

    if threads < 1:
        raise PainDiffusionError(f"--threads {threads} must be ≥ 1")
    torch.set_num_threads(threads)
    return PainModel.load(checkpoint)


def _wait(seconds: Optional[float]) -> None:
    """Until --seconds have passed (forever without it) or Ctrl-C / SIGTERM, the usual way to stop a live
    command: it then says "stopped" (it writes no files, so there is no partial output to speak of)."""
    end = None if seconds is None else time.monotonic() + seconds
    try:
        while end is None or time.monotonic() < end:
            time.sleep(0.2 if end is None else max(0.0, min(0.2, end - time.monotonic())))
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)


def _check_token(token: Optional[str]) -> None:
    if token is not None and not re.fullmatch(r"[A-Za-z0-9_.~-]{8,128}", token):
        raise PainDiffusionError("--token must be 8-128 letters, digits or _.~- (it goes into a URL)")


def serve_until_stopped(server, url: str, open_browser: bool, seconds: Optional[float]) -> None:
    """A started web server (demo, study) until --seconds have passed or Ctrl-C; then it is stopped."""
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(url)
    try:
        _wait(seconds)
    finally:
        server.stop()


def demo_command(
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1 (0 = any free port)")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="open the page in the default browser")] = False,
    size: Annotated[int, typer.Option("--size", help="face image width and height in pixels (128-768)")] = 320,
    viewers: Annotated[int, typer.Option("--viewers", help="most tabs at once (each its own patient)")] = 8,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="model folder (default: the shipped one)")] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads")] = 1,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="stop after SECONDS (default: until Ctrl-C)")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="token that non-browser WebSocket clients add as "
                                                 "?token=… (default: a new random one, printed at start)")] = None,
) -> None:
    """A live face that reacts to heat, in a local web page (127.0.0.1; no network needed). Only the page itself
    (Host and Origin 127.0.0.1/localhost at this port) can use it; other pages on the web are refused."""
    from .live.server import DemoServer

    if not 0 <= port < 65536:
        raise PainDiffusionError(f"--port {port} must be 0-65535")
    if not 128 <= size <= 768:
        raise PainDiffusionError(f"--size {size} must be 128-768 pixels")
    if not 1 <= viewers <= 64:
        raise PainDiffusionError(f"--viewers {viewers} must be 1-64")
    if seconds is not None and not seconds > 0:
        raise PainDiffusionError(f"--seconds {seconds} must be positive")
    _check_token(token)
    server = DemoServer(load_model(checkpoint, threads), port=port, size=size, max_viewers=viewers, token=token)
    url = server.start()
    typer.echo(f"PainDiffusion live demo: {url}  (Ctrl-C to stop; non-browser clients: {server.client_url})", err=False)
    serve_until_stopped(server, url, open_browser, seconds)


def stream_command(
    osc: Annotated[Optional[list[str]], typer.Option("--osc", help="send OSC to HOST:PORT (repeatable)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="OSC content: facs (/paindiffusion/... addresses) or "
                                     "arkit (VMC /VMC/Ext/Blend/Val + Apply)")] = "facs",
    websocket: Annotated[Optional[int], typer.Option("--websocket", help="serve JSON frames on ws://127.0.0.1:PORT/ "
                                                     "(non-browser clients add ?token=…, printed at start)")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="the --websocket token (default: a new random one)")] = None,
    allow_origin: Annotated[Optional[list[str]], typer.Option("--allow-origin", help="a web page origin that may read "
                                                              "--websocket, e.g. http://localhost:3000 (repeatable)")] = None,
    stdout: Annotated[bool, typer.Option("--stdout", help="write one JSON line per frame")] = False,
    inputs: Annotated[Optional[list[str]], typer.Option("--input", help="controls from osc:PORT, serial:DEVICE, "
                                                        "stdin or FILE.csv (repeatable)")] = None,
    mapping: Annotated[Optional[str], typer.Option("--map", help="linear map of serial values to °C: "
                                                   "0:150:32:50 maps a device's 0-150 (the authors' arm angle) to 32-50 °C")] = None,
    batch: Annotated[int, typer.Option("--batch", help="patients generated together (one model call per step)")] = 1,
    stimulus: Annotated[float, typer.Option("--stimulus", help="starting heat in °C")] = BASELINE_C,
    expressiveness: Annotated[str, typer.Option("--expressiveness", help="low, medium, high or 0-16")] = "medium",
    emotion: Annotated[str, typer.Option("--emotion", help="one of the 8 AffectNet classes")] = "Neutral",
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="the patients' pain threshold, °C (default: the model's)")] = None,
    tolerance: Annotated[Optional[float], typer.Option("--tolerance", help="the patients' pain tolerance, °C (default: the model's)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the first patient (patient k gets seed + k)")] = 0,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="stop after SECONDS (default: until Ctrl-C)")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="model folder (default: the shipped one)")] = None,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads")] = 1,
) -> None:
    """Stream live faces at 25 frames per second of wall time to robots and avatars (headless)."""
    from .live.generator import LiveGenerator
    from .live.inputs import RangeMap, open_input
    from .live.outputs import OscOut, StdoutOut, WebSocketOut

    if fmt not in ("facs", "arkit"):
        raise PainDiffusionError(f"unknown --format {fmt!r}; use facs or arkit")
    if not (osc or websocket is not None or stdout):
        raise PainDiffusionError("give at least one output: --osc HOST:PORT, --websocket PORT or --stdout")
    if not 1 <= batch <= 64:
        raise PainDiffusionError(f"--batch {batch} must be 1-64")
    if seconds is not None and not seconds > 0:
        raise PainDiffusionError(f"--seconds {seconds} must be positive")
    if not 0 <= seed < 2**62:
        raise PainDiffusionError(f"--seed {seed} must be 0 or more")
    if websocket is not None and not 0 <= websocket < 65536:
        raise PainDiffusionError(f"--websocket {websocket} must be a port 0-65535")
    _check_token(token)
    for origin in allow_origin or []:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise PainDiffusionError(f"--allow-origin {origin!r} must be an origin: scheme and host[:port], "
                                     "e.g. http://localhost:3000")
    mapped = RangeMap(mapping)
    if mapping is not None and not any(s.startswith("serial:") for s in inputs or []):
        raise PainDiffusionError("--map applies to --input serial:DEVICE; add one or drop --map")
    model = load_model(checkpoint, threads)
    outputs, sources, generator = [], [], None
    try:
        outputs += [OscOut(target, fmt, batch, model.space) for target in osc or []]
        if websocket is not None:
            outputs.append(WebSocketOut(websocket, token=token, allow=tuple(allow_origin or ())))
        if stdout:
            outputs.append(StdoutOut())
        generator = LiveGenerator(model)
        patients = []

        def sink(frame):
            for out in outputs:
                out(frame)

        for k in range(batch):
            patients.append(generator.join(sink, seed=seed + k, stimulus=stimulus, expressiveness=expressiveness,
                                           emotion=emotion, threshold=threshold, tolerance=tolerance))

        def control(patient, **values):
            if patient is None:
                targets = patients
            elif isinstance(patient, int) and 0 <= patient < len(patients):
                targets = [patients[patient]]
            else:
                raise PainDiffusionError(f"patient {patient} does not exist; --batch is {len(patients)}")
            for p in targets[:1]:
                p.set(**values)  # checks first: a bad value changes no patient
            for p in targets[1:]:
                p.set(**values)

        sources = [open_input(spec, control, mapped, generator.clock) for spec in inputs or []]
        generator.start()
        for s in sources:
            s.start()
        what = ", ".join([f"OSC {fmt} → {t}" for t in osc or []] + [o.url for o in outputs if isinstance(o, WebSocketOut)]
                         + (["stdout"] if stdout else []))
        typer.echo(f"streaming {batch} patient(s) at {FPS} fps: {what}; inputs: {', '.join(inputs or []) or 'none'}", err=True)
        _wait(seconds)
    finally:
        for s in sources:
            s.stop()
        if generator is not None:
            generator.stop()
        for out in outputs:
            close = getattr(out, "close", None)
            if close:
                close()
