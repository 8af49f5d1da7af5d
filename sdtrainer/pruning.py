"""Shrink a checkpoint to what inference needs: the model's weights, usually in fp16.

    report = prune_checkpoint("logs/last.ckpt", "models/joe-pruned.safetensors")
    print(report.summary)   # "12.30 GB -> joe-pruned.safetensors 2.13 GB (kept 1142 tensors, dropped 688)"

A Lightning training .ckpt also holds optimizer states, callbacks and EMA copies of the UNet
(model_ema.*); a pruned file keeps only the UNet, VAE, text encoder and schedule buffers. `ema`
chooses what happens to the EMA copies: "drop" them, "keep" them as model_ema.*, or "use" them as
the UNet's weights (what the released *-emaonly files are). The output is written through
`save_checkpoint` (so atomically) and loaded back before the call returns.
"""
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch

from sdtrainer.checkpoint import (EMA_PREFIX, PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, CheckpointError,
                                  check_not_a_folder, detect_file_config, load_model, normalize_state_dict,
                                  read_checkpoint, save_checkpoint, temp_path, to_model_key)
from sdtrainer.messages import Message, message_of


class EmaMode(str, Enum):
    DROP = "drop"  # leave the EMA copies out
    KEEP = "keep"  # write them as model_ema.* next to the trained weights
    USE = "use"  # the EMA copies become the UNet's weights


@dataclass
class PruneReport:
    src_bytes: int
    dst_bytes: int
    dst_path: Path
    kept_keys: list[str] = field(repr=False)  # tensors written (model_ema.* included with ema="keep")
    dropped_keys: list[str] = field(repr=False)  # tensors of the source's state dict left out

    @property
    def summary(self) -> str:
        return (f"{self.src_bytes / 1e9:.2f} GB -> {self.dst_path.name} {self.dst_bytes / 1e9:.2f} GB "
                f"(kept {len(self.kept_keys)} tensors, dropped {len(self.dropped_keys)})")


def prune_checkpoint(src: str | Path, dst: str | Path, half: bool = True, ema: EmaMode | str = EmaMode.DROP,
                     overwrite: bool = False) -> PruneReport:
    """Write the model weights of `src` to `dst` (fp16 if half), check that `dst` loads, and report.

    Never writes over `src`; writes over an existing `dst` only with overwrite=True.
    """
    # 1. check the request
    src, dst, mode = Path(src), Path(dst), _ema_mode(ema)
    check_not_a_folder(dst)
    dst = dst if dst.suffix else dst.with_suffix(".safetensors")
    _check_destination(src, dst, overwrite)
    # 2. read and keep the model's weights
    raw, metadata = read_checkpoint(src)
    detect_file_config(src, raw, metadata)  # names the file if it is not an SD v1 model
    weights = normalize_state_dict(raw, use_ema=mode is EmaMode.USE)
    ema_weights = {k: v for k, v in raw.items() if k.startswith(EMA_PREFIX)} if mode is EmaMode.KEEP else {}
    dropped = sorted(k for k in raw if to_model_key(k) not in weights and k not in ema_weights)
    del raw
    # 3. write beside dst, load it back, then move it into place
    tmp = temp_path(dst)
    kept = sorted(weights) + sorted(ema_weights)
    try:
        save_checkpoint(weights, tmp, dtype=torch.float16 if half else None,
                        metadata={**metadata, "pruned_from": src.name}, include_ema=ema_weights)
        del weights, ema_weights
        _verify(tmp, src)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return PruneReport(src_bytes=src.stat().st_size, dst_bytes=dst.stat().st_size, dst_path=dst,
                       kept_keys=kept, dropped_keys=dropped)


def _ema_mode(ema: EmaMode | str) -> EmaMode:
    try:
        return EmaMode(ema)
    except ValueError:
        raise CheckpointError(Message("prune_ema_mode", choices=", ".join(m.value for m in EmaMode), value=ema)) \
            from None


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.is_file():
        raise CheckpointError(Message("ckpt_not_found", path=src))
    if dst.exists() and (dst.resolve() == src.resolve() or os.path.samefile(src, dst)):
        raise CheckpointError(Message("prune_same_file", name=dst.name))
    if dst.exists() and not overwrite:
        raise CheckpointError(Message("prune_exists", path=dst))
    if dst.suffix.lower() not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        raise CheckpointError(Message("prune_suffix", suffix=dst.suffix))
    if not dst.parent.is_dir():
        raise CheckpointError(Message("ckpt_no_folder", folder=dst.parent))


def _verify(tmp: Path, src: Path) -> None:
    """Loads the written file with load_model (the caller deletes it when this raises)."""
    try:
        load_model(tmp, dtype=torch.float16)
    except CheckpointError as e:
        raise CheckpointError(Message("prune_reload_failed", error=message_of(e), name=src.name)) from None
