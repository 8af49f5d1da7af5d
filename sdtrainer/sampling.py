"""Text-to-image with a loaded model, and PNGs that carry their generation parameters.

    params = GenerationParams(prompt="a photo of joepenna person", seed=42)
    results = generate(model, params, model_name="v1-5-pruned-emaonly")
    paths = save_images(results, Path("outputs/txt2img"))

Each PNG holds a `parameters` text chunk in the form AUTOMATIC1111 writes, so a user can paste it
back into that tool (or ours). Image i of a batch uses seed + i, as AUTOMATIC1111 does: its initial
noise is the first draw of a generator seeded with seed + i, and the noise an ancestral sampler (euler_a,
ddim with eta) adds at each step continues that generator, so it is independent of the initial noise.
"""
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ldm.model import SDConfig, StableDiffusion
from ldm.samplers import SAMPLERS, CFGDenoiser, EpsDenoiser, SamplerName, get_sampler, sample
from ldm.schedule import alphas_cumprod
from sdtrainer.messages import Message

# How AUTOMATIC1111 names our samplers in its infotext, so pasted parameters select the same one.
A1111_SAMPLER_NAMES = {"euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M Karras"}
MAX_STEPS, MAX_BATCH, MAX_SIDE = 150, 16, 2048
MAX_SEED = 2**53 - 1  # the largest whole number a browser's number field holds exactly


class GenerationError(ValueError):
    """A generation request the user can fix (the message says how)."""


@dataclass(frozen=True)
class LoraUse:
    """A LoRA merged into the model, as AUTOMATIC1111 records it: `<lora:name:weight>` after the prompt and
    `Lora hashes: "name: hash"` (sdtrainer.lora.lora_hash)."""
    name: str  # the file's name without its suffix, as A1111's prompts name it
    weight: float
    hash: str


@dataclass
class GenerationParams:
    prompt: str
    negative_prompt: str = ""
    sampler: str = SamplerName.EULER_A.value
    steps: int = 25
    cfg_scale: float = 7.0
    seed: int = -1  # -1 draws a random seed
    width: int = 512
    height: int = 512
    batch_size: int = 1
    eta: float | None = None  # ddim / euler_a stochasticity; None keeps the sampler's default
    lora: LoraUse | None = None  # recorded in the PNG's parameters (the caller merges it into the model)


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    infotext: str


def size_multiple(cfg: SDConfig) -> int:
    """Image sides must be multiples of this: the VAE's and the UNet's downsampling together (64 for SD v1)."""
    return cfg.latent_factor * 2 ** (len(cfg.unet.channel_mult) - 1)


def check_params(params: GenerationParams, cfg: SDConfig) -> GenerationParams:
    """Validate a request up front; returns it with a concrete seed."""
    try:
        get_sampler(params.sampler)
    except ValueError:
        raise GenerationError(Message("gen_unknown_sampler", name=params.sampler, choices=", ".join(SAMPLERS))) \
            from None
    multiple = size_multiple(cfg)
    for side, value in (("width", params.width), ("height", params.height)):
        if value % multiple or not multiple <= value <= MAX_SIDE:
            raise GenerationError(Message("gen_side", side=Message(f"gen_{side}"), value=value, multiple=multiple,
                                          max=MAX_SIDE))
    if not 1 <= params.steps <= MAX_STEPS:
        raise GenerationError(Message("gen_steps", max=MAX_STEPS, value=params.steps))
    if not 1 <= params.batch_size <= MAX_BATCH:
        raise GenerationError(Message("gen_batch", max=MAX_BATCH, value=params.batch_size))
    if not math.isfinite(params.cfg_scale) or not 1.0 <= params.cfg_scale <= 30.0:
        raise GenerationError(Message("gen_cfg", value=params.cfg_scale))
    if params.eta is not None and not (math.isfinite(params.eta) and 0.0 <= params.eta <= 1.0):
        raise GenerationError(Message("gen_eta", value=params.eta))
    if not -1 <= params.seed <= MAX_SEED:
        raise GenerationError(Message("gen_seed", max=MAX_SEED, value=params.seed))
    seed = params.seed if params.seed >= 0 else random.randrange(2**32)
    return replace(params, seed=seed)


def infotext(params: GenerationParams, seed: int, model_name: str) -> str:
    """The generation parameters in AUTOMATIC1111's `parameters` format."""
    lora = params.lora
    lines = [params.prompt + (f" <lora:{lora.name}:{lora.weight:g}>" if lora else "")]
    if params.negative_prompt:
        lines.append(f"Negative prompt: {params.negative_prompt}")
    fields = [f"Steps: {params.steps}", f"Sampler: {A1111_SAMPLER_NAMES[params.sampler]}",
              f"CFG scale: {params.cfg_scale:g}", f"Seed: {seed}", f"Size: {params.width}x{params.height}",
              f"Model: {model_name}"]
    if lora:  # A1111 drops ':' and ',' from the name here, and quotes the value (it holds ': ')
        fields.append(f'Lora hashes: "{lora.name.translate(str.maketrans("", "", ":,"))}: {lora.hash}"')
    if params.eta is not None:  # AUTOMATIC1111 keeps DDIM's eta apart from the ancestral samplers'
        fields.append(f"{'Eta DDIM' if params.sampler == SamplerName.DDIM.value else 'Eta'}: {params.eta:g}")
    return "\n".join(lines + [", ".join(fields)])


def image_generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per image of a batch, seeded seed + i, so a seed gives the same image on any device."""
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def initial_noise(generators: list[torch.Generator], shape: tuple[int, ...], device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """One latent noise per image, the first draw of its generator (which the sampler then continues)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[-1, 1] image batch -> PIL RGB images."""
    array = ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]


@torch.no_grad()
def sample_latents(model: StableDiffusion, params: GenerationParams, callback=None,
                   unet: torch.nn.Module | None = None) -> torch.Tensor:
    """Denoised latents for a checked request (concrete seed); `callback` gets each step's dict.
    `unet` stands in for model.unet, e.g. ldm.cuda_graph.CUDAGraphUNet(model.unet), kept across calls."""
    weight = next(model.unet.parameters())
    device, dtype, n = weight.device, weight.dtype, params.batch_size
    cond = model.text_encoder.encode([params.prompt]).to(dtype).expand(n, -1, -1)
    uncond = model.text_encoder.encode([params.negative_prompt]).to(dtype).expand(n, -1, -1)
    f = model.cfg.latent_factor
    shape = (model.cfg.unet.in_channels, params.height // f, params.width // f)
    generators = image_generators(params.seed, n)
    noise = initial_noise(generators, shape, device, dtype)
    denoiser = CFGDenoiser(EpsDenoiser(unet or model.unet, alphas_cumprod()).to(device))
    extra = {"cond": cond, "uncond": uncond, "cfg_scale": params.cfg_scale}
    return sample(denoiser, noise, params.sampler, params.steps, extra, callback, generators, params.eta)


@torch.no_grad()
def generate(model: StableDiffusion, params: GenerationParams, model_name: str, callback=None,
             unet: torch.nn.Module | None = None) -> list[GeneratedImage]:
    """Sample `params.batch_size` images; `callback` gets the sampler's per-step dict (raise in it to stop)."""
    params = check_params(params, model.cfg)
    images = to_pil(model.decode_latents(sample_latents(model, params, callback, unet)))
    seeds = [params.seed + i for i in range(params.batch_size)]
    return [GeneratedImage(img, s, infotext(params, s, model_name)) for img, s in zip(images, seeds)]


def save_png(image: Image.Image, info: str, path: Path) -> Path:
    meta = PngInfo()
    meta.add_text("parameters", info)
    image.save(path, pnginfo=meta)
    return path


def make_grid(images: list[Image.Image], cols: int | None = None) -> Image.Image:
    """Images side by side in rows of `cols` (about square by default)."""
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, img in enumerate(images):
        grid.paste(img, ((i % cols) * w, (i // cols) * h))
    return grid


def save_images(results: list[GeneratedImage], out_dir: Path) -> list[Path]:
    """Write each image as NNNNN-SEED.png (numbers continue from what is there), plus a grid for a batch."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = 1 + max((int(p.name[:5]) for p in out_dir.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")), default=-1)
    paths = [save_png(r.image, r.infotext, out_dir / f"{start + i:05d}-{r.seed}.png") for i, r in enumerate(results)]
    if len(results) > 1:
        paths.append(save_png(make_grid([r.image for r in results]), results[0].infotext,
                              out_dir / f"grid-{start:05d}-{results[0].seed}.png"))
    return paths
