"""Pause and stop requests for a training run, set from any thread (or, with process-shared events, any process).

    control = RunControl()                      # the app's and the CLI's: threading events
    shared = RunControl(ctx.Event)              # the same over a multiprocessing context's events (sdtrainer.ddp)
    control.pause(); control.resume(); control.stop()

The trainer honours them between optimizer steps (sdtrainer.trainer.Controller).
"""
import threading
from collections.abc import Callable


class RunControl:
    """Pause and stop requests, set from any thread and honoured between optimizer steps."""

    def __init__(self, new_event: Callable = threading.Event):
        self._stop = new_event()
        self._go = new_event()
        self._go.set()

    def stop(self) -> None:
        self._stop.set()
        self._go.set()

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._go.is_set()

    def wait_while_paused(self, timeout: float) -> None:
        """Block until resumed or stopped, or until timeout seconds have passed."""
        self._go.wait(timeout)

    def copy_from(self, other: "RunControl") -> None:
        """Ask for what `other` asks for now (a stop stays asked for)."""
        if other.stop_requested:
            self.stop()
        elif other.paused:
            self.pause()
        else:
            self.resume()
