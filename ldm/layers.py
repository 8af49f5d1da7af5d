"""Small building blocks shared by the UNet and the autoencoder."""
import math

import torch
from torch import nn

NORM_GROUPS = 32  # every GroupNorm in SD v1 has 32 groups; channel counts must be multiples of it


def normalization(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=eps)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, [cos | sin] as in CompVis."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
