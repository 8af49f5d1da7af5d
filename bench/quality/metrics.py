"""What a user trains for, as exact numbers: the DreamBooth paper's metrics, read from generated pixels.

    images = draw(model, ["sks circle", "circle"], seeds=[0, 1], side=64)  # uint8 [2, 3, 64, 64]
    scores = subject_scores(model, WORLD, SUBJECT, "sks", n=64)
    accuracy = caption_accuracy(model, WORLD, n=128)

- fidelity: share of `<token> <class>` samples with the subject's identity (the paper's DINO / CLIP-I);
- prompt_fidelity: share of `<token> <class> on <place>` samples with that place's background (CLIP-T);
- class_drift: share of plain `<class>` samples that took the subject's identity (the paper's PRES);
- diversity: how often two `<token> <class>` samples differ in background, size and place (DIV).
Samples use the app's samplers (ldm.samplers) with classifier-free guidance, seeds fixed per prompt.
"""
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from bench.quality.reader import attribute_accuracy, read
from bench.quality.world import BACKGROUND_PHRASES, CAPTIONED, Thing, World, identity
from ldm.model import StableDiffusion
from ldm.samplers import CFGDenoiser, EpsDenoiser, sample
from ldm.schedule import alphas_cumprod
from sdtrainer.sampling import initial_noise


@dataclass(frozen=True)
class SampleSettings:
    sampler: str = "dpmpp_2m"
    steps: int = 20
    cfg_scale: float = 4.0
    batch: int = 256


EVAL = SampleSettings()
EVAL_SEED = 10_000  # evaluation seeds start here; class images and training data use others
VARYING = ("background", "size", "position")  # what a subject's samples may change without losing it


@torch.no_grad()
def draw(model: StableDiffusion, prompts: list[str], seeds: list[int], side: int = 64,
         settings: SampleSettings = EVAL) -> torch.Tensor:
    """uint8 images [n, 3, side, side]: prompt i with seed i."""
    weight = next(model.unet.parameters())
    device, dtype = weight.device, weight.dtype
    unique = list(dict.fromkeys(prompts))
    table = model.text_encoder.encode(unique).to(dtype)
    uncond = model.text_encoder.encode([""]).to(dtype)
    denoiser = CFGDenoiser(EpsDenoiser(model.unet, alphas_cumprod()).to(device))
    f = model.cfg.latent_factor
    images = []
    for start in range(0, len(prompts), settings.batch):
        chunk = slice(start, start + settings.batch)
        cond = table[[unique.index(p) for p in prompts[chunk]]]
        generators = [torch.Generator().manual_seed(seed) for seed in seeds[chunk]]  # one stream per sample
        noise = initial_noise(generators, (model.cfg.unet.in_channels, side // f, side // f), device, dtype)
        extra = {"cond": cond, "uncond": uncond.expand(len(cond), -1, -1), "cfg_scale": settings.cfg_scale}
        latents = sample(denoiser, noise, settings.sampler, settings.steps, extra, generator=generators)
        pixels = model.decode_latents(latents.to(next(model.vae.parameters()).dtype))
        images.append(((pixels.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(images)


def caption_accuracy(model: StableDiffusion, world: World, n: int, seed: int = EVAL_SEED,
                     settings: SampleSettings = EVAL) -> dict[str, float]:
    """How well samples of fully specified captions show what the caption says (per attribute, `mean`, `all`)."""
    things = world.sample(n, np.random.default_rng(seed))
    images = draw(model, [world.caption(t) for t in things], [seed + i for i in range(n)], world.image_size, settings)
    return attribute_accuracy(read(world, images), things, CAPTIONED)


def diversity(readings) -> float:
    """Mean over pairs of samples of the share of VARYING attributes in which they differ."""
    pairs = list(combinations(readings, 2))
    if not pairs:
        return 0.0
    return float(np.mean([np.mean([getattr(a, k) != getattr(b, k) for k in VARYING]) for a, b in pairs]))


def prompt_backgrounds(world: World, subject: Thing) -> list[str]:
    """The backgrounds a prompt may ask the subject for (not its own colours)."""
    return [c for c in world.colours if c not in (subject.colour, subject.pattern_colour)]


def subject_scores(model: StableDiffusion, world: World, subject: Thing, token: str, n: int,
                   seed: int = EVAL_SEED, settings: SampleSettings = EVAL, prompts: bool = True) -> dict[str, float]:
    """fidelity, prompt_fidelity, class_drift and diversity of a model, n samples each (prompts=False leaves
    out prompt_fidelity and its samples)."""
    backgrounds = prompt_backgrounds(world, subject)
    on_bg = [backgrounds[i % len(backgrounds)] for i in range(n)] if prompts else []
    texts = ([f"{token} {subject.shape}"] * n + [subject.shape] * n
             + [f"{token} {subject.shape} {BACKGROUND_PHRASES[bg]}" for bg in on_bg])
    seeds = [seed + i for i in range(n)] * (len(texts) // n)  # the same starts for each kind of prompt
    readings = read(world, draw(model, texts, seeds, world.image_size, settings))
    own, plain, asked = readings[:n], readings[n:2 * n], readings[2 * n:]
    target = identity(subject)
    scores = {"fidelity": float(np.mean([r.identity == target for r in own]))}
    if prompts:
        scores["prompt_fidelity"] = float(np.mean([r.background == bg for r, bg in zip(asked, on_bg)]))
    scores["class_drift"] = float(np.mean([r.identity == target for r in plain]))
    scores["diversity"] = diversity(own)
    return scores
