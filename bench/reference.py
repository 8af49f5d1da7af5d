"""The yardstick: a DreamBooth step and a sampling loop built the way diffusers' examples do it.

    unet, vae, text = build_reference(SD_V1_DIFFUSERS, "cuda")
    result = time_reference_training(unet, vae, text, RECIPES["strong"], steps=30, warmup=5, size=512)

Training follows examples/dreambooth/train_dreambooth.py with prior preservation: each step encodes the
instance and class image with the VAE and their captions with CLIP, concatenated into one batch, adds
DDPM noise, runs the UNet, loss = instance MSE + prior MSE, clips gradients to 1.0, steps and zeroes.
Three recipes (RECIPES), each what a user of that script can pick:
  default  its defaults: fp32 everywhere, torch AdamW (foreach)
  strong   its fastest at 24 GB: `--mixed_precision bf16 --allow_tf32` (fp32 UNet under bf16 autocast, VAE
           and text encoder in bf16, TF32 matmuls) and a fused torch AdamW
  lowmem   its low-memory recipe: `--mixed_precision bf16 --allow_tf32 --gradient_checkpointing
           --use_8bit_adam` (bitsandbytes AdamW8bit)
Sampling follows
StableDiffusionPipeline: fp16 UNet, CFG as one batch of 2, Euler ancestral, VAE decode.

diffusers is a bench-only dependency (not in requirements.txt); the models are built from their config
dicts with random weights, nothing is downloaded.
"""
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ldm.schedule import LATENT_SCALE, LINEAR_END, LINEAR_START, NUM_TIMESTEPS


@dataclass(frozen=True)
class ReferenceConfig:
    """Config dicts of diffusers' UNet2DConditionModel / AutoencoderKL and transformers' CLIPTextConfig."""

    unet: dict = field(default_factory=dict)
    vae: dict = field(default_factory=dict)
    text: dict = field(default_factory=dict)


# runwayml/stable-diffusion-v1-5's unet/, vae/ and text_encoder/ config.json, the values that differ from
# the classes' defaults written out.
SD_V1_DIFFUSERS = ReferenceConfig(
    unet=dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
              down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
              layers_per_block=2, cross_attention_dim=768, attention_head_dim=8),
    vae=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
             layers_per_block=2, sample_size=512),
    text=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"),
)

# The same family at the size of ldm.model.TINY, for a CPU check of the bench itself.
TINY_DIFFUSERS = ReferenceConfig(
    unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
              down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
              up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
              layers_per_block=1, cross_attention_dim=32, attention_head_dim=2),
    vae=dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 32, 32),
             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
             layers_per_block=1, sample_size=64),
    text=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu"),
)


def build_reference(cfg: ReferenceConfig, device: str):
    """(unet, vae, text_encoder) with random weights, fp32, on `device`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**cfg.unet)
        vae = AutoencoderKL(**cfg.vae)
        text = CLIPTextModel(CLIPTextConfig(**cfg.text))
    return unet, vae, text


def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TIMESTEPS, beta_start=LINEAR_START, beta_end=LINEAR_END,
                         beta_schedule="scaled_linear")


@dataclass(frozen=True)
class Recipe:
    """The train_dreambooth.py flags a run uses."""

    mixed_precision: bool  # --mixed_precision bf16: bf16 autocast, VAE and text encoder weights in bf16
    tf32: bool  # --allow_tf32
    fused_adamw: bool  # torch AdamW(fused=True) instead of the default foreach implementation
    gradient_checkpointing: bool
    adam8bit: bool  # --use_8bit_adam


RECIPES = {
    "default": Recipe(mixed_precision=False, tf32=False, fused_adamw=False, gradient_checkpointing=False,
                      adam8bit=False),
    "strong": Recipe(mixed_precision=True, tf32=True, fused_adamw=True, gradient_checkpointing=False,
                     adam8bit=False),
    "lowmem": Recipe(mixed_precision=True, tf32=True, fused_adamw=False, gradient_checkpointing=True,
                     adam8bit=True),
}


def reference_optimizer(params, recipe: Recipe, device: torch.device, lr: float = 1e-6) -> torch.optim.Optimizer:
    """train_dreambooth.py's optimizer: torch AdamW, or bitsandbytes AdamW8bit with --use_8bit_adam."""
    kwargs = dict(lr=lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    if recipe.adam8bit:
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, fused=(recipe.fused_adamw and device.type == "cuda") or None, **kwargs)


def reference_step(unet, vae, text, scheduler, optimizer, batch: dict, weight_dtype: torch.dtype,
                   autocast: bool) -> torch.Tensor:
    """One train_dreambooth.py step with prior preservation (batch: instance + class, concatenated)."""
    device = batch["pixel_values"].device
    with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
        latents = vae.encode(batch["pixel_values"].to(weight_dtype)).latent_dist.sample() * LATENT_SCALE
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, NUM_TIMESTEPS, (latents.shape[0],), device=device).long()
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = text(batch["input_ids"], return_dict=False)[0]
        pred = unet(noisy, timesteps, hidden, return_dict=False)[0]
        pred, pred_prior = pred.chunk(2)
        target, target_prior = noise.chunk(2)
        loss = F.mse_loss(pred.float(), target.float()) + F.mse_loss(pred_prior.float(), target_prior.float())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # the script's default (--set_grads_to_none off)
    return loss.detach()


def time_reference_training(unet, vae, text, recipe: Recipe, steps: int, warmup: int, size: int) -> dict:
    """Steps per second after `warmup` steps, peak memory over the whole run, the first losses."""
    device = next(unet.parameters()).device
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = recipe.tf32
    weight_dtype = torch.bfloat16 if recipe.mixed_precision else torch.float32
    vae.requires_grad_(False).to(weight_dtype)
    text.requires_grad_(False).to(weight_dtype)
    unet.train()
    if recipe.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = reference_optimizer(unet.parameters(), recipe, device)
    g = torch.Generator(device).manual_seed(0)
    batch = {"pixel_values": torch.rand((2, 3, size, size), generator=g, device=device) * 2 - 1,
             "input_ids": torch.randint(0, 49407, (2, 77), generator=g, device=device)}
    scheduler, losses, marks = ddpm_scheduler(), [], []
    reset_peak(device)
    for _ in range(warmup + steps):
        losses.append(reference_step(unet, vae, text, scheduler, optimizer, batch, weight_dtype,
                                     recipe.mixed_precision))
        synchronize(device)
        marks.append(time.perf_counter())
    return {"it_per_s": steps / (marks[-1] - marks[warmup - 1]), **peaks(device),
            "losses": [float(x) for x in losses[:5]]}


@torch.no_grad()
def reference_sample(unet, vae, hidden: torch.Tensor, steps: int, size: int, callback=None) -> torch.Tensor:
    """StableDiffusionPipeline's loop (cond and uncond in one batch of 2), then the VAE decode."""
    from diffusers import EulerAncestralDiscreteScheduler

    scheduler = EulerAncestralDiscreteScheduler(num_train_timesteps=NUM_TIMESTEPS, beta_start=LINEAR_START,
                                                beta_end=LINEAR_END, beta_schedule="scaled_linear")
    device, dtype = hidden.device, hidden.dtype
    scheduler.set_timesteps(steps, device=device)
    g = torch.Generator(device).manual_seed(1)
    latents = torch.randn((1, 4, size // 8, size // 8), generator=g, device=device, dtype=dtype)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        uncond, cond = unet(model_input, t, hidden, return_dict=False)[0].chunk(2)
        noise_pred = uncond + 7.0 * (cond - uncond)
        latents = scheduler.step(noise_pred, t, latents, generator=g, return_dict=False)[0]
        if callback is not None:
            callback()
    return vae.decode(latents / LATENT_SCALE, return_dict=False)[0]


def time_reference_sampling(unet, vae, text, steps: int, images: int, size: int) -> dict:
    """UNet it/s with CFG and seconds per image (text encode, sampling, VAE decode), median of `images`."""
    device = next(unet.parameters()).device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet.to(dtype).eval()
    vae.to(dtype).eval()
    text.to(dtype).eval()
    ids = torch.randint(0, 49407, (2, 77), generator=torch.Generator().manual_seed(2)).to(device)

    def one_image() -> tuple[float, float]:
        marks = []

        def on_step():
            synchronize(device)
            marks.append(time.perf_counter())

        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            hidden = text(ids, return_dict=False)[0]
        reference_sample(unet, vae, hidden, steps, size, on_step)
        synchronize(device)
        return time.perf_counter() - start, (marks[-1] - marks[0]) / (len(marks) - 1)

    one_image()  # warm-up
    reset_peak(device)
    runs = [one_image() for _ in range(images)]
    return {"it_per_s": 1 / median(r[1] for r in runs), "seconds_per_image": median(r[0] for r in runs),
            **peaks(device)}


# --- small helpers shared with bench/train.py

def median(values) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peaks(device: torch.device) -> dict:
    """Peak allocated and reserved memory since the last reset_peak, GiB (0 on the CPU)."""
    if device.type != "cuda":
        return {"peak_allocated_gib": 0.0, "peak_reserved_gib": 0.0}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30}
