"""A training run in a background thread, with a small state object the UI polls.

    manager = SessionManager(cache)                      # the UI owns one; at most one run at a time
    session = manager.start(load_config("24gb", overrides=[...]), Path("outputs/joe"))
    session.pause(); session.resume(); session.stop()     # stop finishes the step and saves a model
    state = session.snapshot()                           # a copy: status, step, loss, previews, log ...
    session.subscribe(lambda event: print(event.kind, event.step, event.data))

The trainer (`sdtrainer.trainer.run_training`) reports through `Event`s; the session folds them into
its `SessionState` and passes them on to subscribers. Before anything is loaded it runs the GPU gate
(on CUDA, on every GPU the run uses) and takes `ModelCache.lock` for the whole run, after clearing the cache to
free VRAM. A run on several GPUs reports through the same events (process 0's, see sdtrainer.ddp).
"""
import copy
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from sdtrainer.config import (PRESET_VRAM_GIB, Device, Method, TrainConfig, lower_preset, min_total_gib,
                              required_free_gib)
from sdtrainer.messages import Message, message_of
from sdtrainer.meter import MeterRow, read_rows
from sdtrainer.models import demo_threads
from sdtrainer.preflight import GpuProbe, GpusReport, check_gpus
from sdtrainer.trainer import Event, EventKind, Preview, RunControl, RunPaths, is_out_of_memory, run_training

__all__ = ["Event", "EventKind", "Preview", "SessionBusy", "SessionManager", "SessionState", "Status",
           "TrainingSession", "gate_report"]

LOG_LINES = 200


class Status(str, Enum):
    IDLE = "idle"
    PREPARING = "preparing"  # gate, images, model, class images, caching
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"  # ended early on a stop request (a model file is saved when a step was trained)
    FINISHED = "finished"
    FAILED = "failed"


ACTIVE = (Status.PREPARING, Status.RUNNING, Status.PAUSED, Status.STOPPING)


class SessionBusy(ValueError):
    """A second training run was asked for while one is active."""


@dataclass
class SessionState:
    status: Status = Status.IDLE
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    prior_loss: float | None = None
    it_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss, prior_loss)
    vram: list[tuple[int, float, float]] = field(default_factory=list)  # (step, allocated GiB, reserved GiB) of
    #                                                                     the fullest device
    vram_by_device: list[tuple[int, list[float]]] = field(default_factory=list)  # (step, each device's reserved GiB)
    class_word: str = ""  # class images being generated before training: of which class word, how many done
    class_done: int = 0
    class_total: int = 0
    class_eta_s: float | None = None
    previews: list[Preview] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)  # model files, oldest first
    meter: list[MeterRow] = field(default_factory=list)  # each model file's scores (sdtrainer.meter), oldest first
    state_step: int | None = None  # the step of the last training state saved by this run
    log: list[str] = field(default_factory=list)  # the last LOG_LINES lines (Messages where the trainer said one)
    logged: int = 0  # lines logged since the start: it keeps growing once `log` holds its LOG_LINES
    message: str = ""  # why it failed, or how it finished: English, a sdtrainer.messages.Message where it can be
    run_dir: Path | None = None
    gate: GpusReport | None = None  # the GPU gate's report (CUDA runs); a refused start failed because of it
    active: bool = False  # preparing, running, paused or stopping: a second start is refused


class TrainingSession:
    """One training run (new, or resumed from run_dir/state/last.ckpt) in a background thread."""

    def __init__(self, config: TrainConfig, run_dir: Path, cache=None, *, resume: bool = False,
                 probe: GpuProbe | None = None):
        self.config, self.run_dir, self.cache = config, Path(run_dir), cache
        self.resume_run, self.probe = resume, probe
        self.control = RunControl()
        self._state = SessionState(total_steps=config.steps, run_dir=self.run_dir,
                                   meter=read_rows(self.run_dir) if resume else [])  # a resumed run's scores so far
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Event], None]] = []
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()  # set when the thread has reported the end of the run
        self._started = 0.0

    # --- controls
    def start(self) -> "TrainingSession":
        with self._lock:
            if self._thread is not None:
                raise SessionBusy(Message("run_started_twice"))
            self._state.status = Status.PREPARING
            self._thread = threading.Thread(target=self._run, name="sdtrainer-training", daemon=True)
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def pause(self) -> None:
        """Pause after the current step (weights, optimizer and data order stay as they are)."""
        with self._lock:
            if self._state.status in (Status.PREPARING, Status.RUNNING):
                self.control.pause()
                self._state.status = Status.PAUSED

    def resume(self) -> None:
        with self._lock:
            if self._state.status is Status.PAUSED:
                self.control.resume()
                self._state.status = Status.RUNNING if self._state.step or self._state.history else Status.PREPARING

    def stop(self) -> None:
        """Finish the current step, save a model file and the state, end. Also ends a pause."""
        with self._lock:
            if self._state.status in ACTIVE:
                self.control.stop()
                self._state.status = Status.STOPPING

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends (True) or the timeout passes (False). An Event, not Thread.join: a Ctrl+C that
        interrupts Python 3.11's join leaves the thread marked as ended while it still runs (and saves)."""
        if self._thread is None:
            return True
        return self._ended.wait(timeout)

    @property
    def active(self) -> bool:
        return self._state.status in ACTIVE

    def snapshot(self) -> SessionState:
        with self._lock:
            state = copy.deepcopy(self._state)
        state.active = state.status in ACTIVE
        if state.active:
            state.elapsed_s = max(state.elapsed_s, time.perf_counter() - self._started)
        return state

    def subscribe(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """listener(event) is called from the training thread; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- the thread
    def _run(self) -> None:
        try:
            self._gate()
            with self._gpu_lock(), demo_threads(Path(self.config.model), self.config.device.value):
                result = run_training(self.config, self.run_dir, self._emit, self.control, resume=self.resume_run)
            self._finish(result)
        except Exception as error:  # noqa: BLE001 - every failure must reach the state, not kill the thread
            self._fail(error)
        finally:
            self._ended.set()

    def _gate(self) -> None:
        """On CUDA, the VRAM gate decides before anything is allocated."""
        if self.config.device is not Device.CUDA:
            return
        report = gate_report(self.config, self.probe)
        with self._lock:
            self._state.gate = report
        for line in report.lines():  # Messages: the page says them in its language
            self._log(line)
        if not report.ok:
            raise GateRefused(Message("run_gate_refused", reasons=report.reasons))

    def _gpu_lock(self):
        if self.cache is None:
            return _NoLock()
        self.cache.clear()
        return self.cache.lock

    def _finish(self, result) -> None:
        if result.stopped and result.model_file:
            message = Message("run_stopped_saved", step=result.step, total=result.total_steps, path=result.model_file)
        elif result.stopped:
            message = Message("run_stopped", step=result.step, total=result.total_steps)
        else:
            message = Message("run_finished", step=result.step, path=result.model_file)
        self._emit(Event(EventKind.FINISHED, result.step, {"message": message, "path": result.model_file,
                                                          "stopped": result.stopped}))

    def _fail(self, error: Exception) -> None:
        step = self._state.step
        if is_out_of_memory(error):
            message = oom_message(self.config, step, RunPaths(self.run_dir), self._state.state_step)
        elif isinstance(error, ValueError):
            message = message_of(error)
        else:
            message = Message("run_failed", kind=type(error).__name__, error=str(error))
            for line in traceback.format_exception(error):
                self._log(line.rstrip())
        self._emit(Event(EventKind.FAILED, step, {"message": message}))

    # --- events into the state
    def _emit(self, event: Event) -> None:
        with self._lock:
            apply_event(self._state, event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception as e:  # noqa: BLE001 - a broken listener must not stop training
                with self._lock:
                    _append_log(self._state, f"(event listener failed: {e})")

    def _log(self, message: str) -> None:
        self._emit(Event(EventKind.LOG, self._state.step, {"message": message}))


def gate_report(cfg: TrainConfig, probe: GpuProbe | None = None) -> GpusReport:
    """The GPU gate's verdict for this config on each of its GPUs: its preset's VRAM figures, the other presets
    as advice."""
    others = {n: g for n, g in PRESET_VRAM_GIB.items() if n != cfg.preset}
    return check_gpus(required_free_gib(cfg), cfg.preset, others, min_total_gib(cfg), cfg.devices, probe)


class GateRefused(ValueError):
    """The GPU gate said no; the message gives its reasons (the log has its whole report)."""


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def oom_message(cfg: TrainConfig, step: int, paths: RunPaths, state_step: int | None = None) -> Message:
    """What to do after running out of memory at `step`; which state resumes (on one GPU the trainer saves one
    at the last full step; on several, the last one saved before is what there is)."""
    lower = lower_preset(cfg.preset)
    if lower:
        advice = Message("run_oom_lower", preset=lower, gib=f"{PRESET_VRAM_GIB[lower]:g}")
    else:  # the CUDA graphs' buffers are the smallest full preset's largest optional cost (~1.5 GiB; a LoRA's 0.13)
        advice = Message("run_oom_graphs" if cfg.cuda_graphs and cfg.method is Method.FULL else "run_oom_smallest")
    saved = Message("run_oom_saved", step=state_step, root=paths.root) if state_step is not None else ""
    return Message("run_oom", step=step, preset=cfg.preset, advice=advice, saved=saved)


def _append_log(state: SessionState, message: str) -> None:
    """A Message stays whole, for the page to say in its language; plain text goes in line by line."""
    lines = [message] if isinstance(message, Message) else message.splitlines() or [""]
    state.log.extend(lines)
    state.logged += len(lines)
    del state.log[:-LOG_LINES]


def apply_event(state: SessionState, event: Event) -> None:
    """Fold one trainer event into the state (the session holds its lock)."""
    data = event.data
    if event.kind is EventKind.PROGRESS:
        if state.status is Status.PREPARING:
            state.status = Status.RUNNING
        state.step, state.total_steps = event.step, data["total_steps"]
        state.loss, state.prior_loss, state.it_per_s = data["loss"], data["prior_loss"], data["it_per_s"]
        state.eta_s, state.elapsed_s = data["eta_s"], data["elapsed_s"]
        state.history.append((event.step, data["loss"], data["prior_loss"]))
        state.vram.append((event.step, data["vram_alloc_gib"], data["vram_reserved_gib"]))
        state.vram_by_device.append((event.step, list(data["vram_reserved_by_device"])))
    elif event.kind is EventKind.CLASS_IMAGES:
        state.class_word, state.class_done, state.class_total = data["class_word"], data["done"], data["total"]
        state.class_eta_s = data["eta_s"]
    elif event.kind is EventKind.PREVIEW:
        state.previews.append(data["preview"])
    elif event.kind is EventKind.CHECKPOINT and data["kind"] == "model":
        state.checkpoints.append(Path(data["path"]))
    elif event.kind is EventKind.CHECKPOINT:
        state.state_step = event.step
    elif event.kind is EventKind.METER:
        state.meter.append(data["row"])
    elif event.kind is EventKind.LOG:
        _append_log(state, data["message"])
    elif event.kind in (EventKind.FINISHED, EventKind.FAILED):
        if event.kind is EventKind.FAILED:
            state.status = Status.FAILED
        else:
            state.status = Status.STOPPED if data.get("stopped") else Status.FINISHED
        state.message = data["message"]
        _append_log(state, data["message"])


class SessionManager:
    """Holds the current session; refuses a second start while one is active."""

    def __init__(self, cache=None, probe: GpuProbe | None = None):
        self.cache, self.probe = cache, probe
        self.current: TrainingSession | None = None
        self._lock = threading.Lock()

    def start(self, config: TrainConfig, run_dir: Path, resume: bool = False) -> TrainingSession:
        with self._lock:
            if self.current is not None and self.current.active:
                raise SessionBusy(Message("run_busy", run_dir=self.current.run_dir,
                                          status=self.current.snapshot().status.value))
            self.current = TrainingSession(config, run_dir, self.cache, resume=resume, probe=self.probe)
            return self.current.start()

    def snapshot(self) -> SessionState | None:
        return self.current.snapshot() if self.current is not None else None
