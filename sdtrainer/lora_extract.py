"""Extract a LoRA from a trained model: its difference to the base, layer by layer, as a low-rank product.

    report = extract_lora("models/v1-5.safetensors", "outputs/runs/joe/joe-final.safetensors",
                          "outputs/lora/joe.safetensors", ExtractSettings(rank=32))
    print(report.summary)  # "joe.safetensors: 192 layers at rank 32 keep 87.3% of their difference ..."

For each layer a kohya LoRA adapts (sdtrainer.lora.lora_layers), the difference D = W_tuned - W_base, flattened to
[out, in*kh*kw], is factored by SVD, D = U S Vh. The r largest singular values give the closest rank-r matrix
(Eckart-Young), and the share of D's energy (squared Frobenius norm) it keeps is sum(S[:r]^2) / sum(S^2): the
report gives it per layer, over the whole LoRA and at other ranks, and how much of all that training changed its
layers hold (biases, norms, the first and last convs are in no kohya LoRA). The file holds up = U_r sqrt(S_r) and
down = sqrt(S_r) Vh_r (the two halves alike in size, which fp16 keeps better) and alpha = r, so alpha/rank = 1.
"""
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from ldm.model import StableDiffusion
from sdtrainer.checkpoint import (UNET_PREFIX, CheckpointError, check_not_a_folder, detect_file_config,
                                  normalize_state_dict, read_checkpoint, same_shapes, write_atomically)
from sdtrainer.lora import (ALPHA, DOWN, TEXT_HOLDER, UP, LayerGroup, LoraError, LoraLayer, lora_layers,
                            model_hashes)
from sdtrainer.messages import Message
from sdtrainer.models import default_device

MAX_RANK = 1024
RANK_STEPS = (4, 8, 16, 32, 64, 128, 256)  # the ranks the report gives the kept share of, to choose one


@dataclass(frozen=True)
class ExtractSettings:
    rank: int = 32  # every layer's rank (with `energy`: the most a layer gets)
    conv_rank: int = 0  # the ResBlocks' and samplers' 3x3 convs' rank; 0 leaves those blocks out, as kohya does
    energy: float | None = None  # per layer, the smallest rank that keeps this share of its difference's energy
    text_encoder: bool = False  # also the text encoder (when training changed it)
    half: bool = True  # fp16 tensors (half the size)


@dataclass(frozen=True)
class LayerReport:
    name: str  # kohya's module name
    rank: int  # kept
    full_rank: int  # min(out, in*kh*kw): the rank that keeps everything
    energy: float  # ||D||^2, the squared Frobenius norm of the layer's difference
    kept: float  # share of it the kept rank holds
    shares: tuple[float, ...] = field(repr=False, default=())  # share kept at rank 1, 2, ... full_rank

    def kept_at(self, rank: int) -> float:
        return self.shares[min(rank, self.full_rank) - 1]


@dataclass
class ExtractReport:
    path: Path
    layers: list[LayerReport]
    unchanged: list[str] = field(default_factory=list)  # adaptable layers whose difference is zero: left out
    held: float = 1.0  # share of the difference in the extracted parts (UNet, text encoder) its layers hold
    size: int = 0  # bytes written

    @property
    def kept(self) -> float:
        """Share of its layers' difference (energy) that the LoRA keeps."""
        return self.kept_at(None)

    def kept_at(self, rank: int | None) -> float:
        """That share if every layer had `rank` (None: the ranks it has)."""
        total = sum(layer.energy for layer in self.layers)
        kept = (layer.kept if rank is None else layer.kept_at(rank) for layer in self.layers)
        return sum(layer.energy * share for layer, share in zip(self.layers, kept)) / total

    def rank_steps(self) -> list[tuple[int, float]]:
        """(rank, kept_at(rank)) for the RANK_STEPS below the largest full rank: what a rank would keep."""
        top = max(layer.full_rank for layer in self.layers)
        return [(rank, self.kept_at(rank)) for rank in RANK_STEPS if rank < top]

    @property
    def ranks(self) -> str:
        low, high = min(layer.rank for layer in self.layers), max(layer.rank for layer in self.layers)
        return str(low) if low == high else f"{low}-{high}"

    @property
    def summary(self) -> str:
        return (f"{self.path.name}: {len(self.layers)} layers at rank {self.ranks} keep {self.kept:.1%} of their "
                f"difference ({self.size / 1e6:.1f} MB); those layers hold {self.held:.1%} of what training changed")

    def worst(self, n: int) -> list[LayerReport]:
        """The n layers that keep the least of their difference."""
        return sorted(self.layers, key=lambda layer: layer.kept)[:n]


def extract_lora(base: str | Path, tuned: str | Path, out: str | Path, settings: ExtractSettings = ExtractSettings(),
                 overwrite: bool = False, callback: Callable[[int, int], None] | None = None) -> ExtractReport:
    """Write `tuned - base` as a kohya LoRA to `out` (.safetensors) and report what each layer keeps.

    `callback(done, total)` is called after each layer. Neither model file is ever written over.
    """
    # 1. check the request
    base, tuned, out = Path(base), Path(tuned), Path(out)
    _check_settings(settings)
    _check_output(base, tuned, out, overwrite)
    # 2. read both models: the same architecture
    base_sd, base_config, _ = _read_model(base)
    tuned_sd, tuned_config, tuned_metadata = _read_model(tuned)
    if not same_shapes(base_config, tuned_config):
        raise LoraError(Message("lora_architectures", base=base.name, base_config=base_config.name, tuned=tuned.name,
                                tuned_config=tuned_config.name))
    # 3. each layer's difference as a low-rank product
    with torch.device("meta"):
        layers = [layer for layer in lora_layers(StableDiffusion(tuned_config)) if _selected(layer, settings)]
    tensors, reports, unchanged = {}, [], []
    for done, layer in enumerate(layers, 1):
        diff = tuned_sd[layer.key].float() - base_sd[layer.key].float()
        if not diff.any():
            unchanged.append(layer.name)
        else:
            up, down, report = factor(diff, layer, settings)
            dtype = torch.float16 if settings.half else torch.float32
            tensors.update({layer.name + UP: up.to(dtype), layer.name + DOWN: down.to(dtype),
                            layer.name + ALPHA: torch.tensor(float(report.rank), dtype=dtype)})
            reports.append(report)
        if callback:
            callback(done, len(layers))
    if not reports:
        raise LoraError(Message("lora_no_difference", tuned=tuned.name, base=base.name))
    # 4. write it, with what AUTOMATIC1111 and kohya's tools read
    report = ExtractReport(out, reports, unchanged, held=sum(r.energy for r in reports) / _changed(
        base_sd, tuned_sd, settings))
    metadata = lora_metadata(base, tuned, tuned_metadata, settings, report)
    write_atomically(out, lambda tmp: save_file(tensors, tmp, metadata=metadata),
                     sum(t.nbytes for t in tensors.values()) + (1 << 20))
    report.size = out.stat().st_size
    return report


def _check_settings(settings: ExtractSettings) -> None:
    for what, value, low in (("lora_rank_name", settings.rank, 1), ("lora_conv_rank_name", settings.conv_rank, 0)):
        if not (isinstance(value, int) and low <= value <= MAX_RANK):
            raise LoraError(Message("lora_rank", what=Message(what), low=low, high=MAX_RANK, value=value))
    if settings.energy is not None and not (math.isfinite(settings.energy) and 0 < settings.energy <= 1):
        raise LoraError(Message("lora_energy", value=settings.energy))


def _check_output(base: Path, tuned: Path, out: Path, overwrite: bool) -> None:
    """Missing inputs, the same model twice, and an output that is no .safetensors, exists or is an input."""
    for path in (base, tuned):
        if not path.is_file():
            raise CheckpointError(Message("ckpt_not_found", path=path))
    if os.path.samefile(base, tuned):
        raise LoraError(Message("lora_same_model", name=base.name))
    check_not_a_folder(out)
    if out.suffix.lower() != ".safetensors":
        raise LoraError(Message("lora_suffix", name=out.stem))
    if out.exists() and (os.path.samefile(out, base) or os.path.samefile(out, tuned)):
        raise LoraError(Message("lora_overwrites_model", name=out.name))
    if out.exists() and not overwrite:
        raise CheckpointError(Message("prune_exists", path=out))
    if not out.parent.is_dir():
        raise CheckpointError(Message("ckpt_no_folder", folder=out.parent))


def _read_model(path: Path):
    """(our module keys -> tensors, config, metadata) of an SD v1 file, or a CheckpointError naming what it is."""
    raw, metadata = read_checkpoint(path)
    config = detect_file_config(path, raw, metadata)
    return normalize_state_dict(raw), config, metadata


def _changed(base_sd: dict[str, torch.Tensor], tuned_sd: dict[str, torch.Tensor], settings: ExtractSettings) -> float:
    """The energy of the whole difference in the parts extracted (the UNet, and the text encoder when asked):
    biases, norms, first and last convs and the layers left out included, which no kohya LoRA holds."""
    parts = (UNET_PREFIX, TEXT_HOLDER) if settings.text_encoder else (UNET_PREFIX,)
    return sum(float((tuned_sd[k].float() - t.float()).square().sum()) for k, t in base_sd.items()
               if k.startswith(parts) and t.is_floating_point())


def _selected(layer: LoraLayer, settings: ExtractSettings) -> bool:
    return {LayerGroup.ATTENTION: True, LayerGroup.CONV: settings.conv_rank > 0,
            LayerGroup.TEXT: settings.text_encoder}[layer.group]


def factor(diff: torch.Tensor, layer: LoraLayer, settings: ExtractSettings) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      LayerReport]:
    """(up, down, report): the SVD of the layer's difference, cut to its rank (see the module's docstring)."""
    matrix = diff.flatten(1).to(default_device())
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    energy = s.square()
    kept = (energy.cumsum(0) / energy.sum()).cpu()
    rank = min(settings.conv_rank if layer.is_conv3x3 else settings.rank, len(s))
    if settings.energy is not None:
        rank = min(rank, int((kept < settings.energy).sum()) + 1)
    root = s[:rank].sqrt()
    up = (u[:, :rank] * root).reshape(diff.shape[0], rank, *[1] * (diff.dim() - 2))
    down = (root[:, None] * vh[:rank]).reshape(rank, *diff.shape[1:])
    report = LayerReport(layer.name, rank, len(s), float(energy.sum()), float(kept[rank - 1]), tuple(kept.tolist()))
    return up.cpu().contiguous(), down.cpu().contiguous(), report


def lora_metadata(base: Path, tuned: Path, tuned_metadata: dict[str, str], settings: ExtractSettings,
                  report: ExtractReport) -> dict[str, str]:
    """kohya_metadata of the extracted LoRA, and what it was extracted from and keeps."""
    dynamic = settings.energy is not None
    metadata = kohya_metadata(base, report.path, "Dynamic" if dynamic else str(settings.rank),
                              "Dynamic" if dynamic else str(float(settings.rank)), settings.conv_rank,
                              float(settings.conv_rank), tuned_metadata, model_hashes(base))
    metadata.update({"extracted_from": tuned.name, "energy_kept": f"{report.kept:.6f}"})
    return metadata


def kohya_metadata(base: Path, out: Path, dim: str, alpha: str, conv_dim: int, conv_alpha: float,
                   trained: dict[str, str], base_hashes: tuple[str, str]) -> dict[str, str]:
    """kohya's `ss_` keys (network, base model and its `model_hashes`), the SAI model spec's, and the token and
    class word the trained model carries (our checkpoints' `token`, `class_word`, `concepts`; the spec's trigger
    phrase). A LoRA extracted (sdtrainer.lora_extract) and one trained (sdtrainer.lora_training) say the same."""
    legacy_hash, sha256 = base_hashes
    conv = {"conv_dim": str(conv_dim), "conv_alpha": str(conv_alpha)} if conv_dim else {}
    metadata = {
        "ss_network_module": "networks.lora", "ss_network_args": json.dumps(conv),
        "ss_network_dim": dim, "ss_network_alpha": alpha,
        "ss_base_model_version": "sd_v1", "ss_v2": "False", "ss_output_name": out.stem,
        "ss_sd_model_name": base.name, "ss_sd_model_hash": legacy_hash, "ss_new_sd_model_hash": sha256,
        "modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": "stable-diffusion-v1/lora",
        "modelspec.implementation": "diffusers", "modelspec.title": out.stem,
        "modelspec.resolution": "512x512", "modelspec.prediction_type": "epsilon",
    }
    metadata.update({k: trained[k] for k in ("token", "class_word", "concepts") if trained.get(k)})
    if trained.get("token") and trained.get("class_word"):
        metadata["modelspec.trigger_phrase"] = f"{trained['token']} {trained['class_word']}"
    return metadata
