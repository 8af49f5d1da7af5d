"""The training session the UI and the CLI drive: background thread, state, pause/stop, the GPU gate, OOM."""
import signal
import threading
import time

import pytest
import torch

from sdtrainer import session as session_module
from sdtrainer.config import load_config
from sdtrainer.messages import say_in
from sdtrainer.preflight import GIB, GpuInfo, GpuProcess
from sdtrainer.session import EventKind, SessionBusy, SessionManager, Status, TrainingSession
from sdtrainer.trainer import DreamBoothModule, Event, TrainResult


class Probe:
    """A fake NVML/CUDA view: an RTX 3090 with `free` GiB free and the given processes."""

    def __init__(self, cuda=True, free=23.0, procs=()):
        self.cuda, self.free, self.procs = cuda, free, list(procs)

    def cuda_available(self):
        return self.cuda

    def cuda_build(self):
        return "12.4"

    def device_count(self):
        return 1

    def info(self, index):
        return GpuInfo("NVIDIA GeForce RTX 3090", 24 * GIB, int(self.free * GIB), "550.54")

    def processes(self, index):
        return self.procs


def cfg(demo_file, photos, **values):
    base = {"model": str(demo_file), "images": str(photos), "token": "ohwx", "class_word": "thing",
            "resolution": 64, "device": "cpu", "precision": "32", "prior_loss_weight": 0.0, "steps": 6,
            "save_every": 0, "preview_every": 0, "preview_steps": 2}
    return load_config("24gb", values={**base, **values})


def finished(session: TrainingSession):
    assert session.wait(120), "the run did not end"
    return session.snapshot()


def test_a_demo_run_on_the_cpu_uses_one_thread_then_gives_them_back(demo_file, subject_photos, tmp_path):
    torch.set_num_threads(2)
    try:
        session = TrainingSession(cfg(demo_file, subject_photos, steps=1, preview_prompts=[]), tmp_path / "run")
        threads = {}
        session.subscribe(lambda event: threads.setdefault(event.kind, set()).add(torch.get_num_threads()))
        assert finished(session.start()).status is Status.FINISHED
        assert threads.pop(EventKind.FINISHED) == {2}  # after the run: given back
        assert set().union(*threads.values()) == {1} and EventKind.PROGRESS in threads
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_a_run_reports_progress_previews_and_its_model(demo_file, subject_photos, tmp_path):
    session = TrainingSession(cfg(demo_file, subject_photos), tmp_path / "run")
    seen = []
    session.subscribe(lambda event: seen.append(event.kind))
    state = finished(session.start())
    assert state.status is Status.FINISHED, state.message
    assert (state.step, state.total_steps) == (6, 6) and [h[0] for h in state.history] == list(range(1, 7))
    assert len(state.previews) == 6  # 3 prompts at step 0 and at the end
    assert state.checkpoints == [tmp_path / "run" / "run-final.safetensors"]
    assert "Finished 6 steps" in state.message and seen[-1] is EventKind.FINISHED
    french = "\n".join(say_in(line, "fr") for line in state.log)  # the Training tab's log, on a French page
    assert "Latents en mémoire : 5 d'images du sujet" in french and "6 étapes terminées" in french


def test_two_starts_never_run_two_trainings(demo_file, subject_photos, tmp_path):
    manager = SessionManager()
    first = manager.start(cfg(demo_file, subject_photos, steps=30), tmp_path / "a")
    with pytest.raises(SessionBusy, match="already active"):
        manager.start(cfg(demo_file, subject_photos), tmp_path / "b")
    first.stop()
    assert finished(first).status is Status.STOPPED
    assert not (tmp_path / "b").exists()
    second = manager.start(cfg(demo_file, subject_photos, steps=1), tmp_path / "b")  # free again
    assert finished(second).status is Status.FINISHED


def test_pause_holds_the_step_and_resume_and_stop_finish_cleanly(demo_file, subject_photos, tmp_path):
    session = TrainingSession(cfg(demo_file, subject_photos, steps=50), tmp_path / "run")
    reached = threading.Event()
    session.subscribe(lambda e: reached.set() if e.kind is EventKind.PROGRESS and e.step >= 2 else None)
    session.start()
    assert reached.wait(60)
    session.pause()
    time.sleep(1.0)  # the step in flight finishes, then nothing moves
    held = session.snapshot()
    time.sleep(1.0)
    assert session.snapshot().step == held.step and held.status is Status.PAUSED
    session.resume()
    time.sleep(0.5)
    session.stop()
    state = finished(session)
    assert state.status is Status.STOPPED and held.step < state.step < 50
    assert f"Stopped at step {state.step} of 50" in state.message
    assert (tmp_path / "run" / "state" / "last.ckpt").is_file()
    assert state.checkpoints[-1].name == f"run-step{state.step:05d}.safetensors"


@pytest.mark.parametrize("probe,words", [
    (Probe(cuda=False), "CUDA"),
    (Probe(free=9.0), "choose the 8gb preset"),
    (Probe(procs=[GpuProcess(4242, "python train_other.py", 3000 * 2**20, "compute")]), "4242"),
])
def test_the_gpu_gate_refuses_before_anything_is_loaded(demo_file, subject_photos, tmp_path, probe, words):
    session = TrainingSession(cfg(demo_file, subject_photos, device="cuda"), tmp_path / "run", probe=probe)
    state = finished(session.start())
    assert state.status is Status.FAILED and words in state.message
    assert "Training cannot start" in state.message
    assert say_in(state.message, "fr").startswith("L'entraînement ne peut pas commencer")  # the page's language
    assert not (tmp_path / "run").exists()  # refused before the run folder, the model or CUDA


def test_the_gate_lets_a_free_24gb_card_through(demo_file, subject_photos, tmp_path, monkeypatch):
    """This machine has no GPU, so the training itself is replaced; what is tested is the gate's yes."""
    started = []

    def fake_training(config, run_dir, emit, control, resume=False):
        started.append(config)
        return TrainResult(config.steps, config.steps, None, stopped=False)

    monkeypatch.setattr(session_module, "run_training", fake_training)
    session = TrainingSession(cfg(demo_file, subject_photos, device="cuda"), tmp_path / "run",
                              probe=Probe(procs=[GpuProcess(77, "Xorg", 300 * 2**20, "graphics")]))
    assert finished(session.start()).status is Status.FINISHED
    assert len(started) == 1, "the gate refused a free card"
    assert any("Xorg" in line for line in session.snapshot().log)  # listed, not blocking
    # the gate's report is in the log a line at a time, as Messages the page says in its language
    assert "OK : l'entraînement peut commencer." in [say_in(line, "fr") for line in session.snapshot().log]


def test_out_of_memory_saves_the_state_and_names_the_lower_preset(demo_file, subject_photos, tmp_path,
                                                                    monkeypatch):
    real_step = DreamBoothModule.training_step

    def step(self, batch, batch_idx):
        if self.global_step == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(DreamBoothModule, "training_step", step)
    state = finished(TrainingSession(cfg(demo_file, subject_photos), tmp_path / "run").start())
    assert state.status is Status.FAILED
    assert "Out of GPU memory at step 3 with the 24gb preset" in state.message and "12gb" in state.message
    saved = torch.load(tmp_path / "run" / "state" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3  # the weights of the last full step, resumable
    assert "The state at step 3 was saved" in state.message


def test_a_bad_setting_fails_with_its_message(demo_file, tmp_path):
    state = finished(TrainingSession(cfg(demo_file, tmp_path / "nowhere"), tmp_path / "run").start())
    assert state.status is Status.FAILED and "nowhere" in state.message


def test_out_of_memory_on_several_gpus_names_the_last_state_saved(demo_file, subject_photos, tmp_path,
                                                                  monkeypatch):
    """On several GPUs nothing can be saved after an out-of-memory error (the other processes wait in a collective
    and are ended): the message points to the last state saved before, and the VRAM of each GPU was kept."""
    def two_gpus_then_oom(config, run_dir, emit, control, resume=False):
        for step in (1, 2, 3):
            emit(Event(EventKind.PROGRESS, step, {"total_steps": 6, "loss": 0.5, "prior_loss": 0.0, "it_per_s": 2.0,
                                                  "eta_s": 1.0, "elapsed_s": step, "vram_alloc_gib": 9.0,
                                                  "vram_reserved_gib": 10.0 + step,
                                                  "vram_reserved_by_device": [10.0, 10.0 + step]}))
            if step == 2:
                emit(Event(EventKind.CHECKPOINT, 2, {"path": run_dir / "state" / "last.ckpt", "kind": "state"}))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(session_module, "run_training", two_gpus_then_oom)
    state = finished(TrainingSession(cfg(demo_file, subject_photos, devices=2), tmp_path / "run").start())
    assert state.status is Status.FAILED and state.message.startswith("Out of GPU memory at step 3")
    assert "The state at step 2 was saved; resume from" in state.message
    assert state.vram_by_device == [(1, [10.0, 11.0]), (2, [10.0, 12.0]), (3, [10.0, 13.0])]


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl+C handler, as a CLI process has it, for the test's duration: in the whole suite (CI) the
    signal raised nothing here twice on 2026-12-03 while the test passed alone, so an earlier test had left another
    handler in this process (which one was not found; Lightning, for one, sets SIG_IGN after a KeyboardInterrupt in
    its fit and leaves it, expecting the process to exit)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_while_waiting_leaves_the_run_to_finish_and_be_waited_for(demo_file, subject_photos, tmp_path,
                                                                         monkeypatch, python_ctrl_c):
    """The CLI waits, and on Ctrl+C asks for a stop and waits again for the step and the save. Python 3.11's
    Thread.join, interrupted, marks the thread as ended while it runs: the second wait returned at once and the
    program exited mid-save (on several GPUs it then hung, waiting for its training processes)."""
    entered, release = threading.Event(), threading.Event()

    def slow_training(config, run_dir, emit, control, resume=False):
        entered.set()
        release.wait(30)
        return TrainResult(config.steps, config.steps, None, stopped=False)

    monkeypatch.setattr(session_module, "run_training", slow_training)
    session = TrainingSession(cfg(demo_file, subject_photos), tmp_path / "run").start()
    # the Ctrl+C comes while training runs (a session that ended at once would show its message here)
    assert entered.wait(30), session.snapshot()
    ctrl_c = threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    ctrl_c.start()
    with pytest.raises(KeyboardInterrupt):
        session.wait(10)
    assert not session.wait(0.2) and session.active
    release.set()
    assert session.wait(10) and session.snapshot().status is Status.FINISHED


def test_the_log_keeps_its_last_lines_and_counts_every_line():
    """The page redraws the log when `logged` changes: a full log (LOG_LINES) must still count each new line."""
    from sdtrainer.session import LOG_LINES, SessionState, apply_event
    from sdtrainer.trainer import Event

    state = SessionState()
    for i in range(LOG_LINES + 3):
        apply_event(state, Event(EventKind.LOG, 1, {"message": f"line {i}"}))
    apply_event(state, Event(EventKind.LOG, 1, {"message": "two\nlines"}))
    assert len(state.log) == LOG_LINES and state.log[-3:] == [f"line {LOG_LINES + 2}", "two", "lines"]
    assert state.logged == LOG_LINES + 5
