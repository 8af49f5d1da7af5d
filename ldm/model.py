"""The whole SD v1 latent diffusion model in the CompVis checkpoint layout, and its named configs.

    model = StableDiffusion(SD_V1)        # or TINY for tests and the demo model
    model.state_dict().keys()             # == the keys of an SD v1 single-file checkpoint

`model.model.diffusion_model` is the UNet, `first_stage_model` the VAE, `cond_stage_model` the
text encoder; the 12 DDPM schedule buffers sit at the top level, as LatentDiffusion wrote them.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from ldm.autoencoder import AutoencoderKL, VAEConfig
from ldm.schedule import LATENT_SCALE, ddpm_buffers
from ldm.text_encoder import CLIPTextEncoder, TextEncoderConfig
from ldm.unet import UNetConfig, UNetModel


@dataclass
class SDConfig:
    name: str = "sd-v1"
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)

    @property
    def latent_factor(self) -> int:
        """Image pixels per latent pixel along each side (8 for SD v1)."""
        return 2 ** (len(self.vae.ch_mult) - 1)


SD_V1 = SDConfig()

# Same family, a few MB: what tests, CI and the demo model use. Latents stay 8x smaller than images.
TINY = SDConfig(
    name="tiny",
    unet=UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
                    num_heads=2, context_dim=32),
    vae=VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1),
    text=TextEncoderConfig(width=32, layers=2, heads=2, mlp_width=64),
)


class DiffusionWrapper(nn.Module):
    """Gives the UNet its checkpoint prefix `model.diffusion_model`."""

    def __init__(self, unet: UNetModel):
        super().__init__()
        self.diffusion_model = unet


class StableDiffusion(nn.Module):
    def __init__(self, cfg: SDConfig):
        super().__init__()
        self.cfg = cfg
        self.model = DiffusionWrapper(UNetModel(cfg.unet))
        self.first_stage_model = AutoencoderKL(cfg.vae)
        self.cond_stage_model = CLIPTextEncoder(cfg.text)
        for name, value in ddpm_buffers().items():
            self.register_buffer(name, value)

    @property
    def unet(self) -> UNetModel:
        return self.model.diffusion_model

    @property
    def vae(self) -> AutoencoderKL:
        return self.first_stage_model

    @property
    def text_encoder(self) -> CLIPTextEncoder:
        return self.cond_stage_model

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents, sampled from the posterior (its mean if no generator)."""
        mean, std = self.vae.encode(images)
        if generator is not None:
            noise = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=mean.dtype)
            mean = mean + std * noise.to(mean.device)
        return mean * LATENT_SCALE

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1]; retries in float32 when half precision overflows."""
        images = self.vae.decode(latents / LATENT_SCALE)
        if images.dtype != torch.float32 and not torch.isfinite(images).all():
            dtype = images.dtype
            with torch.autocast(latents.device.type, enabled=False):
                images = self.vae.float().decode(latents.float() / LATENT_SCALE)
            self.vae.to(dtype)
        return images.clamp(-1, 1)
