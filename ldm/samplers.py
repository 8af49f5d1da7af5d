"""Samplers for SD v1 in the continuous sigma parameterisation (the k-diffusion view).

A sampler is a flat function ``sample_X(model, x, sigmas, extra_args, callback, generator, ...)``
where ``model(x, sigma_batch, **extra_args)`` returns the denoised estimate of ``x`` at noise
level ``sigma``; ``x`` is the starting noise already multiplied by ``sigmas[0]``; ``sigmas`` is a
descending schedule ending in 0 (DDIM's ends in the sigma of timestep 0). Each step calls
``callback({'i', 'sigma', 'denoised', 'x'})`` with the ``x`` the model just saw. Every random draw
uses ``generator`` (or a list of them, one per batch row, so image i of a batch is the image its own
seed gives alone), so one seed gives one image.
Schedules (``karras_sigmas``, ``model_sigmas``, ``ddim_sigmas``) are separate functions, and the
CompVis eps-predicting UNet is adapted by ``EpsDenoiser`` so samplers never see ``alphas_cumprod``.

Usage::

    denoiser = CFGDenoiser(EpsDenoiser(unet, schedule.alphas_cumprod()))
    extra = {"cond": cond, "uncond": uncond, "cfg_scale": 7.5}
    latents = sample(denoiser, torch.randn(shape, generator=g), "dpmpp_2m", 25, extra, generator=g)

A new sampler is one function here, one ``SAMPLERS`` entry, one ``SamplerName`` value and a test.
"""
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from .schedule import sigmas_from_alphas_cumprod

# --- schedules --------------------------------------------------------------------------------


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """n noise levels spaced evenly in sigma**(1/rho), then 0 (Karras et al. 2022, eq. 5); CPU float64."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def model_sigmas(denoiser, n: int) -> Tensor:
    """n noise levels at evenly spaced timesteps of ``denoiser.sigmas`` (999 down to 0), then 0; CPU float64."""
    log_table = denoiser.sigmas.detach().to("cpu", torch.float64).log()
    t = torch.linspace(len(log_table) - 1, 0, n, dtype=torch.float64)
    return torch.cat([_interp_log_sigma(log_table, t).exp(), t.new_zeros(1)])


def ddim_sigmas(denoiser, n: int) -> Tensor:
    """SD v1 DDIM's n noise levels, then the final one; CPU float64. The timesteps are every (1000 // n)-th
    from 1 up, run from the top (961, 921, ..., 1 for 25 steps), and the last step goes to t = 0 (abar_0,
    not 1), as CompVis DDIM and diffusers' DDIMScheduler(steps_offset=1, set_alpha_to_one=False) do."""
    table = denoiser.sigmas.detach().to("cpu", torch.float64)
    if n >= len(table):
        raise ValueError(f"ddim takes at most {len(table) - 1} steps, got {n}")
    t = torch.arange(n).flip(0) * (len(table) // n) + 1
    return torch.cat([table[t], table[:1]])


def _interp_log_sigma(log_table: Tensor, t: Tensor) -> Tensor:
    """Log-sigma at continuous timesteps t, linear between the discrete steps of the table."""
    low = t.floor().clamp(0, len(log_table) - 2)
    w = t - low
    low = low.long()
    return (1 - w) * log_table[low] + w * log_table[low + 1]


# --- model wrappers ---------------------------------------------------------------------------


def _append_dims(v: Tensor, ndim: int) -> Tensor:
    """Reshape a per-batch [B] tensor to [B, 1, ...] so it broadcasts against an ndim tensor."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def _per_batch(sigma: Tensor, x: Tensor) -> Tensor:
    """A scalar or [B] sigma as a [B] tensor on x's device."""
    return torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])


class EpsDenoiser(nn.Module):
    """Turns a CompVis eps-predicting UNet ``unet(x, timesteps, context)`` into a denoiser D(x, sigma)."""

    def __init__(self, unet: nn.Module, alphas_cumprod: Tensor):
        super().__init__()
        self.unet = unet
        self.register_buffer("sigmas", sigmas_from_alphas_cumprod(alphas_cumprod).float(), persistent=False)

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    def _log_table(self, like: Tensor) -> Tensor:
        return self.sigmas.to(torch.promote_types(like.dtype, torch.float32)).log()

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Continuous timestep of each sigma, interpolating log-sigma between the discrete steps."""
        log_table = self._log_table(sigma)
        log_sigma = sigma.to(log_table.dtype).log()
        low = (torch.searchsorted(log_table, log_sigma) - 1).clamp(0, len(log_table) - 2)
        w = (log_sigma - log_table[low]) / (log_table[low + 1] - log_table[low])
        return low + w.clamp(0, 1)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Sigma at continuous timesteps t (the inverse of sigma_to_t)."""
        log_table = self._log_table(t)
        return _interp_log_sigma(log_table, t.to(log_table.dtype)).exp()

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        sigma = _per_batch(sigma, x)
        c_in = _append_dims((sigma**2 + 1) ** -0.5, x.ndim).to(x.dtype)
        eps = self.unet(x * c_in, self.sigma_to_t(sigma), cond)
        return x - eps * _append_dims(sigma, x.ndim).to(x.dtype)


class CFGDenoiser(nn.Module):
    """Classifier-free guidance (Ho & Salimans 2022) around a denoiser; cond and uncond share one batch."""

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.inner = denoiser

    @property
    def sigmas(self) -> Tensor:
        return self.inner.sigmas

    @property
    def sigma_min(self) -> Tensor:
        return self.inner.sigma_min

    @property
    def sigma_max(self) -> Tensor:
        return self.inner.sigma_max

    def forward(self, x: Tensor, sigma: Tensor, cond: Tensor, uncond: Tensor, cfg_scale: float) -> Tensor:
        if cfg_scale == 1.0:
            return self.inner(x, sigma, cond)
        sigma = _per_batch(sigma, x)
        both = self.inner(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, uncond]))
        denoised_cond, denoised_uncond = both.chunk(2)
        return denoised_uncond + (denoised_cond - denoised_uncond) * cfg_scale


# --- samplers ---------------------------------------------------------------------------------


def _noise(x: Tensor, generator: torch.Generator | list[torch.Generator] | None) -> Tensor:
    """Standard normal noise shaped like x, drawn on the generator's device (CPU seeds work for CUDA);
    with a list of generators, row i of the batch comes from generator i."""
    if isinstance(generator, (list, tuple)):
        return torch.stack([_noise(x[i], g) for i, g in enumerate(generator)])
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, generator=None) -> Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn or Heun)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"i": i, "sigma": sigmas[i], "denoised": denoised, "x": x})
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def _ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split a step to sigma_next into a deterministic part to sigma_down and fresh noise of std sigma_up."""
    sigma_up = (eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt()).clamp(max=sigma_next)
    return (sigma_next**2 - sigma_up**2).sqrt(), sigma_up


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, generator=None, eta=1.0) -> Tensor:
    """Euler step to sigma_down, then noise back up to the next sigma (ancestral sampling, Ho et al. 2020)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"i": i, "sigma": sigmas[i], "denoised": denoised, "x": x})
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1], eta)
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigma_down - sigmas[i])
        if eta > 0 and sigmas[i + 1] > 0:
            x = x + _noise(x, generator) * sigma_up
    return x


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, generator=None, eta=0.0) -> Tensor:
    """DDIM (Song et al. 2021, eqs. 12 and 16), written in sigma space with abar = 1 / (1 + sigma^2)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "denoised": denoised, "x": x})
        eps = (x - denoised) / sigma
        abar, abar_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        # the paper's sigma_t(eta) (eq. 16), divided by sqrt(abar_next) to move from x_t to x_t / sqrt(abar_t)
        noise_std = eta * ((1 - abar_next) / (1 - abar) * (1 - abar / abar_next) / abar_next).sqrt()
        x = denoised + (sigma_next**2 - noise_std**2).clamp(min=0).sqrt() * eps
        if eta > 0 and sigma_next > 0:
            x = x + _noise(x, generator) * noise_std
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, generator=None) -> Tensor:
    """DPM-Solver++(2M), multistep second order in log-sigma (Lu et al. 2022, Algorithm 2)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "denoised": denoised, "x": x})
        if sigma_next == 0:
            x = denoised
        else:
            h = (sigma / sigma_next).log()  # step in lambda = -log(sigma)
            d = denoised
            if old_denoised is not None:
                r = (sigmas[i - 1] / sigma).log() / h
                d = denoised + (denoised - old_denoised) / (2 * r)
            x = (sigma_next / sigma) * x - torch.expm1(-h) * d
        old_denoised = denoised
    return x


# --- registry ---------------------------------------------------------------------------------


class SamplerName(str, Enum):
    """The sampler choices, for config files and UI dropdowns."""

    EULER = "euler"
    EULER_A = "euler_a"
    DDIM = "ddim"
    DPMPP_2M = "dpmpp_2m"


@dataclass(frozen=True)
class SamplerSpec:
    fn: Callable[..., Tensor]  # sample_X(model, x, sigmas, extra_args, callback, generator, **options)
    schedule: Literal["karras", "model", "ddim"]  # which sigma schedule `sample` builds for it
    takes_eta: bool = False  # whether fn has an `eta` (stochasticity) option
    # DDPM-style start: unit-variance x_T, i.e. noise * sqrt(1 + sigma_max^2), instead of noise * sigma_max
    variance_preserving: bool = False


SAMPLERS: dict[str, SamplerSpec] = {
    SamplerName.EULER.value: SamplerSpec(sample_euler, "model"),
    SamplerName.EULER_A.value: SamplerSpec(sample_euler_ancestral, "model", takes_eta=True),
    SamplerName.DDIM.value: SamplerSpec(sample_ddim, "ddim", takes_eta=True, variance_preserving=True),
    SamplerName.DPMPP_2M.value: SamplerSpec(sample_dpmpp_2m, "karras"),
}


def get_sampler(name: str) -> SamplerSpec:
    """The SamplerSpec for a name such as 'euler_a'; ValueError naming the choices otherwise."""
    key = name.value if isinstance(name, SamplerName) else name
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[key]


def sigmas_for(spec: SamplerSpec, denoiser, steps: int) -> Tensor:
    """The sigma schedule (steps + 1 values, ending in 0) that `spec` runs with on this denoiser."""
    if spec.schedule == "karras":
        return karras_sigmas(steps, float(denoiser.sigma_min), float(denoiser.sigma_max))
    if spec.schedule == "ddim":
        return ddim_sigmas(denoiser, steps)
    return model_sigmas(denoiser, steps)


def sample(denoiser, noise, sampler: str, steps: int, extra_args, callback=None, generator=None, eta=None) -> Tensor:
    """Denoise unit-variance `noise` with the named sampler in `steps` model calls. The result is the latent
    the VAE decodes: x at the last sigma in the variance-preserving scale, x / sqrt(1 + sigma^2) (x itself
    when the schedule ends in 0; DDIM's ends at abar_0, as in AUTOMATIC1111 and diffusers)."""
    spec = get_sampler(sampler)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    options = {}
    if eta is not None:
        if not spec.takes_eta:
            raise ValueError(f"sampler {sampler!r} has no eta; eta applies to: "
                             f"{', '.join(k for k, s in SAMPLERS.items() if s.takes_eta)}")
        options["eta"] = eta
    sigmas = sigmas_for(spec, denoiser, steps)
    sigmas = sigmas.to(noise.device, torch.promote_types(noise.dtype, torch.float32))
    start = (1 + sigmas[0] ** 2).sqrt() if spec.variance_preserving else sigmas[0]
    x = spec.fn(denoiser, noise * start, sigmas, extra_args, callback, generator, **options)
    return x / (1 + sigmas[-1] ** 2).sqrt()
