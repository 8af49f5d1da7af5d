"""Small pieces the tabs share: model lists for dropdowns, stoppable jobs, errors under their field, file-size text.

    choices = model_choices(checkpoints, models_dir, outputs_dir)  # [(label, path)] for gr.Dropdown, grouped
    with state.jobs.run("test", request.session_hash) as stop:     # Stop buttons call jobs.stop(...)
        generate(..., callback=stop_check(stop))
    note = field_note(source)                                       # under the field; see with_notes
    run.click(inputs=..., **with_notes(self.prune, [result, source], result, {note: MODEL_ERRORS}))
"""
import functools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import gradio as gr

from sdtrainer.checkpoint import CheckpointError, read_metadata
from sdtrainer.config import ConfigError
from sdtrainer.images import DatasetError
from sdtrainer.lora import LoraError
from sdtrainer.meter import Recommendation, recommendation_of
from sdtrainer.models import is_demo
from sdtrainer.sampling import GenerationError
from sdtrainer.ui.i18n import SaidError

RECOMMENDED_MARK = "★"  # after the label of the checkpoint a run's meter recommends
# the errors about a model list's choice (AppState.checked_model), and about a chosen project (Project.open)
MODEL_ERRORS = ("err_no_model", "err_model_missing", "err_outside_folders")
PROJECT_ERRORS = ("err_no_project", "err_project_missing", "err_project_damaged")

# Errors whose (English) message tells the user what to do: shown as they are, never as a crash.
USER_ERRORS: tuple[type[Exception], ...] = (CheckpointError, ConfigError, DatasetError, GenerationError, LoraError)


@dataclass
class Lists:
    """A tab's dropdowns whose choices come from disk: refreshed on page load and by the header's button."""
    models: list[gr.Dropdown] = field(default_factory=list)
    projects: list[gr.Dropdown] = field(default_factory=list)
    prunable: list[gr.Dropdown] = field(default_factory=list)  # model lists that also offer training states
    loras: list[gr.Dropdown] = field(default_factory=list)  # LoRA files (the first choice: none)


class Stopped(Exception):
    """Raised inside a job's callback when the user pressed Stop."""


class Jobs:
    """The stoppable jobs running now, one per (kind, browser session): generation, class images.

    A Stop button sets the job's event; the job's sampler callback sees it and raises Stopped.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], threading.Event] = {}

    @contextmanager
    def run(self, kind: str, session: str | None) -> Iterator[threading.Event]:
        key, stop = (kind, session or ""), threading.Event()
        with self._lock:
            self._running[key] = stop
        try:
            yield stop
        finally:
            with self._lock:
                if self._running.get(key) is stop:
                    del self._running[key]

    def count(self) -> int:
        with self._lock:
            return len(self._running)

    def stop_session(self, session: str | None) -> int:
        """Stop every job of one browser session (its tab was closed); returns how many were asked to stop."""
        with self._lock:
            stops = [stop for (_, owner), stop in self._running.items() if owner == (session or "")]
        for stop in stops:
            stop.set()
        return len(stops)

    def stop(self, kind: str, session: str | None) -> bool:
        """Ask the job to stop; False when none of that kind runs for this session."""
        with self._lock:
            stop = self._running.get((kind, session or ""))
        if stop is None:
            return False
        stop.set()
        return True


def stop_check(stop: threading.Event, then: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
    """A sampler callback that raises Stopped once `stop` is set, and otherwise calls `then`."""
    def callback(info: dict) -> None:
        if stop.is_set():
            raise Stopped
        if then is not None:
            then(info)
    return callback


def field_note(*fields: gr.components.Component) -> gr.Markdown:
    """An empty line, laid out where it is made (under `fields`), where with_notes shows an error about them; it
    empties as soon as one of them changes (in the browser: no request)."""
    note = gr.Markdown(elem_classes=["sdt-field-error"])
    for component in fields:
        component.change(None, outputs=note, js="() => ''", api_visibility="private", show_progress="hidden")
    return note


def with_notes(fn: Callable, outputs: list, status: gr.components.Component,
               notes: dict[gr.Markdown, Iterable[str]]) -> dict:
    """fn, outputs and show_progress_on for an event listener whose errors about a field show under that field.

    Gradio draws a failed event's "Error" over its outputs, and the field to fix is often one of them (Pruning's
    list, the subject, the run name): here the error and the progress show on `status`, and an error whose key
    (SaidError.key) a note lists shows in that note too, the outputs keeping their values. The event still fails
    (a toast in the page, an AppError for gradio_client); one that succeeds empties its notes. `fn` returns its
    outputs (it is no generator); the event's outputs are `outputs`, then the notes."""
    keys = {key: note for note, listed in notes.items() for key in listed}
    cleared = [""] * len(notes)

    @functools.wraps(fn)
    def noted(*args, **kwargs):  # a generator: the notes' text reaches the page before the error
        try:
            result = fn(*args, **kwargs)
        except SaidError as e:
            if e.key in keys:
                yield [gr.skip()] * len(outputs) + [e.message if note is keys[e.key] else "" for note in notes]
            raise
        yield [*([result] if len(outputs) == 1 else result), *cleared]

    return {"fn": noted, "outputs": [*outputs, *notes], "show_progress_on": status}


def model_facts(path: Path) -> dict:
    """What the file's header says without loading it: demo or not, token and class word, and every
    (token, class word) trained as `concepts` (safetensors only; a .ckpt is a pickle that would have to be
    read whole)."""
    meta = dict(_header(str(path), *_stamp(path))) if path.suffix.lower() == ".safetensors" else {}
    token, class_word = meta.get("token", ""), meta.get("class_word", "")
    concepts = parse_concepts(meta.get("concepts", "")) or ([(token, class_word)] if token and class_word else [])
    return {"demo": is_demo(meta), "token": token, "class_word": class_word, "concepts": concepts}


def _stamp(path: Path) -> tuple[int, int]:
    """(modification time, size): a file saved again reads again."""
    try:
        stat = path.stat()
    except OSError:
        return 0, 0
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=32)
def _header(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    """A safetensors file's metadata, read once per version of the file (the Test tab's prompt check asks for
    it at every keystroke); () when unreadable."""
    try:
        return tuple(read_metadata(path).items())
    except CheckpointError:
        return ()


def parse_concepts(text: str) -> list[tuple[str, str]]:
    """The `concepts` metadata (a JSON list of [token, class word] pairs) as pairs; [] when absent or malformed."""
    try:
        pairs = json.loads(text) if text else []
    except ValueError:
        return []
    if not isinstance(pairs, list):
        return []
    return [(p[0], p[1]) for p in pairs if isinstance(p, list) and len(p) == 2 and all(isinstance(w, str) and w
                                                                                      for w in p)]


class ModelGroup(IntEnum):
    """Where a model file lies, in the order model lists show them."""
    BASE = 0  # models/: the user's base checkpoints
    RUN = 1  # outputs/runs/<run>/: a run's step files and final file
    PRUNED = 2  # outputs/pruned/
    OTHER = 3  # anything else under outputs/ (the demo model)
    STATE = 4  # outputs/runs/<run>/state/: resumable training states (12 GB, for pruning only)


def model_entry(path: Path, models_dir: Path, outputs_dir: Path) -> tuple[ModelGroup, str]:
    """The file's group and its short label: `v1-5.safetensors` (a base model), `joe › step00400.safetensors`
    (a run's step file, the run's name not repeated), `pruned › joe-final-pruned.safetensors`,
    `demo › sdtrainer-demo-tiny.safetensors`, `joe › state/last.ckpt`."""
    if path.is_relative_to(models_dir):
        return ModelGroup.BASE, str(path.relative_to(models_dir))
    inside = path.relative_to(outputs_dir).parts if path.is_relative_to(outputs_dir) else (str(path),)
    if len(inside) >= 3 and inside[0] == "runs":
        run, rest = inside[1], inside[2:]
        group = ModelGroup.STATE if rest[0] == "state" else ModelGroup.RUN
        rest = rest[1:] if rest[0] == "checkpoints" else rest
        return group, f"{run} › {'/'.join(rest).removeprefix(run + '-')}"
    group = ModelGroup.PRUNED if inside[0] == "pruned" else ModelGroup.OTHER
    return group, " › ".join(inside) if len(inside) > 1 else inside[0]


def model_choices(paths: list[Path], models_dir: Path, outputs_dir: Path,
                  states: bool = False) -> list[tuple[str, str]]:
    """(label, absolute path) pairs for a model dropdown, grouped (base models, runs' files, pruned files, the
    rest; with `states`, training states last) and newest first within a group as `paths` come; hidden
    (temporary) files left out. The checkpoint a run's meter recommends is marked with RECOMMENDED_MARK."""
    entries = [(model_entry(p, models_dir, outputs_dir), p) for p in paths if not p.name.startswith(".")]
    entries = [(group, label, p) for (group, label), p in entries if states or group is not ModelGroup.STATE]
    return [(marked(label, p) if group is ModelGroup.RUN else label, str(p))
            for group, label, p in sorted(entries, key=lambda e: e[0])]


def run_of(path: Path) -> Path | None:
    """The run folder a model file belongs to (None: not a run's file)."""
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return run_dir if (run_dir / "config.yaml").is_file() else None


def run_recommendation(path: Path) -> Recommendation | None:
    """The meter's recommendation for the run a model file belongs to (None: not a run's file, or not measured)."""
    run_dir = run_of(path)
    return recommendation_of(run_dir) if run_dir is not None else None


def recommended(path: Path) -> Recommendation | None:
    """The meter's recommendation when `path` is the checkpoint its run's meter.json recommends, else None."""
    rec = run_recommendation(path)
    return rec if rec is not None and Path(rec.file).name == path.name else None


def marked(label: str, path: Path) -> str:
    """A run file's label, with RECOMMENDED_MARK when its run's meter recommends it."""
    return f"{label} {RECOMMENDED_MARK}" if recommended(path) else label


def size_text(n_bytes: int) -> str:
    """1234567890 -> '1.23 GB', 4321 -> '4.3 kB' (decimal units, as file managers show)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}" if n_bytes < 100 * scale else f"{n_bytes / scale:.0f} {unit}"
    return f"{n_bytes} B"
