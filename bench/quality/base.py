"""The world's base model: a small SD v1-family model pretrained on world images and captions.

    model, report = pretrain(WORLD, WORLD_SD, "cuda", Budget(vae_steps=1500, unet_seconds=150))
    model, report = pretrain(..., good_enough=lambda model, step: caption_accuracy(model, WORLD, 128)["mean"] >= 0.92)
    save_checkpoint(model, "outputs/quality/world-base.safetensors")   # loads like any base model

1. the VAE learns to reconstruct world images (then its latents are rescaled so that LATENT_SCALE
   brings them to unit variance, as SD v1's are);  2. a pool of world images, their latents and
   captions (some attributes named, some not, some captions empty for classifier-free guidance);
3. the UNet learns eps-prediction on the pool (min-SNR weighted), with the text encoder trained beside it (or frozen
   and random: `Budget.train_text_encoder`), AdamW, bf16 autocast and CUDA graphs on CUDA, until the caption accuracy of
   the EMA weights is good enough or the time is up; the EMA weights are what gets saved.
"""
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from bench.quality.world import World, render, to_model_range
from ldm.autoencoder import VAEConfig
from ldm.cuda_graph import graphed_training_call
from ldm.model import SDConfig, StableDiffusion
from ldm.schedule import LATENT_SCALE, NUM_TIMESTEPS, alphas_cumprod
from ldm.text_encoder import TextEncoderConfig
from ldm.tokenizer import get_tokenizer
from ldm.unet import UNetConfig
from sdtrainer.trainer.optim import EMA, min_snr_weights

# 64 px images, 32x32x4 latents (the VAE halves each side), a UNet of three stages: ~25 MB in fp16.
WORLD_SD = SDConfig(
    name="world",
    unet=UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(2, 4),
                    num_heads=4, context_dim=64),
    vae=VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1),
    text=TextEncoderConfig(width=64, layers=2, heads=4, mlp_width=128),
)
# The same family small enough to pretrain on two CPU cores in about a minute (tests).
TINY_WORLD_SD = SDConfig(
    name="tiny-world",
    unet=UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                    num_heads=2, context_dim=32),
    vae=VAEConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=1),
    text=TextEncoderConfig(width=32, layers=1, heads=2, mlp_width=64),
)


@dataclass
class Budget:
    """How long each stage of pretraining runs (steps, and for the UNet also a wall-clock cap)."""

    vae_steps: int = 1500
    vae_batch: int = 64
    unet_steps: int = 6000
    unet_seconds: float = 150.0  # the UNet stage stops at whichever comes first
    unet_batch: int = 256
    pool: int = 100_000  # distinct (image, caption) pairs the UNet sees
    # 1e-3 against 3e-4 on the tiny world (CPU, batch 32, text encoder trained, 1600 steps): caption accuracy
    # 0.52 against 0.36, loss 0.043 against 0.059 at step 1000 (bench/results/NOTES.md)
    lr: float = 1e-3
    cuda_graphs: bool = True  # on CUDA, the UNet's forward and backward as two CUDA graphs (ldm.cuda_graph)
    # The text encoder learns with the UNet. Frozen and random, the UNet alone must work out which word
    # names what: after 4000 steps at batch 256 the world's first base read the size and the shape from its
    # captions, the position and the colours hardly (caption accuracy 0.49; bench/results/NOTES.md).
    train_text_encoder: bool = True
    check_seconds: float = 30.0  # how often pretrain's `good_enough` looks at the EMA weights
    ema_decay: float = 0.999
    # min-SNR-gamma loss weighting (sdtrainer.trainer.optim.min_snr_weights; 0: plain eps-MSE). It lowers the weight
    # of the low-noise steps, where captions matter little: on the tiny world (CPU, batch 32, lr 1e-3, 1600 steps)
    # caption accuracy 0.61 against 0.48, background 0.72 against 0.30 (bench/results/NOTES.md)
    min_snr_gamma: float = 5.0
    seed: int = 0


@dataclass
class PretrainReport:
    vae_steps: int = 0
    vae_loss: float = 0.0
    vae_seconds: float = 0.0
    latent_std: float = 0.0  # of the unscaled posterior means, before rescaling
    unet_steps: int = 0
    unet_loss: float = 0.0
    unet_seconds: float = 0.0
    losses: list = field(default_factory=list)  # (step, mean loss of the last 100 steps)


def autocast(device: torch.device):
    return torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")


def train_vae(model: StableDiffusion, world: World, budget: Budget, device: torch.device, report: PretrainReport):
    """Reconstruction (MSE) with a weak KL term, on fresh world images every step."""
    vae, rng = model.vae.train(), np.random.default_rng(budget.seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.perf_counter()
    for step in range(budget.vae_steps):
        x = to_model_range(render(world, world.sample(budget.vae_batch, rng), device))
        with autocast(device):
            mean, std = vae.encode(x)
            z = mean + std * torch.randn_like(std)
            loss = F.mse_loss(vae.decode(z).float(), x)
            kl = 0.5 * (mean.float() ** 2 + std.float() ** 2 - 1 - 2 * std.float().log()).mean()
        (loss + 1e-6 * kl).backward()
        for group in opt.param_groups:
            group["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / budget.vae_steps))
        opt.step()
        opt.zero_grad(set_to_none=True)
        report.vae_loss = float(loss.detach())
    report.vae_steps, report.vae_seconds = budget.vae_steps, time.perf_counter() - start
    rescale_latents(model, world, device, report)
    vae.eval().requires_grad_(False)


@torch.no_grad()
def rescale_latents(model: StableDiffusion, world: World, device: torch.device, report: PretrainReport) -> None:
    """Folds a factor into the VAE's 1x1 quant convs so that LATENT_SCALE * latent means have unit std."""
    x = to_model_range(render(world, world.sample(256, np.random.default_rng(1)), device))
    mean, _ = model.vae.encode(x)
    report.latent_std = float(mean.std())
    s = 1.0 / (report.latent_std * LATENT_SCALE)
    z = model.vae.cfg.z_channels
    quant, post = model.vae.quant_conv, model.vae.post_quant_conv
    quant.weight[:z] *= s
    quant.bias[:z] *= s
    quant.bias[z:] += 2 * math.log(s)  # log-variance of s * z
    post.weight /= s


@torch.no_grad()
def make_pool(model: StableDiffusion, world: World, n: int, seed: int, device: torch.device):
    """(scaled latents [n, 4, h, w], token ids [n, 77]) of n random world images, encoded once by the frozen
    VAE, and their training captions."""
    rng = np.random.default_rng(seed)
    latents, ids = [], []
    for start in range(0, n, 1024):
        things = world.sample(min(1024, n - start), rng)
        latents.append(model.encode_images(to_model_range(render(world, things, device))).float())
        ids.append(get_tokenizer()([world.training_caption(t, rng) for t in things]).to(device))
    return torch.cat(latents), torch.cat(ids)


def train_unet(model: StableDiffusion, world: World, budget: Budget, device: torch.device, report: PretrainReport,
               log=print, good_enough=None) -> None:
    """eps-prediction on the pool, the text encoder trained with the UNet or frozen; on CUDA the UNet's forward
    and backward run as CUDA graphs. Every `check_seconds` the EMA weights are handed to `good_enough(step)`,
    which may end the stage early. The trained weights end as their EMA."""
    latents, ids = make_pool(model, world, budget.pool, budget.seed + 1, device)
    text = model.text_encoder.requires_grad_(budget.train_text_encoder)
    params = list(model.unet.parameters()) + (list(text.parameters()) if budget.train_text_encoder else [])
    opt = torch.optim.AdamW(params, lr=budget.lr, weight_decay=0.0, fused=device.type == "cuda" or None)
    named = {str(i): p for i, p in enumerate(params)}
    ema, acp = EMA(named, budget.ema_decay), alphas_cumprod().float().to(device)
    g = torch.Generator(device).manual_seed(budget.seed)
    unet_call, amp = model.unet, torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda",
                                                 cache_enabled=False)
    model.unet.train()
    text.train(budget.train_text_encoder)
    start, checked, recent, step = time.perf_counter(), time.perf_counter(), [], 0
    while step < budget.unet_steps and time.perf_counter() - start < budget.unet_seconds:
        pick = torch.randint(0, len(latents), (budget.unet_batch,), generator=g, device=device)
        x0, t = latents[pick], torch.randint(0, NUM_TIMESTEPS, (budget.unet_batch,), generator=g, device=device)
        noise = torch.randn(x0.shape, generator=g, device=device)
        a = acp[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with amp:
            with torch.set_grad_enabled(budget.train_text_encoder):
                cond = text(ids[pick])
            if device.type == "cuda" and budget.cuda_graphs and unet_call is model.unet:
                sample = cond.detach().requires_grad_(cond.requires_grad)
                unet_call = graphed_training_call(model.unet, noisy, t, sample)
            error = (unet_call(noisy, t, cond).float() - noise).pow(2).mean(dim=(1, 2, 3))
        if budget.min_snr_gamma > 0:
            error = error * min_snr_weights(acp[t], budget.min_snr_gamma)
        loss = error.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in opt.param_groups:
            group["lr"] = budget.lr * min(1.0, (step + 1) / 200)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(named)
        recent.append(loss.detach())
        step += 1
        if step % 500 == 0:
            report.losses.append((step, float(torch.stack(recent).mean())))
            log(f"  unet step {step}: loss {report.losses[-1][1]:.4f} ({time.perf_counter() - start:.0f} s)")
            recent = []
        if good_enough is not None and time.perf_counter() - checked > budget.check_seconds:
            ema.swap(named)
            model.eval()
            done = good_enough(step)
            model.unet.train()
            text.train(budget.train_text_encoder)
            ema.swap(named)
            checked = time.perf_counter()
            if done:
                break
    ema.swap(named)
    report.unet_steps, report.unet_seconds = step, time.perf_counter() - start
    report.unet_loss = float(torch.stack(recent).mean()) if recent else report.losses[-1][1] if report.losses else 0.0
    model.eval().requires_grad_(False)


def world_words(world: World) -> list[str]:
    """Every word a world caption can hold."""
    from bench.quality.world import BACKGROUND_PHRASES, PATTERN_NOUNS

    phrases = [*world.shapes, *world.colours, *world.sizes, "plain", "with", "a", *world.individuals,
               *(PATTERN_NOUNS[p] for p in world.patterns if p in PATTERN_NOUNS),
               *(BACKGROUND_PHRASES[c] for c in world.colours)]
    return sorted({w for phrase in phrases for w in phrase.split()})


@torch.no_grad()
def keep_vocabulary(model: StableDiffusion, words: list[str]) -> None:
    """Zeroes the token embeddings of every word outside `words` (and the start/end tokens): pretraining
    never saw them, and a file of zeros compresses to almost nothing."""
    ids = get_tokenizer()(words).flatten().unique()
    table = model.text_encoder.transformer.text_model.embeddings.token_embedding.weight
    keep = torch.zeros(len(table), dtype=torch.bool, device=table.device)
    keep[ids.to(table.device)] = True
    table[~keep] = 0


def pretrain(world: World, config: SDConfig, device: str | torch.device, budget: Budget, log=print,
             good_enough=None, model: StableDiffusion | None = None) -> tuple[StableDiffusion, PretrainReport]:
    """A base model of `config` that draws the world's captions: the VAE first, then the UNet and the text
    encoder, until `good_enough(model, step)` says so or the budget is spent. Given a `model` (an earlier base,
    in fp32), its VAE is kept and its UNet and text encoder train on."""
    device = torch.device(device)
    torch.manual_seed(budget.seed)
    report = PretrainReport()
    if model is None:
        model = StableDiffusion(config).to(device)
        model.requires_grad_(False)
        model.vae.requires_grad_(True)
        train_vae(model, world, budget, device, report)
        log(f"  vae: {report.vae_steps} steps, loss {report.vae_loss:.5f}, {report.vae_seconds:.0f} s")
    model.requires_grad_(False)
    model.unet.requires_grad_(True)
    check = (lambda step: good_enough(model, step)) if good_enough is not None else None
    train_unet(model, world, budget, device, report, log, check)
    return model, report
