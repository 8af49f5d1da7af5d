"""DreamBooth ("Unfrozen Model Textual Inversion") fine-tuning of SD v1 on pytorch-lightning.

    control = RunControl()                       # pause() / resume() / stop() from another thread
    result = run_training(cfg, Path("outputs/joe"), emit=print, control=control)
    result = run_training(cfg, Path("outputs/joe"), emit=print, control=control, resume=True)

`run_training` reads as its stages: 1. check the settings and the photos  2. load the base model
3. class images (generated with the base model when no folder is given)  4. encode every image once
with the frozen VAE (and the captions with the frozen text encoder)  5. Lightning fit, in this process or
(devices above 1) in one process per device  6. final files. Everything the user sees goes out as `Event`s
through `emit` (each log line a messages.Message, which the page says in its language); the callbacks write
metrics.csv, previews, model files and the resumable state.

Several devices (Lightning's ddp; sdtrainer.ddp starts the processes and carries events and pause/stop):
stages 1-4 run here once, then each process loads the base model onto its device and takes its share of
every micro-batch, which is drawn for all of them (`share`); DDP averages their gradients, so N processes of
batch b train as one of batch N x b. Only process 0 reports and writes files; pause and stop are process 0's
decision, broadcast to all.

Exact resume: what is random in a step (images, flips, timesteps, noise) is drawn by `batch_for`, a
pure function of (seed, micro-batch index); Lightning restores weights, optimizer, LR schedule and
step from state/last.ckpt, and the module adds the EMA copy and the RNG states. So N steps, resume,
N more steps give the weights of 2N uninterrupted steps.

Method lora (sdtrainer.lora_training): the UNet stays frozen and a LoRA's factors train beside it; model files
and the state then hold the LoRA alone, in kohya's layout.

Run folder `outputs/<run>/`: config.yaml, metrics.csv, checkpoints/<run>-stepNNNNN.safetensors,
state/last.ckpt, samples/stepNNNNN-pJ-sSEED.png, class_images/, <run>-final.safetensors, and meter.json (each
model file's subject fit, class drift and copying, measured when it is saved: sdtrainer.meter; beside it
meter-reference.pt, the base model's answers it compares with).

The package, one topic a module. Without Lightning: `events` (Event, TrainResult, RunPaths: what a run says and
where it writes), `batches` (the data order), `cache` (every image encoded once), `optim` (loss weights, EMA,
optimizer, schedule). With Lightning, imported on first use of one of their names (`from sdtrainer.trainer import
run_training` works as before): `module` (DreamBoothModule: the step, EMA and RNG around a resume; model_metadata),
`callbacks` (MetricsReporter, PreviewMaker, ModelSaver and StateFile, MeterRecorder, Controller), `run`
(run_training and its stages, the Lightning Trainer, the processes of a run on several devices).
"""
import importlib

from sdtrainer.trainer.batches import (CLASS_STREAM, INSTANCE_STREAM, STEP_STREAM, SUBJECT_STREAM, BatchPlan,
                                       StepBatches, batch_for, batch_plan, draw, epoch_order, share, subject_at,
                                       subject_round)
from sdtrainer.trainer.cache import ENCODE_BATCH, CachedData, cache_data, caption_table, encode_images
from sdtrainer.trainer.events import Emit, Event, EventKind, Preview, RunPaths, TrainingDiverged, TrainResult, log
from sdtrainer.trainer.optim import (EMA, OptimizerUnavailable, build_optimizer, import_bitsandbytes, lr_factor,
                                     min_snr_weights, needs_bitsandbytes)

__all__ = ["CLASS_STREAM", "EMA", "ENCODE_BATCH", "INSTANCE_STREAM", "STEP_STREAM", "SUBJECT_STREAM", "BatchPlan",
           "CachedData", "Emit", "Event", "EventKind", "OptimizerUnavailable", "Preview", "RunPaths", "StepBatches",
           "TrainResult", "TrainingDiverged", "batch_for", "batch_plan", "build_optimizer", "cache_data",
           "caption_table", "draw", "encode_images", "epoch_order", "import_bitsandbytes", "log", "lr_factor",
           "min_snr_weights", "needs_bitsandbytes", "share", "subject_at", "subject_round"]


# The Lightning side, imported on first use of one of these names: name -> the module that holds it
LIGHTNING_SIDE = {
    **dict.fromkeys(("DreamBoothModule", "model_metadata"), "module"),
    **dict.fromkeys(("Controller", "MetricsReporter", "ModelSaver", "PreviewMaker", "is_out_of_memory"), "callbacks"),
    **dict.fromkeys(("RunControl", "agreed", "build_trainer", "check_prior", "check_run_folder", "class_datasets",
                     "quiet_lightning", "run_probes", "run_training", "weights_digest"), "run"),
}


def __getattr__(name: str):
    if name in LIGHTNING_SIDE:
        return getattr(importlib.import_module(f"sdtrainer.trainer.{LIGHTNING_SIDE[name]}"), name)
    raise AttributeError(f"module 'sdtrainer.trainer' has no attribute {name!r}")
