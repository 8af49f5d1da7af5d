"""LoRA files in kohya's layout, the one AUTOMATIC1111, ComfyUI and diffusers read: names, reading, applying.

    layers = lora_layers(model)                 # every layer a kohya LoRA can adapt, with its kohya name
    lora = read_lora("outputs/lora/joe.safetensors")
    merged = with_lora(model, lora, 0.8)        # adapted weights W + 0.8 * alpha/rank * up @ down; model unchanged

A LoRA module is named after the *diffusers* path of the layer it adapts, dots made underscores, behind
`lora_unet_` or `lora_te_` (`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`), and holds
`NAME.lora_down.weight` [rank, in(, kh, kw)], `NAME.lora_up.weight` [out, rank(, 1, 1)] and `NAME.alpha`.
The layers are kohya's: every Linear and 1x1 Conv2d of the UNet's transformers and every Linear of the text
encoder's attention and MLP; with a conv rank also every layer of the UNet's ResBlocks, downsamplers and
upsamplers (3x3 convs included). Our modules carry CompVis names, so `lora_layers` walks the UNet once and gives
each block its diffusers path: the one place where the two namings meet.
"""
import functools
import hashlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers.models.clip.modeling_clip import CLIPMLP, CLIPAttention

from ldm.attention import SpatialTransformer
from ldm.model import StableDiffusion
from ldm.unet import Downsample, ResBlock, UNetModel, Upsample
from sdtrainer.checkpoint import UNET_PREFIX, model_from_state_dict, read_checkpoint
from sdtrainer.messages import Message

LORA_UNET, LORA_TEXT = "lora_unet_", "lora_te_"
DOWN, UP, ALPHA = ".lora_down.weight", ".lora_up.weight", ".alpha"
TEXT_HOLDER = "cond_stage_model.transformer."  # our text-encoder keys are this + transformers' CLIPTextModel path
MAX_WEIGHT = 1.5  # the highest LoRA weight the app offers
SHORT_HASH = 12  # hex digits of a LoRA's hash in AUTOMATIC1111's `Lora hashes`

# diffusers' names of our blocks, and of the layers inside them where they differ (a transformer's are the same)
BLOCK_KINDS = {ResBlock: "resnets", SpatialTransformer: "attentions", Downsample: "downsamplers",
               Upsample: "upsamplers"}
LAYER_NAMES = {ResBlock: {"in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.3": "conv2",
                          "skip_connection": "conv_shortcut"},
               Downsample: {"op": "conv"}, Upsample: {"conv": "conv"}, SpatialTransformer: {}}


class LoraError(ValueError):
    """A LoRA file that is not one, does not fit the model, or a weight out of range."""


class LayerGroup(str, Enum):
    ATTENTION = "attention"  # inside a UNet transformer: what every kohya LoRA adapts
    CONV = "conv"  # inside a ResBlock, downsampler or upsampler: only with a conv rank
    TEXT = "text"  # the text encoder's attention and MLP


@dataclass(frozen=True)
class LoraLayer:
    name: str  # kohya's module name
    key: str  # our state-dict key of the weight it adapts
    group: LayerGroup
    shape: tuple[int, ...]  # of that weight

    @property
    def is_conv3x3(self) -> bool:
        """A spatial conv (3x3): kohya gives these the conv rank, every other layer the rank."""
        return len(self.shape) == 4 and self.shape[2:] != (1, 1)


# ---------------------------------------------------------------------------------------------------
# Which layers, and their kohya names
# ---------------------------------------------------------------------------------------------------

def lora_layers(model: StableDiffusion) -> list[LoraLayer]:
    """Every layer a kohya LoRA of SD v1 can adapt, UNet first (works on the meta device)."""
    layers = []
    for ours, theirs, block in unet_blocks(model.unet):
        group = LayerGroup.ATTENTION if isinstance(block, SpatialTransformer) else LayerGroup.CONV
        renames = LAYER_NAMES[type(block)]
        for child, weight in _weights(block, (nn.Linear, nn.Conv2d)):
            name = f"{theirs}.{renames.get(child, child)}"
            layers.append(LoraLayer(LORA_UNET + name.replace(".", "_"), f"{UNET_PREFIX}{ours}.{child}.weight", group,
                                    tuple(weight.shape)))
    for path, module in model.cond_stage_model.transformer.named_modules():
        if isinstance(module, (CLIPAttention, CLIPMLP)):
            for child, weight in _weights(module, (nn.Linear,)):
                name = f"{path}.{child}"
                layers.append(LoraLayer(LORA_TEXT + name.replace(".", "_"), f"{TEXT_HOLDER}{name}.weight",
                                        LayerGroup.TEXT, tuple(weight.shape)))
    return layers


def unet_blocks(unet: UNetModel) -> Iterator[tuple[str, str, nn.Module]]:
    """(our path, diffusers' path, module) of every ResBlock, transformer, downsampler and upsampler, e.g.
    ("input_blocks.1.1", "down_blocks.0.attentions.0", <SpatialTransformer>). A stage ends after its sampler."""
    for ours, theirs in (("input_blocks", "down_blocks"), ("output_blocks", "up_blocks")):
        level, seen = 0, Counter()
        for i, block in enumerate(getattr(unet, ours)):
            for k, layer in enumerate(block):
                if kind := BLOCK_KINDS.get(type(layer)):
                    yield f"{ours}.{i}.{k}", f"{theirs}.{level}.{kind}.{seen[level, kind]}", layer
                    seen[level, kind] += 1
            level += isinstance(block[-1], (Downsample, Upsample))
    seen = Counter()
    for k, layer in enumerate(unet.middle_block):
        kind = BLOCK_KINDS[type(layer)]
        yield f"middle_block.{k}", f"mid_block.{kind}.{seen[kind]}", layer
        seen[kind] += 1


def _weights(module: nn.Module, types: tuple[type, ...]) -> Iterator[tuple[str, torch.Tensor]]:
    return ((name, child.weight) for name, child in module.named_modules() if isinstance(child, types))


# ---------------------------------------------------------------------------------------------------
# Reading a LoRA file
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoraModule:
    down: torch.Tensor  # [rank, in(, kh, kw)]
    up: torch.Tensor  # [out, rank(, 1, 1)]
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def fits(self, shape: tuple[int, ...]) -> bool:
        return self.up.shape[0] == shape[0] and self.down[0].numel() == math.prod(shape[1:])

    def delta(self, shape: tuple[int, ...]) -> torch.Tensor:
        """alpha/rank * up @ down, in float32, shaped like the weight it adds to."""
        product = self.up.flatten(1).float() @ self.down.flatten(1).float()
        return (product * (self.alpha / self.rank)).reshape(shape)


@dataclass
class Lora:
    path: Path
    modules: dict[str, LoraModule]  # by kohya name
    metadata: dict[str, str]


def read_lora(path: str | Path) -> Lora:
    """The modules of a kohya-layout LoRA file (.safetensors, or a .ckpt/.pt read safely)."""
    path = Path(path)
    if not path.is_file():
        raise LoraError(Message("lora_not_found", path=path))
    tensors, metadata = read_checkpoint(path)
    names = {key.split(".")[0] for key in tensors}
    strays = sorted(k for k in tensors if not k.startswith("lora_") or not k.endswith((DOWN, UP, ALPHA))
                    or k.count(".") > 2)  # other prefixes (SDXL's lora_te1_...) are refused by with_lora, by name
    if strays:
        kind = "lora_is_model" if any(k.startswith(UNET_PREFIX) for k in strays) else "lora_not_kohya"
        raise LoraError(Message(kind, name=path.name, key=strays[0]))
    incomplete = sorted(n for n in names if n + DOWN not in tensors or n + UP not in tensors)
    if incomplete:
        raise LoraError(Message("lora_incomplete", name=path.name, module=incomplete[0]))
    modules = {n: LoraModule(tensors[n + DOWN], tensors[n + UP],
                             float(tensors[n + ALPHA]) if n + ALPHA in tensors else float(tensors[n + DOWN].shape[0]))
               for n in sorted(names)}
    return Lora(path, modules, metadata)


def is_lora_file(path: Path) -> bool:
    """Whether a .safetensors file's header names kohya LoRA modules (reads the header only, once per version of
    the file): such files are add-ons, not models."""
    try:
        stat = path.stat()
    except OSError:
        return False
    return path.suffix.lower() == ".safetensors" and _names_lora(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _names_lora(path: str, mtime_ns: int, size: int) -> bool:
    try:
        with safe_open(path, framework="pt") as f:
            return any(k.startswith((LORA_UNET, LORA_TEXT)) for k in f.keys())
    except (SafetensorError, OSError):
        return False


# ---------------------------------------------------------------------------------------------------
# Applying one
# ---------------------------------------------------------------------------------------------------

def with_lora(model: StableDiffusion, lora: Lora, weight: float) -> StableDiffusion:
    """A model whose adapted weights are W + weight * alpha/rank * up @ down, in W's dtype; every other tensor is
    `model`'s own (shared, not copied), and `model` is left as it was."""
    if not (math.isfinite(weight) and 0 <= weight <= MAX_WEIGHT):
        raise LoraError(Message("lora_weight", value=weight, max=MAX_WEIGHT))
    layers = {layer.name: layer for layer in lora_layers(model)}
    unknown = sorted(set(lora.modules) - set(layers))
    if unknown:
        raise LoraError(Message("lora_unknown_layer", name=lora.path.name, module=unknown[0], n=len(unknown)))
    sd = model.state_dict()
    for name, module in lora.modules.items():
        key = layers[name].key
        if not module.fits(sd[key].shape):
            raise LoraError(Message("lora_shape", name=lora.path.name, module=name, up=list(module.up.shape),
                                    down=list(module.down.shape), shape=list(sd[key].shape)))
        w = sd[key]
        sd[key] = (w.float() + weight * module.delta(w.shape).to(w.device)).to(w.dtype)
    device = next(model.parameters()).device
    return model_from_state_dict(model.cfg, sd, device, lora.path.name).eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------------
# AUTOMATIC1111's hashes
# ---------------------------------------------------------------------------------------------------

def file_sha256(path: Path, start: int = 0, length: int | None = None) -> str:
    """sha256 of `length` bytes of a file from `start` (to the end when None), read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = math.inf if length is None else length
        while left > 0 and (chunk := f.read(int(min(1 << 20, left)))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def model_hashes(path: Path) -> tuple[str, str]:
    """(legacy, sha256) of a checkpoint, as kohya records its base model: AUTOMATIC1111's old 8-digit hash (64 kB
    from 1 MiB on) and the whole file's sha256 (whose first 10 digits are its `Model hash`)."""
    return file_sha256(path, 0x100000, 0x10000)[:8], file_sha256(path)


def lora_hash(path: Path) -> str:
    """The short hash AUTOMATIC1111 writes in `Lora hashes`: for a .safetensors file, the sha256 of its tensor data
    (after the header, so metadata edits do not change it; kohya's and additional-networks' hash), else of the
    whole file; 12 digits. Read once per version of the file."""
    stat = path.stat()
    return _lora_hash(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _lora_hash(path: str, mtime_ns: int, size: int) -> str:
    if not path.lower().endswith(".safetensors"):
        return file_sha256(Path(path))[:SHORT_HASH]
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    return file_sha256(Path(path), 8 + header)[:SHORT_HASH]
