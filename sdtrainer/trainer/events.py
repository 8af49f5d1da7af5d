"""What the trainer tells the outside world, and what it takes from it: events, the result, the run folder.

    emit(Event(EventKind.PROGRESS, step, {"loss": 0.12, ...}))   # everything a run says goes out as Events
    RunPaths(Path("outputs/joe")).state                           # outputs/joe/state/last.ckpt

Plain dataclasses, importable without Lightning (the session, the UI and tools read them).
"""
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from sdtrainer.messages import Message


class EventKind(str, Enum):
    PROGRESS = "progress"  # data: loss, prior_loss, lr, it_per_s, eta_s, elapsed_s, vram_*_gib, total_steps
    CLASS_IMAGES = "class_images"  # data: class_word, done, total, eta_s (None before the first new image), elapsed_s
    PREVIEW = "preview"  # data: preview (a Preview)
    CHECKPOINT = "checkpoint"  # data: path, kind ("model" or "state")
    LOG = "log"  # data: message (the trainer's: a messages.Message, said in the reader's language)
    FINISHED = "finished"  # data: message, path (final or last model file)
    FAILED = "failed"  # data: message
    METER = "meter"  # data: row (a meter.MeterRow: the scores of the model file just saved)


@dataclass
class Event:
    kind: EventKind
    step: int
    data: dict = field(default_factory=dict)


@dataclass
class Preview:
    step: int
    prompt: str
    seed: int
    path: Path


@dataclass
class TrainResult:
    step: int  # optimizer steps done
    total_steps: int
    model_file: Path | None  # the last model file written
    stopped: bool  # True when a stop request ended the run early


Emit = Callable[[Event], None]


def log(emit: Emit, step: int, message: Message) -> None:
    emit(Event(EventKind.LOG, step, {"message": message}))


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its files; the run's name is its folder's name."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def state(self) -> Path:
        return self.root / "state" / "last.ckpt"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def class_images(self) -> Path:
        return self.root / "class_images"

    def model_file(self, step: int, fmt: str) -> Path:
        return self.root / "checkpoints" / f"{self.name}-step{step:05d}.{fmt}"

    def final_file(self, fmt: str) -> Path:
        return self.root / f"{self.name}-final.{fmt}"

    def preview(self, step: int, prompt_index: int, seed: int) -> Path:
        return self.samples / f"step{step:05d}-p{prompt_index}-s{seed}.png"

    def make(self) -> None:
        for folder in (self.root / "checkpoints", self.state.parent, self.samples):
            folder.mkdir(parents=True, exist_ok=True)


class TrainingDiverged(ValueError):
    """The loss stopped being a number: the weights are lost from that step on (raised with a Message)."""
