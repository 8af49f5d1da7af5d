"""The Lightning side of a run: the LightningModule, the callbacks that report and save, and `run_training`
(see sdtrainer.trainer for how a run goes). Importing this module imports Lightning; the events, the batch plan,
the cached data and the optimizer pieces live in sibling modules that do not."""
import collections
import csv
import functools
import hashlib
import json
import logging
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader

from ldm.cuda_graph import graphed_training_call
from ldm.model import StableDiffusion
from ldm.schedule import alphas_cumprod
from sdtrainer.checkpoint import (EMA_PREFIX, UNET_PREFIX, CheckpointError, ema_from_file, ema_to_file, load_model,
                                  save_checkpoint, storage_bytes, write_atomically)
from sdtrainer.class_images import Pace, class_image_batch, generate_class_images
from sdtrainer.concepts import Subject, generated_class_dir, run_subjects
from sdtrainer.control import RunControl
from sdtrainer.config import (ConfigError, Device, Method, OptimizerName, Precision, TrainConfig, check_config,
                              config_dict, preview_prompts, process_count, save_config, uses_prior)
from sdtrainer.dataset import ImageSet, class_set, instance_set
from sdtrainer.ddp import Channel, launch
from sdtrainer.flat_params import flatten_
from sdtrainer.lora_training import LoraNetwork, frozen_dtype, save_lora
from sdtrainer.messages import Message
from sdtrainer.meter import MeterRecorder, Probes, probes_of
from sdtrainer.models import is_demo
from sdtrainer.preflight import GIB, cpu_warning
from sdtrainer.sampling import GenerationParams, check_params, infotext, sample_latents, save_png, to_pil
from sdtrainer.trainer.batches import StepBatches, batch_plan
from sdtrainer.trainer.cache import CachedData, cache_data
from sdtrainer.trainer.events import Emit, Event, EventKind, Preview, RunPaths, TrainResult, log
from sdtrainer.trainer.optim import (EMA, build_optimizer, import_bitsandbytes, lr_factor, min_snr_weights,
                                     needs_bitsandbytes)

PAUSE_POLL_S = 1.0  # how often a pause looks again for resume or stop


# ---------------------------------------------------------------------------------------------------
# The LightningModule
# ---------------------------------------------------------------------------------------------------

def compiled_unet_forward(cfg: TrainConfig, unet: torch.nn.Module) -> Callable | None:
    """unet.forward under torch.compile when cfg.compile is on and training runs on CUDA (on the CPU the
    warm-up costs more than it saves), else None. Compiled once per run at the first step; previews keep
    calling the eager module, so they trigger no second compile."""
    if not (cfg.compile and cfg.device is Device.CUDA):
        return None
    return torch.compile(unet.forward, dynamic=False)


class DreamBoothModule(pl.LightningModule):
    """Trains the UNet (and the text encoder if configured), or a LoRA on the frozen UNet, on cached latents; the
    VAE stays frozen.

    Each micro-batch puts `batch_size` instance and as many class latents through one UNet call;
    loss = instance eps-MSE + prior_loss_weight * class eps-MSE.
    """

    def __init__(self, cfg: TrainConfig, model: StableDiffusion, data: CachedData,
                 subjects: list[tuple[str, str]] | None = None, processes: int = 1):
        super().__init__()
        self.cfg, self.sd, self.subjects = cfg, model, subjects  # subjects: (token, class word) pairs, for metadata
        self.processes = processes  # the run's processes, each taking its share of every micro-batch
        model.vae.requires_grad_(False)
        model.text_encoder.requires_grad_(cfg.train_text_encoder)
        model.unet.requires_grad_(cfg.method is Method.FULL)
        model.unet.set_gradient_checkpointing(cfg.gradient_checkpointing)
        self.lora = LoraNetwork.for_model(model, cfg).attach(model) if cfg.method is Method.LORA else None
        self.compiled_unet = compiled_unet_forward(cfg, model.unet)
        self.graphed: dict[str, torch.nn.Module] = {}  # the CUDA-graphed UNet call, made at the first step
        for name, tensor in data.tensors().items():
            self.register_buffer(name, tensor, persistent=False)
        self.plan = batch_plan(cfg, data, processes)
        self.acp = alphas_cumprod().float()  # not a buffer: bf16-true must not round it
        self.ema: EMA | None = None
        self.stepped = False  # an optimizer step ended the current micro-batch (callbacks read it)
        self._restored: dict = {}

    def unet_params(self) -> dict[str, torch.Tensor]:
        return dict(self.sd.unet.named_parameters())

    # --- data
    def train_dataloader(self) -> DataLoader:
        accum = self.cfg.grad_accum
        batches = StepBatches(self.plan, self.trainer.global_step * accum, self.cfg.steps * accum,
                              self.trainer.global_rank, self.processes)
        return DataLoader(batches, batch_size=None, num_workers=0)

    def gather(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [n, C, h, w] and text context [n, 77, width] of a micro-batch, instance rows first."""
        n, flip = len(batch["instance"]), batch["flip"].long()
        latents = torch.cat([self.instance_latents[batch["instance"], flip[:n]],
                             self.class_latents[batch["class"], flip[n:]]])
        cond = self.conds[torch.cat([self.instance_rows[batch["instance"]], self.class_rows[batch["class"]]])]
        if self.cfg.train_text_encoder:
            cond = self.sd.text_encoder(cond)
        return latents, cond

    # --- step
    def training_step(self, batch: dict, batch_idx: int) -> dict:
        latents, cond = self.gather(batch)
        t, noise = batch["timesteps"], batch["noise"].float()
        acp = self.acp.to(t.device)[t].view(-1, 1, 1, 1)
        noisy = acp.sqrt() * latents.float() + (1 - acp).sqrt() * noise
        dtype = next(self.sd.unet.parameters()).dtype
        eps = self.unet_call(noisy.to(dtype), t, cond.to(dtype))
        per_sample = F.mse_loss(eps.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        if self.cfg.min_snr_gamma > 0:
            per_sample = per_sample * min_snr_weights(acp.flatten(), self.cfg.min_snr_gamma)
        n = len(batch["instance"])
        instance = per_sample[:n].mean()
        prior = per_sample[n:].mean() if len(per_sample) > n else per_sample.new_zeros(())
        loss = instance + self.cfg.prior_loss_weight * prior
        return {"loss": loss, "instance_loss": instance.detach(), "prior_loss": prior.detach()}

    def uses_cuda_graphs(self) -> bool:
        cfg = self.cfg
        return cfg.cuda_graphs and cfg.device is Device.CUDA and not cfg.train_text_encoder

    def uses_flat_params(self) -> bool:
        """AdamW8bit steps one flat tensor per group when the UNet is CUDA-graphed: its Python cost per tensor
        (~0.3 ms x 686 on an H100) would then dominate the step. Eager steps keep per-tensor gradients, freed
        after each step, which needs ~1.5 GiB less at the peak (sdtrainer/flat_params.py)."""
        return self.cfg.optimizer is OptimizerName.ADAMW8BIT and self.uses_cuda_graphs()

    def unet_call(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The UNet as configured: CUDA-graphed (cuda_graphs), compiled (compile), or eager."""
        if self.uses_cuda_graphs() and x.is_cuda:
            if "unet" not in self.graphed:
                self.graphed["unet"] = graphed_training_call(self.sd.unet, x, t, cond)
            return self.graphed["unet"](x, t, cond)
        return (self.compiled_unet or self.sd.unet)(x, t, cond)

    def configure_optimizers(self):
        cfg = self.cfg
        groups = [{"params": list(self.lora.parameters()), "lr": cfg.lora_learning_rate} if self.lora is not None
                  else {"params": list(self.sd.unet.parameters()), "lr": cfg.learning_rate}]
        if cfg.train_text_encoder:
            groups.append({"params": list(self.sd.text_encoder.parameters()),
                           "lr": cfg.text_encoder_lr or cfg.learning_rate})
        if self.uses_flat_params():
            groups = [{**group, "params": [flatten_(group["params"])]} for group in groups]
        optimizer = build_optimizer(cfg, groups, self.device)
        schedule = functools.partial(lr_factor, cfg.lr_schedule, cfg.warmup_steps, cfg.steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.stepped = True
        if self.ema is not None:
            self.ema.update(self.unet_params())

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.stepped = False

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer) -> None:
        # flattened parameters keep their gradients as views of one buffer: zero it, don't free it
        optimizer.zero_grad(set_to_none=not self.uses_flat_params())

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Lightning zeroes the module's gradients before fitting, after configure_optimizers: with flattened
        parameters that must zero the gradient views, not drop them (backward would then fill new tensors and
        the optimizer would step the flat buffer with a zero gradient: nothing would learn)."""
        super().zero_grad(set_to_none=set_to_none and not self.uses_flat_params())

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused AdamW, for fear of fp16 loss scaling;
        # bf16 has no loss scaling, so clip here (under fp16, build_optimizer picks a non-fused AdamW).
        if gradient_clip_val and self.cfg.precision is Precision.BF16_MIXED:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # --- EMA and RNG around a resume
    def on_train_start(self) -> None:
        if self.cfg.ema:
            self.ema = EMA(self.unet_params(), self.cfg.ema_decay, self._restored.get("ema"),
                           self._restored.get("ema_updates", 0))
        if "rng" in self._restored:
            set_rng_state(self._restored["rng"])
        self._restored = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The state file's weights use the SD checkpoint layout (no `sd.` prefix) with the EMA copy as
        CompVis' model_ema.*, so it loads as a model and `prune --ema use` takes the EMA weights; a LoRA's state
        holds the LoRA alone, in kohya's layout (the base is the run's model file)."""
        weights = self.lora.state_dict() if self.lora is not None else {
            k.removeprefix("sd."): v for k, v in checkpoint["state_dict"].items()}
        if self.ema is not None:
            weights.update(ema_to_file({UNET_PREFIX + k: v for k, v in self.ema.shadow.items()}))
        checkpoint["state_dict"] = weights
        checkpoint["sdtrainer"] = {"rng": rng_state(), "ema_updates": self.ema.updates if self.ema else 0,
                                   "processes": self.processes}
        checkpoint["sdtrainer_metadata"] = model_metadata(self.cfg, self.global_step, self.subjects)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        weights = checkpoint["state_dict"]
        restored = dict(checkpoint.get("sdtrainer") or {})
        if any(k.startswith(EMA_PREFIX) for k in weights):
            restored["ema"] = {k.removeprefix(UNET_PREFIX): v for k, v in ema_from_file(weights).items()}
        if self.lora is not None:  # the frozen base as loaded, the LoRA as saved
            checkpoint["state_dict"] = {**{"sd." + k: v for k, v in self.sd.state_dict().items()},
                                        **{"lora." + k: v for k, v in weights.items()}}
        else:
            checkpoint["state_dict"] = {"sd." + k: v for k, v in weights.items() if not k.startswith(EMA_PREFIX)}
        self._restored = restored


def rng_state() -> dict:
    """torch (CPU and CUDA), Python and NumPy RNG states, as tensors and ints (loadable with weights_only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_metadata(cfg: TrainConfig, step: int, subjects: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """What a model file says about its training. (`sdtrainer_config` is taken: it holds the architecture.)
    `concepts` lists every (token, class word) trained; token and class_word are the first one's."""
    subjects = subjects or [(cfg.token, cfg.class_word)]
    return {"base_model": Path(cfg.model).name, "token": subjects[0][0], "class_word": subjects[0][1],
            "concepts": json.dumps([list(words) for words in subjects]),
            "steps": str(step), "sdtrainer_train_config": json.dumps(config_dict(cfg))}


# ---------------------------------------------------------------------------------------------------
# Callbacks: metrics, previews, saving, pause/stop
# ---------------------------------------------------------------------------------------------------

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
        if not trainer.is_global_zero:
            return
        self.write(row)
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
            log(self.emit, trainer.global_step, f"Could not save after running out of memory: {e}")

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
            log(self.emit, step, f"Paused after step {step}.")
            while paused and not stop:
                self.control.wait_while_paused(PAUSE_POLL_S)
                paused, stop = self.decision(trainer)
            if not stop:
                log(self.emit, step, "Resumed.")
        if stop:
            log(self.emit, step, f"Stopping after step {step}: saving a model file and the training state." if step
                else "Stopping before step 1: nothing trained, nothing to save.")
            trainer.should_stop = True

    def decision(self, trainer) -> tuple[bool, bool]:
        """(paused, stop requested) as process 0 sees them, on every process."""
        return trainer.strategy.broadcast((self.control.paused, self.control.stop_requested), src=0)


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

def check_run_folder(paths: RunPaths, resume: bool) -> None:
    """A new run needs a folder without a run; continuing needs one with a saved state (ConfigError else)."""
    if resume and not paths.state.is_file():
        raise ConfigError(Message("run_nothing_to_resume", root=paths.root))
    if not resume and paths.state.exists():
        raise ConfigError(Message("run_exists", root=paths.root))


def load_base_model(cfg: TrainConfig, device: torch.device, emit: Emit) -> StableDiffusion:
    """fp32 weights for training; on a GPU the frozen VAE (and text encoder) in fp16 to save memory, and a LoRA's
    frozen UNet in its autocast dtype."""
    model, info = load_model(cfg.model, device="cpu", dtype=torch.float32)
    log(emit, 0, f"Loaded {Path(cfg.model).name} ({info.config.name}).")
    if device.type == "cpu":
        warning = cpu_warning(is_demo(info.metadata, info.config.name))
        if warning:
            log(emit, 0, f"Warning: {warning}")
    model.to(device)
    if device.type == "cuda":
        model.vae.half()
        if not cfg.train_text_encoder:
            model.text_encoder.half()
        if cfg.method is Method.LORA:
            model.unet.to(frozen_dtype(cfg.precision))
    return model.eval()


def check_prior(cfg: TrainConfig, subjects: list[Subject]) -> None:
    """With prior preservation every subject needs class images (a folder or some to generate)."""
    if not uses_prior(cfg):
        return
    for s in subjects:
        if s.reg_images is None and s.class_images <= 0:
            raise ConfigError(Message("run_no_class_images", token=s.token, class_word=s.class_word))


def class_dataset(cfg: TrainConfig, subject: Subject, subjects: list[Subject], model: StableDiffusion,
                  paths: RunPaths, emit: Emit, control: RunControl) -> ImageSet | None:
    """A subject's regularization images: its folder, or `class_images` generated with the base model."""
    if not uses_prior(cfg):
        return None
    if subject.reg_images is not None:
        return class_set(subject.reg_images, subject.class_word, cfg.resolution, crop=cfg.crop)
    base = Path(cfg.class_images_dir) if cfg.class_images_dir else paths.class_images
    out_dir = generated_class_dir(base, subjects, subject.class_word)
    count = subject.class_images
    batch = class_image_batch(cfg.preset, next(model.unet.parameters()).device.type)
    log(emit, 0, f"Class images: making {count} of '{subject.class_word}' in {out_dir}, {batch} at a time "
                 "(existing ones kept).")
    progress = ClassImageProgress(emit, subject.class_word)
    generated = generate_class_images(
        model, subject.class_word, count, out_dir, seed=cfg.seed, callback=progress,
        should_stop=lambda: control.stop_requested, resolution=cfg.resolution, steps=cfg.class_image_steps,
        batch_size=batch)
    log(emit, 0, f"Class images: {len(generated)} of {count} of '{subject.class_word}' there "
                 f"({progress.elapsed():.0f} s).")
    if len(generated) < count:
        return None
    return class_set(generated, subject.class_word, cfg.resolution, crop=cfg.crop)


class ClassImageProgress:
    """generate_class_images' callback: a CLASS_IMAGES event per image, with the time left at this call's pace."""

    def __init__(self, emit: Emit, class_word: str):
        self.emit, self.class_word, self.pace = emit, class_word, Pace()

    def elapsed(self) -> float:
        return self.pace.elapsed()

    def __call__(self, done: int, total: int, path: Path | None) -> None:
        eta = self.pace.eta(done, total)
        self.emit(Event(EventKind.CLASS_IMAGES, 0, {"class_word": self.class_word, "done": done, "total": total,
                                                    "eta_s": eta, "elapsed_s": self.elapsed()}))


def run_probes(cfg: TrainConfig, base: StableDiffusion) -> Probes:
    """The meter's probes of a run, made again from its photos with its base model (captions as token ids, so that
    each model measured reads them with its own text encoder)."""
    subjects = run_subjects(cfg)
    instances = [instance_set(s.paths, s.token, s.class_word, cfg.resolution, crop=cfg.crop) for s in subjects]
    data = cache_data(base, instances, [None] * len(subjects), True, tuple(s.repeats for s in subjects))
    return probes_of(data, [s.words for s in subjects])


def class_datasets(cfg: TrainConfig, subjects: list[Subject], model: StableDiffusion, paths: RunPaths, emit: Emit,
                   control: RunControl) -> list[ImageSet | None]:
    """Each subject's class images; subjects sharing a folder (or a generated class) share one dataset."""
    def source(s: Subject) -> tuple:  # a folder, or the class word and count to generate
        return (str(s.reg_images), s.class_word if s.reg_images is None else "", s.class_images)

    shared: dict[tuple, ImageSet | None] = {}
    for s in subjects:
        if source(s) not in shared and not control.stop_requested:
            shared[source(s)] = class_dataset(cfg, s, subjects, model, paths, emit, control)
    return [shared.get(source(s)) for s in subjects]


def build_trainer(cfg: TrainConfig, callbacks: list[pl.Callback], processes: int = 1) -> pl.Trainer:
    """Lightning's Trainer for this process: one device, or one of `processes` (started by sdtrainer.ddp, which
    sets the rendezvous in the environment, so Lightning's ddp joins the process group rather than launching)."""
    return pl.Trainer(
        accelerator="gpu" if cfg.device is Device.CUDA else "cpu", devices=processes,
        strategy=ddp_strategy(cfg) if processes > 1 else "auto", use_distributed_sampler=False,
        precision=cfg.precision.value, max_steps=cfg.steps, max_epochs=-1, accumulate_grad_batches=cfg.grad_accum,
        gradient_clip_val=cfg.max_grad_norm or None, enable_checkpointing=False, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks)


def ddp_strategy(cfg: TrainConfig) -> DDPStrategy:
    """NCCL between GPUs, gloo between CPU processes. The cached latents are buffers, equal everywhere: not
    broadcast at every step. Gradients live in DDP's buckets, not in a second copy (3.2 GiB for SD v1's UNet)."""
    return DDPStrategy(process_group_backend="nccl" if cfg.device is Device.CUDA else "gloo",
                       broadcast_buffers=False, gradient_as_bucket_view=True)


def processes_changed(cfg: TrainConfig, before: int, now: int, step: int) -> str:
    """What continuing a run on another number of processes changes (the log line at resume)."""
    per_step = cfg.batch_size * cfg.grad_accum
    return (f"This run's state was saved on {before} process(es), and it continues on {now}: from step {step} on, "
            f"each step averages {per_step * now} instance images (before: {per_step * before}), drawn as a "
            f"{now}-process run draws them, at the same learning rate. Its weights will differ from those of a "
            f"run on {before} process(es) all along; resume on {before} for exactly those.")


def quiet_lightning() -> None:
    """Lightning's banners ("GPU available: ...", "Initializing distributed: ..."), its single-worker warning, its
    note about modules in eval mode (the frozen VAE and text encoder are, on purpose) and the deprecations inside
    its DDP (for its own code to change) say nothing useful here."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    warnings.filterwarnings("ignore", message=".*`broadcast_buffers` is deprecated.*")
    warnings.filterwarnings("ignore", message=r".*torch.distributed.nn.functional.all_gather is deprecated.*")


def run_training(cfg: TrainConfig, run_dir: Path, emit: Emit, control: RunControl,
                 resume: bool = False) -> TrainResult:
    """Train as configured into run_dir (see the module docstring); user errors raise ValueError subclasses."""
    paths = RunPaths(Path(run_dir))
    # 1. settings, run folder, photos: every user error before anything heavy
    check_config(cfg)
    processes = process_count(cfg, torch.cuda.device_count() if cfg.device is Device.CUDA else 1)
    if needs_bitsandbytes(cfg):
        import_bitsandbytes()
    check_run_folder(paths, resume)
    subjects = run_subjects(cfg)
    check_prior(cfg, subjects)
    words = [s.words for s in subjects]
    instances = [instance_set(s.paths, s.token, s.class_word, cfg.resolution, crop=cfg.crop) for s in subjects]
    for s, images in zip(subjects, instances):
        log(emit, 0, (f"{s.token} {s.class_word}: " if len(subjects) > 1 else "") + images.report.format())
    paths.make()
    save_config(cfg, paths.config)
    # 2. base model, on the training device
    device = torch.device(cfg.device.value)
    model = load_base_model(cfg, device, emit)
    # 3. class images
    classes = class_datasets(cfg, subjects, model, paths, emit, control)
    if control.stop_requested:
        return TrainResult(0, cfg.steps, None, stopped=True)
    # 4. latents and captions, once
    data = cache_data(model, instances, classes, cfg.train_text_encoder, tuple(s.repeats for s in subjects))
    log(emit, 0, f"Cached {len(data.instance_latents)} instance and {len(data.class_latents)} class latents.")
    if control.stop_requested:  # before step 1 there is nothing to save: the base model is not a result
        return TrainResult(0, cfg.steps, None, stopped=True)
    # 5. fit, here or in one process per device
    if processes == 1:
        return fit(cfg, model, data, words, paths, emit, control, resume)
    del model  # each process loads its own copy onto its device
    if device.type == "cuda":
        torch.cuda.empty_cache()
    where = "one per GPU" if device.type == "cuda" else "on the CPU"
    log(emit, 0, f"Starting {processes} processes ({where}): each step trains on {processes} x {cfg.batch_size} "
                 f"images (x {cfg.grad_accum} accumulated).")
    results = launch(processes, train_process, (cfg, data, words, paths.root, resume), emit, control)
    return agreed(results, emit)


def fit(cfg: TrainConfig, model: StableDiffusion, data: CachedData, words: list[tuple[str, str]], paths: RunPaths,
        emit: Emit, control: RunControl, resume: bool, processes: int = 1) -> TrainResult:
    """Lightning's fit of the cached data, with the callbacks that write metrics, previews, model files and the
    state, and honour pause and stop; then what was written."""
    saver = ModelSaver(cfg, paths, emit, words)
    meter = MeterRecorder(saver, probes_of(data, words), paths.root,
                          lambda row: emit(Event(EventKind.METER, row.step, {"row": row})),
                          lambda: load_base_model(cfg, next(model.unet.parameters()).device, lambda event: None),
                          lambda message: log(emit, saver.saved_step or 0, message))
    callbacks = [MetricsReporter(paths.metrics, emit, cfg.steps), PreviewMaker(cfg, paths, emit, words), saver,
                 meter, Controller(control, emit)]
    quiet_lightning()
    pl.seed_everything(cfg.seed, verbose=False)
    trainer = build_trainer(cfg, callbacks, processes)
    module = DreamBoothModule(cfg, model, data, words, processes)
    if module.uses_cuda_graphs():
        log(emit, 0, "Capturing the UNet's step as CUDA graphs: the first step takes a few seconds more "
                     "(3-16 s on an H200; once per run).")
    elif cfg.compile and cfg.device is Device.CUDA:
        log(emit, 0, "Compiling the UNet: the first step takes a minute or two (once per run).")
    trainer.fit(module, ckpt_path=paths.state if resume else None, weights_only=True)
    return TrainResult(trainer.global_step, cfg.steps, saver.last_model_file,
                       stopped=trainer.global_step < cfg.steps)


def train_process(channel: Channel, cfg: TrainConfig, data: CachedData, words: list[tuple[str, str]], root: Path,
                  resume: bool) -> tuple[TrainResult, str]:
    """One process of a run on several (sdtrainer.ddp starts it): the base model on its own device, its share of
    each batch; only process 0 reports and writes. Returns the result and a digest of the weights it ended with."""
    device = torch.device("cuda", channel.rank) if cfg.device is Device.CUDA else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = load_base_model(cfg, device, lambda event: None)  # the launching process said what it loaded
    result = fit(cfg, model, data, words, RunPaths(root), channel.emit, channel.control, resume, channel.processes)
    return result, weights_digest(model)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the bytes of every weight that trains: two processes with the same digest hold the same weights."""
    digest = hashlib.sha256()
    for name, weight in model.named_parameters():
        if weight.requires_grad:
            digest.update(name.encode())
            digest.update(weight.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def agreed(results: list[tuple[TrainResult, str]], emit: Emit) -> TrainResult:
    """Process 0's result, once every process ended with the same weights (DDP's promise; a bug otherwise)."""
    first, digest = results[0]
    if any(d != digest for _, d in results):
        raise RuntimeError(f"The {len(results)} training processes ended with different weights: this is a bug in "
                           f"sdtrainer's multi-GPU training. Process 0 wrote {first.model_file}; train on one GPU "
                           "(devices 1) to be sure of the result.")
    log(emit, first.step, f"All {len(results)} processes ended with the same weights.")
    return first
