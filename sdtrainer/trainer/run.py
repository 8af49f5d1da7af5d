"""`run_training`, as its stages (see sdtrainer.trainer): the checks, the base model, the class images, the cached
data, then Lightning's fit with the module (sdtrainer.trainer.module) and the callbacks (sdtrainer.trainer.callbacks),
in this process or in one process per device (`train_process`). Importing this module imports Lightning.
"""
import hashlib
import logging
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from ldm.model import StableDiffusion
from sdtrainer.checkpoint import CheckpointError, load_model, read_metadata
from sdtrainer.class_images import Pace, class_image_batch, generate_class_images
from sdtrainer.concepts import Subject, generated_class_dir, run_subjects
from sdtrainer.control import RunControl
from sdtrainer.config import (ConfigError, Device, Method, TrainConfig, check_config, process_count, save_config,
                              uses_prior)
from sdtrainer.dataset import ImageSet, class_set, instance_set
from sdtrainer.ddp import Channel, launch
from sdtrainer.lora_training import frozen_dtype
from sdtrainer.messages import Message
from sdtrainer.meter import Probes, file_moved, probes_of
from sdtrainer.models import is_demo
from sdtrainer.preflight import cpu_warning
from sdtrainer.trainer.cache import CachedData, cache_data
from sdtrainer.trainer.callbacks import Controller, MeterRecorder, MetricsReporter, ModelSaver, PreviewMaker
from sdtrainer.trainer.events import Emit, Event, EventKind, RunPaths, TrainResult, log
from sdtrainer.trainer.module import DreamBoothModule
from sdtrainer.trainer.optim import import_bitsandbytes, needs_bitsandbytes

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
    log(emit, 0, Message("train_loaded", name=Path(cfg.model).name, architecture=info.config.name))
    if device.type == "cpu":
        warning = cpu_warning(is_demo(info.metadata, info.config.name))
        if warning:
            log(emit, 0, Message("train_warning", warning=warning))
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
    log(emit, 0, Message("train_class_images_making", count=count, class_word=subject.class_word, folder=out_dir,
                         batch=batch))
    progress = ClassImageProgress(emit, subject.class_word)
    generated = generate_class_images(
        model, subject.class_word, count, out_dir, seed=cfg.seed, callback=progress,
        should_stop=lambda: control.stop_requested, resolution=cfg.resolution, steps=cfg.class_image_steps,
        batch_size=batch)
    log(emit, 0, Message("train_class_images_made", made=len(generated), count=count, class_word=subject.class_word,
                         seconds=progress.elapsed()))
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


def keep_earlier_final(paths: RunPaths, emit: Emit) -> None:
    """A finished run resumed to train longer: its final file becomes the model file of its step (which meter.json's
    row follows), so that the resumed run's final file does not replace a model the user may prefer."""
    for old in sorted(paths.root.glob(f"{paths.name}-final.*")):
        try:
            step = read_metadata(old).get("steps") if old.suffix in (".safetensors", ".ckpt") else None
        except CheckpointError:  # unreadable: nothing a user could load, so nothing to keep
            step = None
        if step is None:
            continue
        new = paths.model_file(int(step), old.suffix[1:])
        if new.exists():  # the same step's model, saved before: the final adds nothing to keep
            continue
        new.parent.mkdir(parents=True, exist_ok=True)
        old.replace(new)
        file_moved(paths.root, old, new)
        log(emit, 0, Message("train_final_kept", old=old.name, step=int(step), new=new))


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
    if resume:
        keep_earlier_final(paths, emit)
    subjects = run_subjects(cfg)
    check_prior(cfg, subjects)
    words = [s.words for s in subjects]
    instances = [instance_set(s.paths, s.token, s.class_word, cfg.resolution, crop=cfg.crop) for s in subjects]
    for s, images in zip(subjects, instances):
        counts, *found = images.report.lines()
        if len(subjects) > 1:
            counts = Message("train_photos_of", token=s.token, class_word=s.class_word, report=counts)
        for line in (counts, *found):
            log(emit, 0, line)
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
    log(emit, 0, Message("train_cached", instances=len(data.instance_latents), classes=len(data.class_latents)))
    if control.stop_requested:  # before step 1 there is nothing to save: the base model is not a result
        return TrainResult(0, cfg.steps, None, stopped=True)
    # 5. fit, here or in one process per device
    if processes == 1:
        return fit(cfg, model, data, words, paths, emit, control, resume)
    del model  # each process loads its own copy onto its device
    if device.type == "cuda":
        torch.cuda.empty_cache()
    log(emit, 0, Message("train_processes_gpu" if device.type == "cuda" else "train_processes_cpu",
                         processes=processes, batch=cfg.batch_size, accum=cfg.grad_accum))
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
        log(emit, 0, Message("train_cuda_graphs"))
    elif cfg.compile and cfg.device is Device.CUDA:
        log(emit, 0, Message("train_compiling"))
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
    log(emit, first.step, Message("train_processes_agree", processes=len(results)))
    return first
