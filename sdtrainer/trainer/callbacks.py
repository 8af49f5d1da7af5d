"""The Lightning callbacks of a run: what it reports, writes and obeys between steps.

    callbacks = [MetricsReporter(paths.metrics, emit, cfg.steps), PreviewMaker(cfg, paths, emit, words),
                 saver := ModelSaver(cfg, paths, emit, words), MeterRecorder(saver, ...), Controller(control, emit)]

- MetricsReporter: metrics.csv and a PROGRESS event per optimizer step (losses of every process, VRAM);
- PreviewMaker: the preview images (`render_previews`) at step 0, every preview_every steps and at the end;
- ModelSaver: model files and the resumable state (written by StateFile) every save_every steps and at the end;
- MeterRecorder: the meter's scores (sdtrainer.meter) of each model file ModelSaver writes, into meter.json;
- Controller: pause and stop, between optimizer steps.

Only process 0 reports and writes files; every process takes part in the collectives. Importing this module
imports Lightning.
"""
import collections
import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from ldm.model import StableDiffusion
from sdtrainer.checkpoint import CheckpointError, save_checkpoint, storage_bytes, write_atomically
from sdtrainer.config import TrainConfig, preview_prompts
from sdtrainer.control import RunControl
from sdtrainer.lora_training import save_lora
from sdtrainer.messages import Message
from sdtrainer.meter import (DEFINITION, METER_FILE, REFERENCE_FILE, MeterRow, Probes, Reference, earlier_definition,
                              evaluating, read_rows, reference_of, score, write_rows)
from sdtrainer.preflight import GIB
from sdtrainer.sampling import GenerationParams, check_params, infotext, sample_latents, save_png, to_pil
from sdtrainer.trainer.events import Emit, Event, EventKind, Preview, RunPaths, TrainingDiverged, log
from sdtrainer.trainer.module import DreamBoothModule, model_metadata

PAUSE_POLL_S = 1.0  # how often a pause looks again for resume or stop


def vram_gib(device: torch.device) -> tuple[float, float]:
    if device.type != "cuda":
        return 0.0, 0.0
    return torch.cuda.memory_allocated(device) / GIB, torch.cuda.memory_reserved(device) / GIB


def by_process(trainer: pl.Trainer, module: pl.LightningModule, values: list[float]) -> list[list[float]]:
    """Every process's values, in rank order: one all-gather on several processes, none on one."""
    if trainer.world_size == 1:
        return [values]
    gathered = trainer.strategy.all_gather(torch.tensor(values, dtype=torch.float64, device=module.device))
    return gathered.tolist()


class MetricsReporter(pl.Callback):
    """Averages each step's micro-batch losses (of every process), appends a metrics.csv row and emits a progress
    event (process 0). VRAM is the fullest device's; the event also lists each device's."""

    COLUMNS = ("step", "loss", "prior_loss", "lr", "it_per_s", "vram_alloc_gib", "vram_reserved_gib", "elapsed_s")

    def __init__(self, path: Path, emit: Emit, total_steps: int):
        self.path, self.emit, self.total_steps = path, emit, total_steps
        self.losses: list[tuple[float, float]] = []
        self.step_times: collections.deque = collections.deque(maxlen=20)
        self.step_started: float | None = None
        self.elapsed_before = 0.0  # from the runs this one resumes
        self.started = time.perf_counter()

    def state_dict(self) -> dict:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.elapsed_before = float(state_dict.get("elapsed_s", 0.0))

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self.step_started is None:
            self.step_started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append((float(outputs["instance_loss"]), float(outputs["prior_loss"])))
        if not module.stepped:
            return
        self.step_times.append(time.perf_counter() - self.step_started)
        self.step_started = None
        row, reserved = self.row(trainer, module)
        if trainer.is_global_zero:
            self.write(row)
        if not math.isfinite(row["loss"]):  # every process sees the same gathered loss, so all stop here, before
            # this step's files are saved: the ones of earlier steps are intact
            raise TrainingDiverged(Message("train_diverged", step=row["step"], lr=row["lr"]))
        if not trainer.is_global_zero:
            return
        remaining = self.total_steps - row["step"]
        self.emit(Event(EventKind.PROGRESS, row["step"], {**row, "total_steps": self.total_steps,
                                                          "eta_s": remaining / row["it_per_s"],
                                                          "vram_reserved_by_device": reserved}))

    def row(self, trainer, module) -> tuple[dict, list[float]]:
        """The metrics.csv row of the step just done, and each device's reserved VRAM (GiB, in rank order)."""
        local = [sum(x) / len(self.losses) for x in zip(*self.losses)] + list(vram_gib(module.device))
        self.losses = []
        instance, prior, alloc, reserved = zip(*by_process(trainer, module, local))
        instance, prior = sum(instance) / len(instance), sum(prior) / len(prior)
        weight = module.cfg.prior_loss_weight
        return {"step": trainer.global_step, "loss": instance + weight * prior, "prior_loss": prior,
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "it_per_s": len(self.step_times) / sum(self.step_times), "vram_alloc_gib": max(alloc),
                "vram_reserved_gib": max(reserved), "elapsed_s": self.elapsed()}, list(reserved)

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


@torch.no_grad()
def render_previews(model: StableDiffusion, cfg: TrainConfig, paths: RunPaths, step: int,
                    subjects: list[tuple[str, str]] | None = None) -> list[Preview]:
    """Each preview prompt (for each subject, see config.preview_prompts) with each preview seed, same seeds
    every time; the model is left as found."""
    modes = [(m, m.training) for m in (model.unet, model.text_encoder)]
    model.eval()
    vae_dtype = next(model.vae.parameters()).dtype
    previews = []
    try:
        for j, prompt in enumerate(preview_prompts(cfg, subjects)):
            for seed in cfg.preview_seeds:
                params = check_params(GenerationParams(
                    prompt=prompt, sampler=cfg.preview_sampler.value, steps=cfg.preview_steps, seed=seed,
                    cfg_scale=cfg.preview_cfg_scale, width=cfg.resolution, height=cfg.resolution), model.cfg)
                image = to_pil(model.decode_latents(sample_latents(model, params).to(vae_dtype)))[0]
                path = save_png(image, infotext(params, seed, f"{paths.name}-step{step}"), paths.preview(step, j, seed))
                previews.append(Preview(step, prompt, seed, path))
    finally:
        for module, training in modes:
            module.train(training)
    return previews


class PreviewMaker(pl.Callback):
    """Samples the preview prompts at step 0, every preview_every steps and at the last step."""

    def __init__(self, cfg: TrainConfig, paths: RunPaths, emit: Emit, subjects: list[tuple[str, str]] | None = None):
        self.cfg, self.paths, self.emit, self.subjects = cfg, paths, emit, subjects
        self.done: set[int] = set()

    def on_train_start(self, trainer, module) -> None:
        if trainer.global_step == 0:
            self.render(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        every = self.cfg.preview_every
        if module.stepped and every and trainer.global_step % every == 0:
            self.render(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.render(trainer, module)

    def render(self, trainer, module) -> None:
        step = trainer.global_step
        if (step in self.done or not self.cfg.preview_prompts or not self.cfg.preview_seeds
                or not trainer.is_global_zero):
            return
        self.done.add(step)
        with trainer.precision_plugin.forward_context():
            previews = render_previews(module.sd, self.cfg, self.paths, step, self.subjects)
        for preview in previews:
            self.emit(Event(EventKind.PREVIEW, step, {"preview": preview}))


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


class ModelSaver(pl.Callback):
    """Model files every save_every steps and at the end (also on stop and, if possible, after an
    out-of-memory error on one process), each with the resumable training state. Every process takes part
    (Lightning's state save is collective); process 0 writes."""

    def __init__(self, cfg: TrainConfig, paths: RunPaths, emit: Emit, subjects: list[tuple[str, str]] | None = None):
        self.cfg, self.paths, self.emit, self.subjects = cfg, paths, emit, subjects
        self.saved_step: int | None = None
        self.last_model_file: Path | None = None

    def setup(self, trainer, module, stage: str) -> None:
        trainer.strategy.checkpoint_io = StateFile()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step, every = trainer.global_step, self.cfg.save_every
        if module.stepped and every and step % every == 0 and step < self.cfg.steps:
            self.save(trainer, module, final=False)

    def on_train_end(self, trainer, module) -> None:
        if trainer.global_step == 0:  # stopped before step 1: the base model is not a result
            return
        self.save(trainer, module, final=trainer.global_step >= self.cfg.steps)

    def on_load_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        before, now = checkpoint.get("sdtrainer", {}).get("processes", 1), trainer.world_size
        if before != now:
            log(self.emit, checkpoint["global_step"], processes_changed(self.cfg, before, now,
                                                                        checkpoint["global_step"]))

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        # several processes: the others wait for this one in a collective, so no save can be collective;
        # sdtrainer.ddp ends them all and the last saved state is the one to resume
        if not is_out_of_memory(exception) or trainer.global_step == self.saved_step or trainer.world_size > 1:
            return
        module.zero_grad(set_to_none=True)  # frees the gradients: the weights are those of the last full step
        if module.device.type == "cuda":
            torch.cuda.empty_cache()
        try:
            self.save(trainer, module, final=False)
        except Exception as e:  # noqa: BLE001 - best effort; the OOM is what gets reported
            log(self.emit, trainer.global_step, Message("train_oom_not_saved", error=str(e)))

    def save(self, trainer, module, final: bool) -> None:
        step = trainer.global_step
        if step == self.saved_step and not final:
            return
        fmt = self.cfg.save_format.value
        path = self.paths.final_file(fmt) if final else self.paths.model_file(step, fmt)
        if trainer.is_global_zero:
            self.write_model(module, path, step)
        self.emit(Event(EventKind.CHECKPOINT, step, {"path": path, "kind": "model"}))
        if step != self.saved_step:
            self.write_state(trainer, step)
            self.emit(Event(EventKind.CHECKPOINT, step, {"path": self.paths.state, "kind": "state"}))
        self.saved_step, self.last_model_file = step, path

    def write_model(self, module: DreamBoothModule, path: Path, step: int) -> None:
        if module.lora is not None:
            save_lora(module.lora, path, self.cfg, model_metadata(self.cfg, step, self.subjects))
            return
        dtype = torch.float16 if self.cfg.save_half else torch.float32
        weights = {k: cpu_copy(v, dtype) for k, v in module.sd.state_dict().items()}
        ema = {k: v.cpu() for k, v in module.ema.shadow.items()} if module.ema is not None else None
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(weights, path, dtype=dtype, metadata=model_metadata(self.cfg, step, self.subjects),
                        include_ema=ema)

    def write_state(self, trainer: pl.Trainer, step: int) -> None:
        """state/last.ckpt, replaced atomically by StateFile (and kept as state/stepNNNNN.ckpt with
        keep_all_states)."""
        state = self.paths.state
        trainer.save_checkpoint(state, weights_only=False)
        if self.cfg.keep_all_states and trainer.is_global_zero:
            kept = state.with_name(f"step{step:05d}.ckpt")
            kept.unlink(missing_ok=True)
            os.link(state, kept)


def processes_changed(cfg: TrainConfig, before: int, now: int, step: int) -> Message:
    """What continuing a run on another number of processes changes (the log line at resume)."""
    per_step = cfg.batch_size * cfg.grad_accum
    return Message("train_processes_changed", before=before, now=now, step=step, images_now=per_step * now,
                   images_before=per_step * before)


class MeterRecorder(pl.Callback):
    """Scores each model file the ModelSaver writes, with the cached latents of the run, into meter.json (process
    0), and emits each row as a METER event through `emit`; at the end, `report` says what the meter cost. The base
    model's answers are taken at the first step (before any training) and kept in the run folder (REFERENCE_FILE),
    where a resumed run reads them: loading the base model beside the one training would need its memory again."""

    def __init__(self, saver, probes: Probes, run_dir: Path, emit: Callable[[MeterRow], None],
                 load_base: Callable[[], object], report: Callable[[Message], None]):
        self.saver, self.probes, self.run_dir, self.emit, self.report = saver, probes, run_dir, emit, report
        self.load_base = load_base
        self.reference: Reference | None = None
        self.measured: int | None = None
        self.seconds = 0.0  # spent measuring, the base model's answers included

    def on_train_start(self, trainer, module) -> None:
        if not trainer.is_global_zero:
            return
        start, kept = time.perf_counter(), self.run_dir / REFERENCE_FILE
        answers = torch.load(kept, weights_only=True) if trainer.global_step > 0 and kept.is_file() else {}
        if answers.pop("definition", None) == DEFINITION and answers.keys() == {f.name for f in fields(Reference)}:
            self.reference = Reference(**answers)
        else:  # a run from before the meter kept its answers, or kept another meter's: the base model, loaded again
            base = module.sd if trainer.global_step == 0 else self.load_base()
            with evaluating(base), trainer.precision_plugin.forward_context():
                self.reference = reference_of(base, self.probes)
            torch.save({**asdict(self.reference), "definition": DEFINITION}, kept)
        if earlier_definition(self.run_dir):  # its rows are left out from here on: say how to measure them again
            self.report(Message("meter_earlier_definition", file=METER_FILE, run_dir=self.run_dir))
        self.seconds += time.perf_counter() - start

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.measure(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self.measure(trainer, module)
        if trainer.is_global_zero:
            self.report(Message("meter_cost", seconds=self.seconds, file=METER_FILE))

    def measure(self, trainer, module) -> None:
        step = self.saver.saved_step
        if step is None or step == self.measured or not trainer.is_global_zero or self.reference is None:
            return
        start = time.perf_counter()
        with evaluating(module.sd), trainer.precision_plugin.forward_context():
            scores = score(module.sd, self.probes, self.reference)
        row = MeterRow(step, str(self.saver.last_model_file), **asdict(scores),
                       seconds=round(time.perf_counter() - start, 3))
        self.seconds += row.seconds
        self.measured = step
        write_rows(self.run_dir, read_rows(self.run_dir) + [row])
        self.emit(row)


class StateFile(TorchCheckpointIO):
    """How Lightning writes and reads state/last.ckpt. Lightning's own writer serialises the whole state in memory
    (for SD v1 ~11 GB of RAM) and goes through the system temp folder (which may be a small disk); this one checks
    the run folder's free space, streams into a temporary file there, then renames it. A state that cannot be read
    back is a CheckpointError in our words (torch's would advise weights_only=False: never do that here)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: torch.save(checkpoint, tmp), storage_bytes(checkpoint) + (1 << 20))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except Exception as e:  # noqa: BLE001 - a damaged or foreign pickle fails in many ways; all mean "unusable"
            raise CheckpointError(Message("ckpt_bad_state", path=path, kind=type(e).__name__)) from None


def cpu_copy(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One tensor to the CPU (floats in dtype) without a second full copy of the model on the GPU."""
    return tensor.detach().to("cpu", dtype if tensor.is_floating_point() else tensor.dtype)


class Controller(pl.Callback):
    """Honours pause and stop between optimizer steps (after the step's files are written). On several processes,
    process 0's control decides and broadcasts, so all pause and stop at the same step; a pause re-broadcasts every
    PAUSE_POLL_S, so the others never wait in one collective long enough to time out."""

    def __init__(self, control: RunControl, emit: Emit):
        self.control, self.emit = control, emit

    def on_train_start(self, trainer, module) -> None:
        self.obey(trainer)  # a pause or stop asked for while preparing

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.stepped:
            self.obey(trainer)

    def obey(self, trainer) -> None:
        step = trainer.global_step
        paused, stop = self.decision(trainer)
        if paused and not stop:
            log(self.emit, step, Message("train_paused", step=step))
            while paused and not stop:
                self.control.wait_while_paused(PAUSE_POLL_S)
                paused, stop = self.decision(trainer)
            if not stop:
                log(self.emit, step, Message("train_resumed"))
        if stop:
            log(self.emit, step,
                Message("train_stopping", step=step) if step else Message("train_stopping_before_start"))
            trainer.should_stop = True

    def decision(self, trainer) -> tuple[bool, bool]:
        """(paused, stop requested) as process 0 sees them, on every process."""
        return trainer.strategy.broadcast((self.control.paused, self.control.stop_requested), src=0)
