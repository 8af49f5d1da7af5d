"""The SD v1 noise schedule and the constants every part of the model shares.

Stable Diffusion v1 was trained as a discrete DDPM with 1000 steps and "scaled linear"
betas; samplers work in the continuous sigma parameterisation (k-diffusion), where
``x_t = x_0 + sigma_t * eps`` and ``sigma_t = sqrt((1 - abar_t) / abar_t)``.
"""
import torch

LATENT_SCALE = 0.18215  # std of SD v1 VAE latents; latents are multiplied by it before the UNet
NUM_TIMESTEPS = 1000
LINEAR_START = 0.00085
LINEAR_END = 0.012
MAX_TOKENS = 77  # CLIP context length, including <|startoftext|> and <|endoftext|>


def scaled_linear_betas(n: int = NUM_TIMESTEPS, start: float = LINEAR_START, end: float = LINEAR_END) -> torch.Tensor:
    """Betas spaced linearly in sqrt-space, as LatentDiffusion's 'linear' schedule (float64)."""
    return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2


def alphas_cumprod(betas: torch.Tensor | None = None) -> torch.Tensor:
    """Cumulative product of (1 - beta): the signal fraction abar_t at each discrete step."""
    betas = scaled_linear_betas() if betas is None else betas
    return torch.cumprod(1.0 - betas, dim=0)


def sigmas_from_alphas_cumprod(acp: torch.Tensor) -> torch.Tensor:
    """Noise level sigma_t of each discrete step in the variance-exploding view."""
    return ((1 - acp) / acp) ** 0.5


def ddpm_buffers() -> dict[str, torch.Tensor]:
    """The 12 float32 schedule buffers that CompVis LatentDiffusion stores in its checkpoints."""
    betas = scaled_linear_betas()
    acp = alphas_cumprod(betas)
    acp_prev = torch.cat([torch.ones(1, dtype=acp.dtype), acp[:-1]])
    posterior_variance = betas * (1 - acp_prev) / (1 - acp)
    buffers = {
        "betas": betas,
        "alphas_cumprod": acp,
        "alphas_cumprod_prev": acp_prev,
        "sqrt_alphas_cumprod": acp.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - acp).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - acp).log(),
        "sqrt_recip_alphas_cumprod": (1 / acp).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / acp - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * acp_prev.sqrt() / (1 - acp),
        "posterior_mean_coef2": (1 - acp_prev) * (1 - betas).sqrt() / (1 - acp),
    }
    return {k: v.float() for k, v in buffers.items()}
