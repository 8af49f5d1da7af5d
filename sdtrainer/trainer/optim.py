"""Loss pieces, EMA, optimizer and learning-rate schedule: small functions of tensors and settings.

    weights = min_snr_weights(alphas_cumprod[t], gamma=5.0)
    optimizer = build_optimizer(cfg, groups, device)      # AdamW, 8-bit AdamW, or stochastically rounded for bf16
    lr = cfg.learning_rate * lr_factor(cfg.lr_schedule, cfg.warmup_steps, cfg.steps, step)
"""
import math

import torch

from sdtrainer.config import ConfigError, LRSchedule, OptimizerName, Precision, TrainConfig
from sdtrainer.messages import Message


def min_snr_weights(acp: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for an eps-predicting model: min(SNR, gamma) / SNR (Hang et al. 2023)."""
    snr = acp / (1 - acp)
    return snr.clamp(max=gamma) / snr


class EMA:
    """Exponential moving average of the UNet's parameters, in fp32 beside them (CompVis LitEma's
    decay warm-up: min(decay, (1 + n) / (10 + n)) after n updates)."""

    def __init__(self, params: dict[str, torch.Tensor], decay: float, shadow: dict | None = None, updates: int = 0):
        self.decay, self.updates = decay, updates
        source = shadow if shadow is not None else params
        self.shadow = {k: source[k].detach().to(params[k].device, torch.float32).clone() for k in params}

    @torch.no_grad()
    def update(self, params: dict[str, torch.Tensor]) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(list(self.shadow.values()), [params[k].detach().float() for k in self.shadow], 1 - decay)

    @torch.no_grad()
    def swap(self, params: dict[str, torch.Tensor]) -> None:
        """Exchanges the live weights and the average (twice: back as they were); fp32 weights only."""
        for k, p in params.items():
            live = p.detach().clone()
            p.copy_(self.shadow[k])
            self.shadow[k].copy_(live)


def lr_factor(schedule: LRSchedule, warmup: int, total: int, step: int) -> float:
    """Multiplier of the learning rate at optimizer step `step` (0-based)."""
    if schedule is LRSchedule.CONSTANT:
        return 1.0
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if schedule is LRSchedule.WARMUP:
        return warm
    progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    return warm * 0.5 * (1.0 + math.cos(math.pi * progress))


class OptimizerUnavailable(ConfigError):
    """The chosen optimizer's package is not installed."""


def import_bitsandbytes():
    try:
        import bitsandbytes
    except ImportError:
        raise OptimizerUnavailable(Message("run_no_bitsandbytes")) from None
    return bitsandbytes


def needs_bitsandbytes(cfg: TrainConfig) -> bool:
    """8-bit AdamW, and the stochastically rounded AdamW of bf16 weights, are bitsandbytes' kernels."""
    return cfg.optimizer is OptimizerName.ADAMW8BIT or cfg.precision is Precision.BF16_TRUE


def build_optimizer(cfg: TrainConfig, groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """AdamW as configured. bf16 weights (bf16-true) always take the stochastically rounded AdamW: rounded
    to nearest, updates at DreamBooth learning rates are smaller than half a bf16 step and all vanish."""
    if cfg.precision is Precision.BF16_TRUE:
        import_bitsandbytes()
        from sdtrainer.stochastic_rounding import StochasticRoundingAdamW
        bits = 8 if cfg.optimizer is OptimizerName.ADAMW8BIT else 32
        return StochasticRoundingAdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                       optim_bits=bits, seed=cfg.seed)
    if cfg.optimizer is OptimizerName.ADAMW8BIT:
        return import_bitsandbytes().optim.AdamW8bit(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    # Lightning cannot clip gradients of a fused optimizer under fp16 loss scaling (it unscales internally).
    fused = device.type == "cuda" and not (cfg.precision is Precision.FP16_MIXED and cfg.max_grad_norm > 0)
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused or None)
