"""DreamBooth in the world: the app's trainer for a preset (a name), or the diffusers-style reference loop.

    setup = prepare(base_path, WORLD, SUBJECT, "sks", work, n_photos=6, n_class=100, device="cuda")
    rows = train_run(setup, RunSpec("24gb-prior", "24gb", prior_loss_weight=1.0), steps=(100, 200, 400))
    rows = reference_run(setup, steps=(100, 200, 400))
    rows += extracted_runs(setup, "24gb", steps=(400,), ranks=(32, 64))   # LoRAs extracted from a run's files

`train_run` goes through `sdtrainer.trainer.run_training` (what the app and `sdtrainer train` run), from
the base checkpoint file, the subject's photos and the class images as PNG folders; a model file (with method
lora a LoRA file, scored on the base) is saved every `save_every` steps and each is scored by
`bench.quality.metrics.subject_scores` (a run with `ema` on: its EMA weights), beside the scores the trainer's meter
gave it (of the trained weights)
(`bench.quality.meter.with_meter`). `extracted_runs` turns a run's model files into LoRAs of a few ranks
(`sdtrainer.lora_extract`, as the Pruning tab does) and scores each on the base. The world's UNet
is narrower than SD v1's, so its weights are larger and a rate moves them by a smaller fraction per step: every
learning rate of a preset is multiplied by `lr_scale` (the same factor for all full-model presets, which keeps their
own ratios), by default LR_SCALE, the ratio bench/quality/calibrate.py measures (the rate that changes the world's
weights by the fraction of themselves per step that the preset's rate changes SD v1's); a LoRA's rate by
LORA_LR_SCALE, measured apart (a LoRA's rate is already ~100x the full model's). `reference_run` puts our modules
behind the call signatures bench/reference.py's `reference_step` expects (diffusers' UNet, VAE, CLIP and
DDPMScheduler) and runs that step under one of its recipes (by default "strong": bf16 autocast, TF32, fused AdamW,
the fastest a user of that script can pick): VAE and text encoder every step, gradient clipping at 1. Every row
carries the peak GPU memory its run allocated (`peak_vram_gib`, per process, so also true of jobs sharing the GPU).
"""
import copy
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.quality.meter import FitDiagnostics, with_meter
from bench.quality.metrics import EVAL, SampleSettings, draw, subject_scores
from bench.quality.world import Thing, World, render, save_pngs, to_model_range
from bench import reference
from bench.reference import RECIPES, peaks, reference_step, reset_peak, synchronize
from ldm.schedule import alphas_cumprod
from ldm.tokenizer import get_tokenizer
from sdtrainer.checkpoint import load_model
from sdtrainer.config import Method, load_config, preset_method
from sdtrainer.lora import read_lora, with_lora
from sdtrainer.lora_extract import ExtractSettings, extract_lora
from sdtrainer.meter import REFERENCE_FILE, evaluating
from sdtrainer.trainer import EventKind, RunControl, RunPaths, run_probes, run_training

CLASS_IMAGE_SEED = 50_000
# RMS(world UNet weights) / RMS(SD v1's): median 3.16 at init, 3.63 pretrained (calibrate.py, 2026-12-04). The
# scale was 50 until then (a budget choice: fewer steps to see learning), which moved weights ~15x more per step
# than a user's run does and hid what bf16 rounding does at the presets' real rates.
LR_SCALE = 3.0
LORA_LR_SCALE = 10.0  # lora-8gb at 3, 10, 20: fidelity 0.84, 0.91, 0.64 at 400 steps; 50 diverged (quality-latest.json)


@dataclass
class Setup:
    """Everything runs share: the base file, the subject's photos and the class images, where to work."""

    base: Path
    world: World
    subject: Thing
    token: str
    photos: Path
    class_images: Path
    work: Path
    device: str
    eval_n: int = 64
    settings: SampleSettings = EVAL  # how samples are drawn, for class images and scores
    prompts: bool = True  # score prompt fidelity too
    base_scores: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    name: str
    preset: str
    prior_loss_weight: float = 1.0
    train_text_encoder: bool | None = None  # None: the preset's choice
    lr_scale: float | None = None  # None: LORA_LR_SCALE for a LoRA preset, LR_SCALE for the others
    overrides: tuple[str, ...] = ()  # extra key=value settings

    @property
    def scale(self) -> float:
        """The preset's learning rates are multiplied by this."""
        if self.lr_scale is not None:
            return self.lr_scale
        return LORA_LR_SCALE if preset_method(self.preset) is Method.LORA else LR_SCALE


def prepare(base: Path, world: World, subject: Thing, token: str, work: Path, n_photos: int, n_class: int,
            device: str, eval_n: int = 64, settings: SampleSettings = EVAL, prompts: bool = True) -> Setup:
    """Writes the subject's photos and the class images (the base model's own `<class>` samples, as the
    DreamBooth paper makes them and `class_images: N` would), and scores the base model."""
    model, _ = load_model(base, device=device, dtype=torch.float32)
    photos = save_pngs(render(world, world.photos(subject, n_photos, seed=1)), work / "photos", "photo")[0].parent
    seeds = [CLASS_IMAGE_SEED + i for i in range(n_class)]
    reg = save_pngs(draw(model, [subject.shape] * n_class, seeds, world.image_size, settings), work / "reg",
                    "class")[0].parent
    setup = Setup(base, world, subject, token, photos, reg, work, device, eval_n, settings, prompts)
    setup.base_scores = score(model, setup)
    return setup


def score(model, setup: Setup) -> dict[str, float]:
    return subject_scores(model, setup.world, setup.subject, setup.token, setup.eval_n, settings=setup.settings,
                          prompts=setup.prompts)


def run_config(setup: Setup, spec: RunSpec, steps: int, save_every: int):
    """The preset's settings with the world's paths, the scaled learning rates and no previews."""
    preset = load_config(spec.preset)
    values = {"model": str(setup.base), "images": str(setup.photos), "reg_images": str(setup.class_images),
              "token": setup.token, "class_word": setup.subject.shape, "resolution": setup.world.image_size,
              "device": setup.device, "steps": steps, "save_every": save_every, "preview_every": 0,
              "preview_prompts": [], "class_images": 0, "prior_loss_weight": spec.prior_loss_weight,
              "learning_rate": preset.learning_rate * spec.scale, "save_half": False}
    if preset.method is Method.LORA:
        values["lora_learning_rate"] = preset.lora_learning_rate * spec.scale
    if preset.text_encoder_lr is not None:
        values["text_encoder_lr"] = preset.text_encoder_lr * spec.scale
    if spec.train_text_encoder is not None:
        values["train_text_encoder"] = spec.train_text_encoder
    return load_config(spec.preset, values=values, overrides=list(spec.overrides))


def train_run(setup: Setup, spec: RunSpec, steps: tuple[int, ...], log=print) -> list[dict]:
    """One run of the app's trainer up to max(steps), scored at each of `steps`."""
    cfg = run_config(setup, spec, max(steps), save_every=save_interval(steps))
    run_dir = setup.work / "runs" / spec.name
    failed = []
    device = torch.device(setup.device)
    reset_peak(device)
    start = time.perf_counter()
    run_training(cfg, run_dir, lambda e: failed.append(e) if e.kind is EventKind.FAILED else None, RunControl())
    total = time.perf_counter() - start
    memory = peak_gib(device)
    elapsed = _elapsed_by_step(run_dir / "metrics.csv")
    base = load_model(setup.base, device=setup.device, dtype=torch.float32)[0]
    with evaluating(base):
        kept = torch.load(run_dir / REFERENCE_FILE, weights_only=True)  # the meter's answers of the base
        diagnostics = FitDiagnostics(base, run_probes(cfg, base), kept["class_samples"])
    rows = []
    for step in steps:
        path = model_file(run_dir, step, cfg.steps)
        model = with_lora(base, read_lora(path), 1.0) if cfg.method is Method.LORA else load_model(
            path, device=setup.device, dtype=torch.float32, use_ema=cfg.ema)[0]
        scores = score(model, setup)
        with evaluating(model):
            scores["meter_diagnostics"] = diagnostics(model)
        rows.append({"name": spec.name, "preset": spec.preset, "prior_loss_weight": cfg.prior_loss_weight,
                     "train_text_encoder": cfg.train_text_encoder, "lr_scale": spec.scale, "steps": step,
                     **scores, "wall_s": round(elapsed[step], 2), "run_wall_s": round(total, 2),
                     "peak_vram_gib": memory})
        log(f"  {spec.name} step {step}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k != "meter_diagnostics")
            + f", {elapsed[step]:.1f} s")
    return with_meter(rows, run_dir)


def save_interval(steps: tuple[int, ...]) -> int:
    """The save_every that saves a model file at each of `steps`: their greatest common divisor."""
    if not steps or min(steps) < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    return math.gcd(*steps)


def peak_gib(device: torch.device) -> float:
    """The most GPU memory this process's tensors held since reset_peak, GiB (0 on the CPU)."""
    return round(peaks(device)["peak_allocated_gib"], 3)


def model_file(run_dir: Path, step: int, last: int) -> Path:
    """The model (or LoRA) file a run saved at `step` of `last`."""
    paths = RunPaths(run_dir)
    return paths.final_file("safetensors") if step == last else paths.model_file(step, "safetensors")


def extracted_runs(setup: Setup, name: str, steps: tuple[int, ...], ranks: tuple[int, ...], conv_rank: int = 0,
                   log=print) -> list[dict]:
    """The LoRAs of each rank extracted from run `name`'s model files at `steps` (its own last step among them), each
    scored on the base model: what a user who extracts one keeps of the full model's fidelity and drift. The 3x3
    convs get `conv_rank` (0: left out, kohya's and the Pruning tab's default)."""
    run_dir = setup.work / "runs" / name
    last = max(_elapsed_by_step(run_dir / "metrics.csv"))
    base = load_model(setup.base, device=setup.device, dtype=torch.float32)[0]
    (setup.work / "extracted").mkdir(parents=True, exist_ok=True)
    rows = []
    for rank in ranks:
        for step in steps:
            out = setup.work / "extracted" / f"{name}-step{step}-rank{rank}.safetensors"
            start = time.perf_counter()
            report = extract_lora(setup.base, model_file(run_dir, step, last), out,
                                  ExtractSettings(rank=rank, conv_rank=conv_rank), overwrite=True)
            seconds = time.perf_counter() - start
            scores = score(with_lora(base, read_lora(out), 1.0), setup)
            rows.append({"name": f"{name}>lora-rank{rank}", "from": name, "rank": rank, "conv_rank": conv_rank,
                         "steps": step, **scores, "kept": round(report.kept, 4), "held": round(report.held, 4),
                         "file_mb": round(out.stat().st_size / 2**20, 2),
                         "extract_s": round(seconds, 1)})
            log(f"  {rows[-1]['name']} step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                + f", keeps {report.kept:.3f} of the difference")
    return rows


def _elapsed_by_step(metrics: Path) -> dict[int, float]:
    """Training seconds (from the first step's start) at each step, from the run's metrics.csv."""
    with open(metrics, newline="") as f:
        return {int(r["step"]): float(r["elapsed_s"]) for r in csv.DictReader(f)}


# ---------------------------------------------------------------------------------------------------
# The reference loop: bench/reference.py's step, our modules behind diffusers' call signatures
# ---------------------------------------------------------------------------------------------------

class _Out:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class RefVAE:
    """`vae.encode(x).latent_dist.sample()`, unscaled, like diffusers' AutoencoderKL."""

    def __init__(self, vae):
        self.vae = vae

    def encode(self, x):
        mean, std = self.vae.encode(x)
        return _Out(latent_dist=_Out(sample=lambda: mean + std * torch.randn_like(std)))


class RefText:
    """`text(ids, return_dict=False)[0]`: CLIPTextModel's last hidden states."""

    def __init__(self, text):
        self.text = text

    def __call__(self, ids, return_dict=False):
        return (self.text(ids),)


class RefUNet:
    """`unet(x, t, hidden, return_dict=False)[0]`: UNet2DConditionModel's eps."""

    def __init__(self, unet):
        self.unet = unet

    def parameters(self):
        return self.unet.parameters()

    def __call__(self, x, t, hidden, return_dict=False):
        return (self.unet(x, t, hidden),)


class RefScheduler:
    """DDPMScheduler.add_noise with SD v1's scaled-linear schedule."""

    def __init__(self, device):
        self.acp = alphas_cumprod().float().to(device)

    def add_noise(self, x, noise, t):
        a = self.acp[t].view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * noise


def _pixels(folder: Path, device) -> torch.Tensor:
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]
    return to_model_range(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)).to(device)


def reference_run(setup: Setup, steps: tuple[int, ...], lr: float = 1e-6 * LR_SCALE, recipe: str = "strong",
                  seed: int = 0, log=print) -> list[dict]:
    """train_dreambooth.py's loop (prior weight 1, UNet only) under one of bench/reference.py's RECIPES in the
    world, scored at `steps` with the frozen parts in fp32 (with --mixed_precision the script trains with bf16
    copies of them and its saved pipeline has them in fp32)."""
    device, flags = torch.device(setup.device), RECIPES[recipe]
    if flags.gradient_checkpointing:
        raise SystemExit(f"reference recipe {recipe!r}: the world's UNet has no gradient checkpointing switch")
    weight_dtype = torch.bfloat16 if flags.mixed_precision and device.type == "cuda" else torch.float32
    model, _ = load_model(setup.base, device=device, dtype=torch.float32)
    model.unet.requires_grad_(True).train()
    vae, text = (copy.deepcopy(part).requires_grad_(False).to(weight_dtype) for part in (model.vae, model.text_encoder))
    photos, classes = _pixels(setup.photos, device), _pixels(setup.class_images, device)
    ids = get_tokenizer()([f"{setup.token} {setup.subject.shape}", setup.subject.shape]).to(device)
    optimizer = reference.reference_optimizer(model.unet.parameters(), flags, device, lr=lr)
    unet, vae, text, scheduler = RefUNet(model.unet), RefVAE(vae), RefText(text), RefScheduler(device)
    g, rows, elapsed = torch.Generator().manual_seed(seed), [], 0.0
    torch.manual_seed(seed)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    reset_peak(device)
    try:
        for step in range(1, max(steps) + 1):
            i = int(torch.randint(len(photos), (1,), generator=g))
            j = int(torch.randint(len(classes), (1,), generator=g))
            batch = {"pixel_values": torch.stack([photos[i], classes[j]]), "input_ids": ids}
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = flags.tf32
            synchronize(device)
            start = time.perf_counter()
            reference_step(unet, vae, text, scheduler, optimizer, batch, weight_dtype,
                           autocast=weight_dtype != torch.float32)
            synchronize(device)
            elapsed += time.perf_counter() - start
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32  # scoring as for the runs
            if step in steps:
                memory = peak_gib(device)
                model.unet.eval()
                scores = score(model, setup)
                model.unet.train()
                rows.append({"steps": step, "recipe": recipe, **scores, "wall_s": round(elapsed, 2),
                             "peak_vram_gib": memory})
                reset_peak(device)  # the next row's peak: training again, not this scoring
                log(f"  reference ({recipe}) step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                    + f", {elapsed:.1f} s")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return rows
