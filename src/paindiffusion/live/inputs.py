"""Where live controls come from: OSC messages, a serial device, stdin lines, or a CSV played at wall-clock
speed. Every source calls ``control(patient, NAME=value, ...)`` with NAME one of the controls
(:data:`~paindiffusion.controls.CONTROLS`: stimulus, expressiveness, emotion, threshold, tolerance; patient None =
all); a bad or missing value is reported once per kind and the last good one stays in force; a lost device is
reopened, never stopping the stream. Every line, message and number is bounded (:mod:`.guard`): a line
over 4 KiB, a 400-digit number or JSON nested 100 000 deep is refused in one line and the input keeps working.

Lines (stdin and serial) are ``VALUE`` (heat; from a serial device through ``--map``), ``NAME VALUE``,
optionally prefixed by ``@K`` for patient K of a batch, or a JSON object such as ``{"stimulus": 45, "patient": 1}``.

OSC (UDP): ``/paindiffusion/NAME`` with one value (°C for stimulus, threshold and tolerance; expressiveness 0-16 or
low/medium/high; emotion a class name); ``/paindiffusion/<K>/NAME`` for patient K only.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Callable

from ..biovid import FPS, TEMPERATURE_RANGE_C
from ..controls import CONTROLS
from ..errors import PainDiffusionError
from .generator import WallClock
from .guard import MAX_LINE_BYTES, TOO_LONG, BoundedLines, Once, parse_bounded_json, split_host_port

IN_CELSIUS = ("stimulus", "threshold", "tolerance")  # text lines carry these as numbers
Control = Callable[..., None]


class RangeMap:
    """``--map A:B:C:D``: a device's A..B → C..D °C, linear, clipped to C..D (the authors' arm: 0:150:32:50)."""

    def __init__(self, text: str | None):
        self.text, self.ab_cd = text, None
        if text is None:
            return
        try:
            a, b, c, d = (float(x) for x in str(text).split(":"))
        except ValueError:
            raise PainDiffusionError(f"--map {text!r} must be FROM_LOW:FROM_HIGH:TO_LOW:TO_HIGH numbers, "
                                     "e.g. 0:150:32:50 (arm angle 0-150° → 32-50 °C)") from None
        if a == b or not all(abs(x) < 1e9 for x in (a, b, c, d)):
            raise PainDiffusionError(f"--map {text!r} needs two different finite input ends, e.g. 0:150:32:50")
        lo, hi = TEMPERATURE_RANGE_C
        if not (lo <= min(c, d) and max(c, d) <= hi):
            raise PainDiffusionError(f"--map {text!r} maps to {min(c, d):g}-{max(c, d):g} °C, outside the accepted "
                                     f"{lo:g}-{hi:g} °C; the last two numbers are temperatures, e.g. 0:150:32:50")
        self.ab_cd = (a, b, c, d)

    def __call__(self, x: float) -> float:
        if self.ab_cd is None:
            return x
        a, b, c, d = self.ab_cd
        y = c + (x - a) * (d - c) / (b - a)
        return min(max(y, min(c, d)), max(c, d))


def parse_line(line: str, mapped: RangeMap | None = None) -> tuple[int | None, dict]:
    """One text line → (patient or None, controls). Raises PainDiffusionError naming the problem."""
    text = line.strip()
    if len(text) > MAX_LINE_BYTES:
        raise PainDiffusionError(f"line of {len(text)} characters is longer than {MAX_LINE_BYTES}; not a control")
    if text.startswith("{"):
        doc = parse_bounded_json(text)
        if not isinstance(doc, dict) or not set(doc) <= {*CONTROLS, "patient"} or not set(doc) & set(CONTROLS):
            raise PainDiffusionError(f"JSON line {text!r:.60} must have {'/'.join(CONTROLS)} (and patient)")
        patient = doc.pop("patient", None)
        if patient is not None and (isinstance(patient, bool) or not isinstance(patient, int)):
            raise PainDiffusionError(f"patient {patient!r} must be a whole number")
        return patient, doc
    words = text.split()
    patient = None
    if words and words[0].startswith("@"):
        if not (words[0][1:].isdigit() and len(words[0]) <= 7):
            raise PainDiffusionError(f"{words[0]!r} must be @K with K a patient number")
        patient, words = int(words[0][1:]), words[1:]
    if len(words) == 1:
        try:
            x = float(words[0].replace(",", "."))
        except ValueError:
            raise PainDiffusionError(f"line {text!r:.60} is not a number") from None
        return patient, {"stimulus": mapped(x) if mapped else x}
    if len(words) == 2 and words[0].lower() in CONTROLS:
        name, value = words[0].lower(), words[1]
        if name in IN_CELSIUS:
            try:
                return patient, {name: float(value)}
            except ValueError:
                raise PainDiffusionError(f"{name} {value!r} is not a number in °C") from None
        return patient, {name: value}
    raise PainDiffusionError(f"line {text!r:.60} is neither VALUE nor '{'|'.join(CONTROLS)} VALUE'")


class Source:
    """A control source running in a daemon thread."""

    name = "input"

    def __init__(self, control: Control):
        self.control, self.report = control, Once(self.name)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._guarded, name=f"paindiffusion-{self.name}", daemon=True)
        self.last_good: dict = {}

    def start(self) -> "Source":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def apply_line(self, line: str | None, mapped: RangeMap | None = None) -> None:
        """Apply one line (``TOO_LONG``: a line over the limit, skipped); a bad one is reported, once per kind."""
        if line is TOO_LONG:
            self.report("long", f"a line longer than {MAX_LINE_BYTES} bytes was skipped; keeping the last good values")
            return
        if not line.strip():
            return
        controls: dict = {}
        try:
            patient, controls = parse_line(line, mapped)
            self.control(patient, **controls)
            self.last_good.update(controls)
        except (PainDiffusionError, ValueError, ArithmeticError) as e:  # bad input, never a dead source
            kind = next(iter(controls), "line")  # a control's name or "line": a bounded set of kinds
            self.report(kind, f"{' '.join(str(e).split())[:200]}; keeping the last good value")

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception as e:  # a source that dies is reported; the stream and the other sources go on
            self.report("died", f"stopped ({type(e).__name__}: {e}); the last good values stay in force")

    def run(self) -> None:
        raise NotImplementedError


class StdinIn(Source):
    """Control lines on stdin (a byte stream), each at most :data:`MAX_LINE_BYTES` (:class:`BoundedLines`)."""

    name = "stdin"

    def __init__(self, control: Control, stream=None):
        super().__init__(control)
        self.stream = stream or sys.stdin.buffer

    def run(self) -> None:
        for line in BoundedLines(self.stream):
            if self._stop.is_set():
                return
            self.apply_line(line)
        self.report("eof", "stdin closed; the last good values stay in force")


class SerialIn(Source):
    """A device that prints one number (or control line) per line, through ``--map``. A lost device is
    reopened every second; garbage lines are reported once."""

    name = "serial"

    def __init__(self, control: Control, device: str, mapped: RangeMap | None = None, baud: int = 115200):
        import serial

        super().__init__(control)
        self.device, self.mapped, self.baud = device, mapped, baud
        try:
            self.port = serial.Serial(device, baud, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as e:
            raise PainDiffusionError(f"cannot open serial device {device!r} ({e}); check the path and permissions") from None

    def run(self) -> None:
        import serial

        buf = b""
        while not self._stop.is_set():
            try:
                if self.port is None:
                    self.port = serial.Serial(self.device, self.baud, timeout=0.2)
                    self.report("back", f"{self.device} is back")
                    self.report.seen.discard("lost")
                buf += self.port.read(256)
            except (serial.SerialException, OSError) as e:
                self.report("lost", f"{self.device} lost ({e}); holding the last value, reopening every second")
                self.report.seen.discard("back")
                if self.port is not None:
                    self.port.close()
                self.port, buf = None, b""
                self._stop.wait(1.0)
                continue
            *lines, buf = buf.split(b"\n")
            buf = buf[-MAX_LINE_BYTES:]  # a device that never sends a newline cannot grow memory
            for raw in lines:
                self.apply_line(raw.decode("utf-8", "replace").strip("\r\x00"), self.mapped)


class CsvIn(Source):
    """A stimulus CSV (time, temperature; as for ``generate --stimulus``) played at wall-clock speed (``clock``:
    the generator's :class:`~paindiffusion.live.generator.WallClock`, or a test's); its last value holds when it
    ends."""

    name = "csv"

    def __init__(self, control: Control, path: str | Path, clock: WallClock | None = None):
        from ..stimulus import stimulus_from_csv

        super().__init__(control)
        self.trace = stimulus_from_csv(path)  # °C per frame at 25 fps; one-line errors for bad files
        self.clock = clock or WallClock()

    def run(self) -> None:
        t0 = self.clock()
        for i, v in enumerate(self.trace.tolist()):
            if self.clock.wait(self._stop, t0 + i / FPS - self.clock()):
                return
            self.control(None, stimulus=v)
        self.report("end", f"the CSV ended after {len(self.trace) / FPS:.1f} s; its last value holds")


class OscIn(Source):
    """OSC messages on UDP ``HOST:PORT`` (python-osc's server; default host 127.0.0.1)."""

    name = "osc"

    def __init__(self, control: Control, port: int, host: str = "127.0.0.1"):
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        super().__init__(control)
        d = Dispatcher()
        d.map("/paindiffusion/*", self._handle)
        d.set_default_handler(lambda address, *args: self.report(
            "address", f"unknown address {address[:80]}; use /paindiffusion/stimulus, /expressiveness or /emotion"))
        report = self.report

        class Server(BlockingOSCUDPServer):
            def handle_error(self, request, client_address):  # a datagram python-osc cannot parse
                e = sys.exc_info()[1]
                report("datagram", f"a malformed OSC datagram from {client_address[0]} was ignored "
                       f"({type(e).__name__}: {' '.join(str(e).split())[:80]})")

        try:
            self.server = Server((host, port), d)
        except OSError as e:
            raise PainDiffusionError(f"--input osc cannot listen on {host}:{port} ({e.strerror or e}); "
                                     "is the port in use? choose another") from None
        self.server.timeout = 0.2

    def _handle(self, address: str, *args) -> None:
        parts = address.strip("/").split("/")[1:]
        patient = None
        if len(parts) == 2 and parts[0].isdigit():
            patient, parts = int(parts[0]), parts[1:]
        if len(parts) != 1 or parts[0] not in CONTROLS or len(args) != 1:
            self.report("address", f"{address[:80]} {args!r:.40} is not /paindiffusion/[K/]"
                        f"{'|'.join(CONTROLS)} with one value")
            return
        try:
            self.control(patient, **{parts[0]: args[0]})
            self.last_good[parts[0]] = args[0]
        except (PainDiffusionError, ValueError, ArithmeticError) as e:
            self.report(parts[0], f"{' '.join(str(e).split())[:200]}; keeping the last good value")

    def run(self) -> None:
        while not self._stop.is_set():
            self.server.handle_request()
        self.server.server_close()


def open_input(spec: str, control: Control, mapped: RangeMap | None = None, clock: WallClock | None = None) -> Source:
    """``osc:PORT`` / ``osc:HOST:PORT``, ``serial:DEVICE``, ``stdin`` or a CSV file path (played on ``clock``)."""
    if spec == "stdin":
        return StdinIn(control)
    if spec.startswith("osc:"):
        rest = spec[4:]
        host, port = split_host_port(rest if ":" in rest else f"127.0.0.1:{rest}")
        if not host or port is None:
            raise PainDiffusionError(f"--input {spec!r} must be osc:PORT or osc:HOST:PORT")
        return OscIn(control, port, host)
    if spec.startswith("serial:"):
        return SerialIn(control, spec[7:], mapped)
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".tsv", ".txt") or path.exists():
        return CsvIn(control, path, clock)
    raise PainDiffusionError(f"--input {spec!r} is not osc:PORT, serial:DEVICE, stdin or a CSV file")
