"""The LightningModule of a run: DreamBoothModule (the step, the optimizer, EMA and RNG around a resume) and what a
model file says about its training (`model_metadata`).

    module = DreamBoothModule(cfg, model, data, words)     # data: the run's CachedData (sdtrainer.trainer.cache)
    trainer.fit(module)                                    # trainer: run.build_trainer, with the callbacks

Importing this module imports Lightning.
"""
import functools
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ldm.cuda_graph import graphed_training_call
from ldm.model import StableDiffusion
from ldm.schedule import alphas_cumprod
from sdtrainer.checkpoint import EMA_PREFIX, UNET_PREFIX, ema_from_file, ema_to_file
from sdtrainer.config import Device, Method, OptimizerName, Precision, TrainConfig, config_dict
from sdtrainer.flat_params import flatten_
from sdtrainer.lora_training import LoraNetwork
from sdtrainer.trainer.batches import StepBatches, batch_plan
from sdtrainer.trainer.cache import CachedData
from sdtrainer.trainer.optim import EMA, build_optimizer, lr_factor, min_snr_weights

def compiled_unet_forward(cfg: TrainConfig, unet: torch.nn.Module) -> Callable | None:
    """unet.forward under torch.compile when cfg.compile is on and training runs on CUDA (on the CPU the
    warm-up costs more than it saves), else None. Compiled once per run at the first step; previews keep
    calling the eager module, so they trigger no second compile."""
    if not (cfg.compile and cfg.device is Device.CUDA):
        return None
    return torch.compile(unet.forward, dynamic=False)


class DreamBoothModule(pl.LightningModule):
    """Trains the UNet (and the text encoder if configured), or a LoRA on the frozen UNet, on cached latents; the
    VAE stays frozen.

    Each micro-batch puts `batch_size` instance and as many class latents through one UNet call;
    loss = instance eps-MSE + prior_loss_weight * class eps-MSE.
    """

    def __init__(self, cfg: TrainConfig, model: StableDiffusion, data: CachedData,
                 subjects: list[tuple[str, str]] | None = None, processes: int = 1):
        super().__init__()
        self.cfg, self.sd, self.subjects = cfg, model, subjects  # subjects: (token, class word) pairs, for metadata
        self.processes = processes  # the run's processes, each taking its share of every micro-batch
        model.vae.requires_grad_(False)
        model.text_encoder.requires_grad_(cfg.train_text_encoder)
        model.unet.requires_grad_(cfg.method is Method.FULL)
        model.unet.set_gradient_checkpointing(cfg.gradient_checkpointing)
        self.lora = LoraNetwork.for_model(model, cfg).attach(model) if cfg.method is Method.LORA else None
        self.compiled_unet = compiled_unet_forward(cfg, model.unet)
        self.graphed: dict[str, torch.nn.Module] = {}  # the CUDA-graphed UNet call, made at the first step
        for name, tensor in data.tensors().items():
            self.register_buffer(name, tensor, persistent=False)
        self.plan = batch_plan(cfg, data, processes)
        self.acp = alphas_cumprod().float()  # not a buffer: bf16-true must not round it
        self.ema: EMA | None = None
        self.stepped = False  # an optimizer step ended the current micro-batch (callbacks read it)
        self._restored: dict = {}

    def unet_params(self) -> dict[str, torch.Tensor]:
        return dict(self.sd.unet.named_parameters())

    # --- data
    def train_dataloader(self) -> DataLoader:
        accum = self.cfg.grad_accum
        batches = StepBatches(self.plan, self.trainer.global_step * accum, self.cfg.steps * accum,
                              self.trainer.global_rank, self.processes)
        return DataLoader(batches, batch_size=None, num_workers=0)

    def gather(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [n, C, h, w] and text context [n, 77, width] of a micro-batch, instance rows first."""
        n, flip = len(batch["instance"]), batch["flip"].long()
        latents = torch.cat([self.instance_latents[batch["instance"], flip[:n]],
                             self.class_latents[batch["class"], flip[n:]]])
        cond = self.conds[torch.cat([self.instance_rows[batch["instance"]], self.class_rows[batch["class"]]])]
        if self.cfg.train_text_encoder:
            cond = self.sd.text_encoder(cond)
        return latents, cond

    # --- step
    def training_step(self, batch: dict, batch_idx: int) -> dict:
        latents, cond = self.gather(batch)
        t, noise = batch["timesteps"], batch["noise"].float()
        acp = self.acp.to(t.device)[t].view(-1, 1, 1, 1)
        noisy = acp.sqrt() * latents.float() + (1 - acp).sqrt() * noise
        dtype = next(self.sd.unet.parameters()).dtype
        eps = self.unet_call(noisy.to(dtype), t, cond.to(dtype))
        per_sample = F.mse_loss(eps.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        if self.cfg.min_snr_gamma > 0:
            per_sample = per_sample * min_snr_weights(acp.flatten(), self.cfg.min_snr_gamma)
        n = len(batch["instance"])
        instance = per_sample[:n].mean()
        prior = per_sample[n:].mean() if len(per_sample) > n else per_sample.new_zeros(())
        loss = instance + self.cfg.prior_loss_weight * prior
        return {"loss": loss, "instance_loss": instance.detach(), "prior_loss": prior.detach()}

    def uses_cuda_graphs(self) -> bool:
        cfg = self.cfg
        return cfg.cuda_graphs and cfg.device is Device.CUDA and not cfg.train_text_encoder

    def uses_flat_params(self) -> bool:
        """AdamW8bit steps one flat tensor per group when the UNet is CUDA-graphed: its Python cost per tensor
        (~0.3 ms x 686 on an H100) would then dominate the step. Eager steps keep per-tensor gradients, freed
        after each step, which needs ~1.5 GiB less at the peak (sdtrainer/flat_params.py)."""
        return self.cfg.optimizer is OptimizerName.ADAMW8BIT and self.uses_cuda_graphs()

    def unet_call(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The UNet as configured: CUDA-graphed (cuda_graphs), compiled (compile), or eager."""
        if self.uses_cuda_graphs() and x.is_cuda:
            if "unet" not in self.graphed:
                self.graphed["unet"] = graphed_training_call(self.sd.unet, x, t, cond, trained=self.lora)
            return self.graphed["unet"](x, t, cond)
        return (self.compiled_unet or self.sd.unet)(x, t, cond)

    def configure_optimizers(self):
        cfg = self.cfg
        groups = [{"params": list(self.lora.parameters()), "lr": cfg.lora_learning_rate} if self.lora is not None
                  else {"params": list(self.sd.unet.parameters()), "lr": cfg.learning_rate}]
        if cfg.train_text_encoder:
            groups.append({"params": list(self.sd.text_encoder.parameters()),
                           "lr": cfg.text_encoder_lr or cfg.learning_rate})
        if self.uses_flat_params():
            groups = [{**group, "params": [flatten_(group["params"])]} for group in groups]
        optimizer = build_optimizer(cfg, groups, self.device)
        schedule = functools.partial(lr_factor, cfg.lr_schedule, cfg.warmup_steps, cfg.steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.stepped = True
        if self.ema is not None:
            self.ema.update(self.unet_params())

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.stepped = False

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer) -> None:
        # flattened parameters keep their gradients as views of one buffer: zero it, don't free it
        optimizer.zero_grad(set_to_none=not self.uses_flat_params())

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Lightning zeroes the module's gradients before fitting, after configure_optimizers: with flattened
        parameters that must zero the gradient views, not drop them (backward would then fill new tensors and
        the optimizer would step the flat buffer with a zero gradient: nothing would learn)."""
        super().zero_grad(set_to_none=set_to_none and not self.uses_flat_params())

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused AdamW, for fear of fp16 loss scaling;
        # bf16 has no loss scaling, so clip here (under fp16, build_optimizer picks a non-fused AdamW).
        if gradient_clip_val and self.cfg.precision is Precision.BF16_MIXED:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # --- EMA and RNG around a resume
    def on_train_start(self) -> None:
        if self.cfg.ema:
            self.ema = EMA(self.unet_params(), self.cfg.ema_decay, self._restored.get("ema"),
                           self._restored.get("ema_updates", 0))
        if "rng" in self._restored:
            set_rng_state(self._restored["rng"])
        self._restored = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The state file's weights use the SD checkpoint layout (no `sd.` prefix) with the EMA copy as
        CompVis' model_ema.*, so it loads as a model and `prune --ema use` takes the EMA weights; a LoRA's state
        holds the LoRA alone, in kohya's layout (the base is the run's model file)."""
        weights = self.lora.state_dict() if self.lora is not None else {
            k.removeprefix("sd."): v for k, v in checkpoint["state_dict"].items()}
        if self.ema is not None:
            weights.update(ema_to_file({UNET_PREFIX + k: v for k, v in self.ema.shadow.items()}))
        checkpoint["state_dict"] = weights
        checkpoint["sdtrainer"] = {"rng": rng_state(), "ema_updates": self.ema.updates if self.ema else 0,
                                   "processes": self.processes}
        checkpoint["sdtrainer_metadata"] = model_metadata(self.cfg, self.global_step, self.subjects)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        weights = checkpoint["state_dict"]
        restored = dict(checkpoint.get("sdtrainer") or {})
        if any(k.startswith(EMA_PREFIX) for k in weights):
            restored["ema"] = {k.removeprefix(UNET_PREFIX): v for k, v in ema_from_file(weights).items()}
        if self.lora is not None:  # the frozen base as loaded, the LoRA as saved
            checkpoint["state_dict"] = {**{"sd." + k: v for k, v in self.sd.state_dict().items()},
                                        **{"lora." + k: v for k, v in weights.items()}}
        else:
            checkpoint["state_dict"] = {"sd." + k: v for k, v in weights.items() if not k.startswith(EMA_PREFIX)}
        self._restored = restored


def rng_state() -> dict:
    """torch (CPU and CUDA), Python and NumPy RNG states, as tensors and ints (loadable with weights_only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_metadata(cfg: TrainConfig, step: int, subjects: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """What a model file says about its training. (`sdtrainer_config` is taken: it holds the architecture.)
    `concepts` lists every (token, class word) trained; token and class_word are the first one's."""
    subjects = subjects or [(cfg.token, cfg.class_word)]
    return {"base_model": Path(cfg.model).name, "token": subjects[0][0], "class_word": subjects[0][1],
            "concepts": json.dumps([list(words) for words in subjects]),
            "steps": str(step), "sdtrainer_train_config": json.dumps(config_dict(cfg))}
