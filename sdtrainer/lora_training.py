"""Training a LoRA instead of the whole UNet (method lora): kohya's factors beside the frozen base, and their file.

    network = LoraNetwork.for_model(model, cfg)     # down random, up zero: at step 0 the model is the base
    network.attach(model)                           # each adapted layer now adds alpha/rank * up(down(its input))
    save_lora(network, path, cfg, metadata)         # a kohya .safetensors, which with_lora applies to any SD v1

The factors live in a module of their own whose state dict *is* a kohya LoRA file (`NAME.lora_down.weight`,
`NAME.lora_up.weight`, `NAME.alpha`, NAME from sdtrainer.lora.lora_layers), so saving and the training state
are a copy of it. They reach the model through forward hooks on the layers they adapt, so the model keeps the
base's weights and state-dict keys. An adapted layer computes W x + alpha/rank * up(down(x)), as kohya's
LoRAModule does, which is the merged weight W + alpha/rank * up @ down of `with_lora` up to rounding.
The factors train in fp32 whatever holds the base (bf16 or fp16 on a GPU under mixed precision: `frozen_dtype`).
"""
import functools
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ldm.model import StableDiffusion
from sdtrainer.checkpoint import write_atomically
from sdtrainer.config import Precision, TrainConfig
from sdtrainer.lora import LayerGroup, LoraLayer, lora_layers, model_hashes
from sdtrainer.lora_extract import kohya_metadata


class LoraBranch(nn.Module):
    """One layer's factors, as kohya's LoRAModule holds them: `lora_down` a layer like the adapted one (same
    kernel, stride and padding) with `rank` outputs, `lora_up` a 1x1 back to its outputs. Initialised as kohya
    does: down Kaiming-uniform, up zero, so the branch adds nothing until it trains."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, rank: int, alpha: float):
        super().__init__()
        kwargs = {"bias": False, "device": layer.weight.device, "dtype": torch.float32}
        if isinstance(layer, nn.Conv2d):
            self.lora_down = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding,
                                       **kwargs)
            self.lora_up = nn.Conv2d(rank, layer.out_channels, 1, **kwargs)
        else:
            self.lora_down = nn.Linear(layer.in_features, rank, **kwargs)
            self.lora_up = nn.Linear(rank, layer.out_features, **kwargs)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_up(self.lora_down(x)) * self.scale


class LoraNetwork(nn.Module):
    """The LoRA of a run: one LoraBranch per adapted layer, a child named with the layer's kohya name."""

    def __init__(self, branches: dict[str, LoraBranch], layers: list[LoraLayer]):
        super().__init__()
        for name, branch in branches.items():
            self.add_module(name, branch)
        self.layers = layers

    @classmethod
    def for_model(cls, model: StableDiffusion, cfg: TrainConfig) -> "LoraNetwork":
        """The transformers' layers at lora_rank (kohya's default); with lora_conv_rank, also the ResBlocks' and
        samplers' layers, their 3x3 convs at that rank. Every layer's scale is lora_alpha / lora_rank (a 3x3
        conv's alpha goes with its rank)."""
        layers = [layer for layer in lora_layers(model) if layer.group is LayerGroup.ATTENTION
                  or (layer.group is LayerGroup.CONV and cfg.lora_conv_rank > 0)]
        branches = {}
        for layer in layers:
            rank = cfg.lora_conv_rank if layer.is_conv3x3 else cfg.lora_rank
            branches[layer.name] = LoraBranch(model.get_submodule(adapted_path(layer)), rank,
                                              cfg.lora_alpha * rank / cfg.lora_rank)
        return cls(branches, layers)

    def attach(self, model: StableDiffusion) -> "LoraNetwork":
        """Hook each branch onto the layer it adapts: that layer's output gains the branch's."""
        for layer in self.layers:
            target = model.get_submodule(adapted_path(layer))
            target.register_forward_hook(functools.partial(add_branch, self.get_submodule(layer.name)))
        return self


def adapted_path(layer: LoraLayer) -> str:
    """The model's path of the layer a LoRA module adapts (its weight's key without `.weight`)."""
    return layer.key.removesuffix(".weight")


def add_branch(branch: LoraBranch, layer: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output + branch(args[0])


def frozen_dtype(precision: Precision) -> torch.dtype:
    """The dtype that holds a LoRA's frozen UNet on a GPU: the autocast dtype, which its matmuls run in anyway."""
    return {Precision.BF16_MIXED: torch.bfloat16, Precision.FP16_MIXED: torch.float16}.get(precision, torch.float32)


@functools.lru_cache(maxsize=4)
def _base_hashes(path: str, mtime_ns: int) -> tuple[str, str]:
    return model_hashes(Path(path))


def save_lora(network: LoraNetwork, path: Path, cfg: TrainConfig, trained: dict[str, str]) -> None:
    """The network as a kohya LoRA file (fp16 with save_half), with kohya's metadata (rank, alpha, the base model's
    hashes, read once per run) and the run's (`trained`: token, class word, concepts, steps, settings)."""
    dtype = torch.float16 if cfg.save_half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in network.state_dict().items()}
    base = Path(cfg.model)
    metadata = kohya_metadata(base, path, str(cfg.lora_rank), str(cfg.lora_alpha), cfg.lora_conv_rank,
                              cfg.lora_alpha * cfg.lora_conv_rank / cfg.lora_rank, trained,
                              _base_hashes(str(base.resolve()), base.stat().st_mtime_ns))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata={**trained, **metadata}),
                     sum(t.nbytes for t in tensors.values()) + (1 << 20))
