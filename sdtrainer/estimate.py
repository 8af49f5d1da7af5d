"""How long a run takes, said before it starts: the class images still to make, then the training steps.

    est = estimate(cfg, to_generate=200, demo=False)
    est.class_images_s, est.training_s            # seconds, "about": from the speeds measured below

Speeds are measured, not modelled: the demo model on this project's 2-core CI machine (busy, 2026-12-02),
SD v1 at 512 px on an H200 (bench/results/class-images-2026-12-02-NVIDIA_H200.json and the README's
training table). A home card is slower than an H200, so on a GPU the figures are the least it takes.
"""
from dataclasses import dataclass

from sdtrainer.class_images import class_image_batch
from sdtrainer.config import Device, TrainConfig, preview_prompts

MEASURED_CLASS_STEPS = 30  # class-image speeds below are per image at this many sampler steps
# SD v1, 512 px, seconds per class image by batch size (fp32 UNet under fp16 autocast, as a run samples them)
GPU_CLASS_IMAGE_S = {1: 1.57, 2: 0.66, 4: 0.42, 8: 0.32}
# SD v1, 512 px, training steps per second by preset (bench/results/latest.json, H200, 2026-12-02; lora-8gb with
# CUDA graphs 2026-12-03; classic, not measured: the reference script's fp32 loop, 3.34, which like classic steps
# fp32 weights with AdamW)
GPU_STEPS_PER_S = {"24gb": 16.55, "12gb": 11.58, "8gb": 10.24, "lora-8gb": 14.73, "classic": 3.34}
GPU_PREVIEW_S = 0.9  # one 512 px preview image at 20 steps, eager
DEMO_CLASS_IMAGE_S = 0.1  # the demo model at 64 px on the CPU, 8 sampler steps, 4 at a time
DEMO_STEP_S = 0.25
DEMO_PREVIEW_S = 0.3
START_S = 15.0  # imports, loading the model, caching latents


@dataclass(frozen=True)
class Estimate:
    class_images_s: float  # making the missing class images
    training_s: float  # loading, caching, the steps and the previews


def estimate(cfg: TrainConfig, to_generate: int, demo: bool) -> Estimate:
    """About how long `cfg` takes with `to_generate` class images still to make (0 when all are there)."""
    rounds = 2 + (cfg.steps // cfg.preview_every if cfg.preview_every else 0)  # step 0, every N, the end
    previews = len(preview_prompts(cfg)) * len(cfg.preview_seeds) * rounds
    steps = cfg.steps * cfg.grad_accum * cfg.batch_size
    if demo or cfg.device is Device.CPU:
        class_s, step_s, preview_s = DEMO_CLASS_IMAGE_S * cfg.class_image_steps / 8, DEMO_STEP_S, DEMO_PREVIEW_S
    else:
        batch = max(b for b in GPU_CLASS_IMAGE_S if b <= class_image_batch(cfg.preset, "cuda"))
        class_s = GPU_CLASS_IMAGE_S[batch] * cfg.class_image_steps / MEASURED_CLASS_STEPS
        step_s = 1 / GPU_STEPS_PER_S.get(cfg.preset, min(GPU_STEPS_PER_S.values()))
        preview_s = GPU_PREVIEW_S * cfg.preview_steps / 20
    made = to_generate if cfg.prior_loss_weight > 0 else 0  # without prior preservation none are made
    return Estimate(made * class_s, START_S + steps * step_s + previews * preview_s)


def minutes(seconds: float) -> str:
    """`< 1 min`, `12 min`, `2 h 05`: a duration said the way an estimate is."""
    if seconds < 60:
        return "< 1 min"
    total = round(seconds / 60)
    return f"{total // 60} h {total % 60:02d}" if total >= 60 else f"{total} min"
