"""The live generator: several patients in one batched :class:`~paindiffusion.stream.PainStream`, paced at
25 frames per second of wall time.

Each viewer (a browser tab, an OSC/WebSocket/stdout stream slot) is a :class:`Patient` with its own controls.
One thread owns the stream: before every step it copies each patient's controls into the batch and splices in
joins, leaves and "new patient" restarts, so no other thread ever touches the stream and slot numbers never
race. A new patient's window (pyramid + warm-up, ~25 batch-1 calls) is built by a second thread
(:meth:`PainStream.prepare`), so a tab that joins never stalls the others. A step makes one stack (``group`` frames = 160 ms of face) for every patient in ONE model call; the frames
are then handed out one by one at their due times, and the next step runs as late as it safely can before
the next frame's due time (twice the recent step time ahead), so it picks up the newest controls. So the generator holds at most one stack ahead (no 1 s buffers) and
a control reaches the next step: at most 160 ms + one step's compute from input to frame.

Sinks are called from the generator thread and must not block (queue and drop); a sink that raises is dropped
from its patient with one message, never stopping the stream.

Pacing reads one :class:`WallClock` (injectable): what time it is, and waits that a stop cuts short. A test gives
a clock whose waits only move its own time, so the frames' due times are exact and no test waits in wall time.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..biovid import BASELINE_C, FPS, heat_notice
from ..errors import PainDiffusionError
from ..controls import CONTROLS, Controls
from ..stream import PainStream

__all__ = ["Frame", "LiveGenerator", "Patient", "LatencyLog", "WallClock"]


class WallClock:
    """The time pacing reads: ``clock()`` is now (seconds, monotonic) and ``clock.wait(stop, s)`` waits ``s``
    seconds unless ``stop`` is set first (then True). A callable, so it also serves where a plain clock function
    is asked for (:class:`~paindiffusion.live.guard.MessageBudget`)."""

    def __call__(self) -> float:
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(max(0.0, seconds))


@dataclass
class Frame:
    """One frame of one patient, as sinks receive it."""

    patient: int  # the patient's id (stable while it lives; not its slot in the batch)
    index: int  # frame number of this patient's stream (25 per second)
    values: np.ndarray  # (dim,) face frame in the model's face space (facs: 17 AUs 0-5, head pose in degrees)
    pspi: float
    stimulus: float  # °C the frame was made with
    expressiveness: float
    emotion: str
    due: float  # the generator clock's time at which the frame is due (index / 25 s after the patient's start)
    lag_ms: float  # how late the frame was handed out compared with its due time
    control_seq: int  # the latest control change (Patient.set's count) this frame was made with
    latency_ms: float | None = None  # on the first frame made with a new control: input arrival → frame made
    speed: float = 0.0  # generation speed: frames the last step made per second of compute, ÷ 25 (× real time)
    channels: tuple = field(default=(), repr=False)
    threshold: float = float("nan")  # the patient's pain threshold and tolerance (°C) the frame was made with
    tolerance: float = float("nan")
    notice: str | None = None  # e.g. the heat asked for is above the tolerance and felt as the tolerance


class Patient:
    """A viewer's patient: its own controls (validated at once, applied at the generator's next step) and
    the sink that receives its frames."""

    def __init__(self, pid: int, spec, sink: Callable[[Frame], None], seed: int, controls: dict,
                 clock: Callable[[], float] = time.monotonic):
        self.id, self.sink, self.seed, self.clock = pid, sink, seed, clock
        self._controls = Controls(spec, 1)
        self._controls.set(**controls)
        self._lock = threading.Lock()
        self.seq, self.changed_at = 0, None  # count of control changes, arrival time of the latest
        self.frames = 0
        self.applied_seq = 0  # the control change count the generator last applied

    def set(self, stimulus=None, expressiveness=None, emotion=None, arrived: float | None = None,
            tag: int | None = None, threshold=None, tolerance=None) -> int:
        """Change this patient's controls (one-line error, nothing changed, if bad). Returns the change's
        number (``tag`` if given: a client's own count), which the frames made with it carry."""
        with self._lock:
            self._controls.set(stimulus, expressiveness, emotion, threshold=threshold, tolerance=tolerance)
            self.seq = self.seq + 1 if tag is None else int(tag)
            self.changed_at = self.clock() if arrived is None else arrived
            return self.seq


    def snapshot(self) -> tuple[dict, int, float | None]:
        with self._lock:
            return self._controls.snapshot(), self.seq, self.changed_at

    @property
    def controls(self) -> dict:
        return self._controls.snapshot()


class LatencyLog:
    """Control-to-frame latencies (ms) and the largest frame lag, for the page and the benchmark."""

    def __init__(self, keep: int = 10_000):
        self.keep, self.latency, self.max_lag_ms, self.late_frames = keep, [], 0.0, 0

    def add_latency(self, ms: float) -> None:
        self.latency.append(ms)
        del self.latency[: -self.keep]

    def summary(self) -> dict:
        lat = np.asarray(self.latency) if self.latency else np.zeros(1)
        return {"latency_median_ms": float(np.median(lat)), "latency_p99_ms": float(np.percentile(lat, 99)),
                "latency_n": len(self.latency), "max_lag_ms": self.max_lag_ms, "late_frames": self.late_frames}


class LiveGenerator:
    """Generate for every joined patient at ``fps`` frames per second of ``clock`` time (wall time unless a test
    gives another clock), in one thread."""

    def __init__(self, model, settings=None, fps: float = FPS, max_patients: int = 16, resync_s: float = 0.5,
                 clock: WallClock | None = None):
        self.model, self.settings, self.fps = model, settings or model.sampler, float(fps)
        self.clock = clock or WallClock()
        self.max_patients, self.resync_s = max_patients, resync_s
        self.stream: PainStream | None = None
        self.patients: list[Patient] = []  # in slot order
        self._factory = PainStream(model, settings=self.settings)  # never stepped: it only prepares patients
        self._lock = threading.Lock()
        self._to_prepare = threading.Condition(self._lock)
        self._joins: collections.deque[Patient] = collections.deque()  # new patients, prepared first
        self._restarts: dict[int, Patient] = {}  # at most one pending "new patient" per patient (coalesced)
        self._ready: list[tuple[Patient, PainStream, bool]] = []  # (patient, its built window, is a restart)
        self._pending = 0
        self._leaving: set[int] = set()
        self._gone: set[int] = set()  # ids that left, also while their window was still being prepared
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._next_id = 0
        self.log = LatencyLog()
        self.steps, self.step_seconds, self.frames_out, self._recent = 0, 0.0, 0, 0.0
        self.thread = threading.Thread(target=self._run, name="paindiffusion-live", daemon=True)
        self.preparer = threading.Thread(target=self._prepare_loop, name="paindiffusion-prepare", daemon=True)

    # ---- any thread ---------------------------------------------------------------------------------------
    def join(self, sink: Callable[[Frame], None], seed: int | None = None, stimulus=BASELINE_C,
             expressiveness="medium", emotion="Neutral", threshold=None, tolerance=None) -> Patient:
        """A new patient; its frames go to ``sink`` from the next step on. Bad controls: one-line error."""
        with self._lock:
            if len(self.patients) + self._pending >= self.max_patients:
                raise PainDiffusionError(f"{self.max_patients} patients are live already; close one first")
            pid = self._next_id
            self._next_id += 1
            p = Patient(pid, self.model.spec, sink, pid if seed is None else int(seed),
                        dict(stimulus=stimulus, expressiveness=expressiveness, emotion=emotion, threshold=threshold,
                             tolerance=tolerance), self.clock)
            self._pending += 1
            self._joins.append(p)
            self._to_prepare.notify()
        return p

    def new_patient(self, patient: Patient, seed: int) -> None:
        """Replace a patient's person (fresh latents from ``seed``; controls stay) once it is prepared. Requests
        that arrive while one is pending are coalesced (the latest seed wins), so one viewer can never queue
        more than one preparation ahead of another viewer's join."""
        with self._lock:
            patient.seed = int(seed)
            if patient.id not in self._gone:
                self._restarts[patient.id] = patient
                self._to_prepare.notify()

    def leave(self, patient: Patient) -> None:
        """Stop a patient (its sink gets at most the rest of the current step's frames); others are not disturbed.
        A preparation still pending for it is dropped."""
        with self._lock:
            self._leaving.add(patient.id)
            self._gone.add(patient.id)
            self._restarts.pop(patient.id, None)
            if patient in self._joins:
                self._joins.remove(patient)
                self._pending -= 1
        self._wake.set()

    def preparations_pending(self) -> int:
        """Joins and restarts waiting for the preparer (at most one restart per patient)."""
        with self._lock:
            return len(self._joins) + len(self._restarts)

    def start(self) -> "LiveGenerator":
        self.thread.start()
        self.preparer.start()
        return self

    def stop(self) -> None:
        """Stop both threads and wait for them (at most 5 s each): a thread left inside a model call while the
        interpreter exits can abort the process."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._to_prepare.notify_all()
        # both threads run torch ops: one still inside an op when the interpreter exits aborts the process
        for t in (self.thread, self.preparer):
            if t.is_alive() and threading.current_thread() is not t:
                t.join(timeout=5)

    def stats(self) -> dict:
        speed = self.steps * self.model.config.group / max(self.step_seconds, 1e-9) / self.fps
        return {"patients": len(self.patients), "steps": self.steps, "frames_out": self.frames_out,
                "speed_x_realtime": speed, **self.log.summary()}

    # ---- the generator thread ----------------------------------------------------------------------------
    def _next_to_prepare(self) -> tuple[Patient, bool] | None:
        """The next window to build: a joining patient first, then one coalesced restart; None once stopped."""
        with self._lock:
            while not (self._joins or self._restarts or self._stop.is_set()):
                self._to_prepare.wait()
            if self._stop.is_set():
                return None
            if self._joins:
                return self._joins.popleft(), False
            return self._restarts.pop(next(iter(self._restarts))), True

    def _prepare_loop(self) -> None:
        while True:
            item = self._next_to_prepare()
            if item is None:
                return
            p, restart = item
            c = p.controls
            try:
                one = self._factory.prepare(p.seed, **{k: c[k][0] for k in CONTROLS})
            except Exception as e:  # never leave the generator without its preparer
                print(f"paindiffusion live: patient {p.id} could not start ({type(e).__name__}: {e})", file=sys.stderr)
                if not restart:
                    with self._lock:
                        self._pending -= 1
                continue
            with self._lock:
                self._ready.append((p, one, restart))
            self._wake.set()

    def _apply_membership(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            leaving, self._leaving = self._leaving, set()
            self._pending -= sum(1 for _, _, restart in ready if not restart)
        for p in list(self.patients):
            if p.id in leaving:
                self._drop(p)
        for p, one, restart in ready:
            if p.id in self._gone:
                continue
            if restart:
                if p in self.patients:
                    self.stream.reset(self.patients.index(p), prepared=one)
            elif self.stream is None:
                self.stream = one
                self.patients.append(p)
            else:
                self.stream.add(one)
                self.patients.append(p)

    def _drop(self, p: Patient) -> None:
        i = self.patients.index(p)
        self.patients.pop(i)
        if not self.patients:
            self.stream = None  # no viewer: nothing to compute; the next one starts a fresh window
        else:
            self.stream.remove(i)

    def _run(self) -> None:
        due = None  # due time of the next frame to hand out
        while not self._stop.is_set():
            self._apply_membership()
            if not self.patients:
                due = None
                self._wake.wait(0.1)
                self._wake.clear()
                continue
            if due is not None:  # step as late as it safely can, so it picks up the newest controls
                self.clock.wait(self._stop, due - self._step_estimate() - self.clock())
            snaps = [p.snapshot() for p in self.patients]
            self.stream.set_controls(**{k: [s[0][k][0] for s in snaps] for k in CONTROLS})
            t0 = self.clock()
            chunk = self.stream.step()
            made = self.clock()
            self.steps += 1
            self.step_seconds += made - t0
            self._recent = 0.8 * self._recent + 0.2 * (made - t0) if self._recent else made - t0
            speed = chunk.frames.shape[1] / max(made - t0, 1e-9) / self.fps
            if due is None or made - due > self.resync_s:  # first step, or fell far behind: restart the clock
                due = made
            self._hand_out(chunk, snaps, made, due, speed)
            due += chunk.frames.shape[1] / self.fps

    def _step_estimate(self) -> float:
        """Seconds to set aside for the next step: twice the recent step time plus 5 ms, at most one frame."""
        return min(1.0 / self.fps, 2.0 * self._recent + 0.005)

    def _hand_out(self, chunk, snaps, made: float, due: float, speed: float) -> None:
        patients = list(self.patients)
        first_seen = {}
        for p, (_, seq, changed_at) in zip(patients, snaps):
            if seq != p.applied_seq and changed_at is not None:
                first_seen[p.id] = (made - changed_at) * 1e3
                self.log.add_latency(first_seen[p.id])
            p.applied_seq = seq
        for k in range(chunk.frames.shape[1]):
            t = due + k / self.fps
            if self.clock.wait(self._stop, t - self.clock()):
                return
            lag = max(0.0, (self.clock() - t) * 1e3)
            self.log.max_lag_ms = max(self.log.max_lag_ms, lag)
            self.log.late_frames += lag > 1e3 / self.fps
            for b, (p, (c, seq, _)) in enumerate(zip(patients, snaps)):
                f = Frame(p.id, p.frames, chunk.frames[b, k], float(chunk.pspi[b, k]) if chunk.pspi is not None else float("nan"),
                          float(chunk.stimulus[b, k]), float(c["expressiveness"][0]), c["emotion"][0], t, lag, seq,
                          first_seen.pop(p.id, None) if k == 0 else None, speed, self.model.space.channels,
                          float(c["threshold"][0]), float(c["tolerance"][0]),
                          heat_notice(float(c["stimulus"][0]), float(c["tolerance"][0])))
                p.frames += 1
                self.frames_out += 1
                try:
                    p.sink(f)
                except Exception as e:  # a broken viewer must not stop the others
                    print(f"paindiffusion live: viewer {p.id} dropped ({type(e).__name__}: {e})", file=sys.stderr)
                    self.leave(p)
