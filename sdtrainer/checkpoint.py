"""Read and write Stable Diffusion v1 single-file checkpoints (.safetensors and .ckpt).

    model, info = load_model("v1-5-pruned-emaonly.safetensors", device="cuda", dtype=torch.float16)
    save_checkpoint(model, "outputs/joe.safetensors", metadata={"instance_prompt": "a photo of sks man"})

The files are the CompVis layout that AUTOMATIC1111, ComfyUI and diffusers' single-file loader read:
`model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), `cond_stage_model.transformer.text_model.*`
(CLIP), the 12 DDPM schedule buffers, and in training files `model_ema.*`. Our modules in `ldm/` carry
exactly these names, so loading is: read -> detect the architecture from keys and shapes -> normalise
the keys -> build on the meta device -> strict `load_state_dict(assign=True)` (no second copy in memory).

`.ckpt` files are pickles: they are read with `torch.load(weights_only=True)` and a short allow-list of
what Lightning training checkpoints hold, so a file that asks to import or call anything else is refused
before any of it runs. Every problem a user can cause is a `CheckpointError` with a one-line message.
"""
import copy
import dataclasses
import errno
import json
import os
import pickle
import re
import shutil
import threading
import uuid
import zipfile
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ldm.autoencoder import VAEConfig
from ldm.model import SD_V1, TINY, SDConfig, StableDiffusion
from ldm.schedule import ddpm_buffers
from ldm.text_encoder import TextEncoderConfig
from ldm.unet import UNetConfig
from sdtrainer.messages import Message, message_of

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer.text_model."
LEGACY_TEXT_PREFIX = "cond_stage_model.transformer."  # older files: no `text_model.` level
EMA_PREFIX = "model_ema."
EMA_UNET_PREFIX = EMA_PREFIX + "diffusion_model"  # + UNet key without dots (CompVis LitEma)
EMA_COUNTERS = ("model_ema.decay", "model_ema.num_updates")
METADATA_ENTRY = "sdtrainer_metadata"  # where a .ckpt keeps what safetensors keeps in its header
CONFIG_METADATA_KEY = "sdtrainer_config"
FILE_FORMAT = "sd-v1"
EXAMPLE_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")
KNOWN_CONFIGS = (SD_V1, TINY)
NEED_SD_V1 = Message("ckpt_need_sd_v1", example=EXAMPLE_CHECKPOINT)


# torch keeps the weights_only allow-list in one process-wide set; reads in two threads must not
# add and remove our entries under each other.
_ALLOW_LIST_LOCK = threading.Lock()


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, is not an SD v1 model, or cannot be written."""


@dataclass
class CheckpointInfo:
    path: Path
    config: SDConfig
    format: str  # "safetensors" or "ckpt"
    dtype: torch.dtype  # of the UNet weights in the file
    has_ema: bool  # the file holds model_ema.* copies of the UNet
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0  # bytes


# ---------------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------------

def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a .safetensors or .ckpt/.pt/.pth file, reading it once."""
    path = _readable_file(Path(path))
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    return _read_pickle(path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from a Lightning `{"state_dict": ...}` if needed."""
    return read_checkpoint(path)[0]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors header's `__metadata__`, or a .ckpt's `sdtrainer_metadata` entry ({} if none)."""
    path = _readable_file(Path(path))
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        return _read_pickle(path)[1]
    with _safetensors_errors(path), safe_open(path, framework="pt") as f:
        return dict(f.metadata() or {})


def _readable_file(path: Path) -> Path:
    if path.is_dir():
        diffusers = (path / "model_index.json").exists()
        raise CheckpointError(Message("ckpt_diffusers_folder" if diffusers else "ckpt_folder", path=path))
    if not path.exists():
        raise CheckpointError(Message("ckpt_not_found", path=path))
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        raise CheckpointError(Message("ckpt_file_type", name=path.name, suffix=path.suffix))
    if path.stat().st_size == 0:
        raise CheckpointError(Message("ckpt_empty", name=path.name))
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with _safetensors_errors(path), safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


@contextmanager
def _safetensors_errors(path: Path):
    """Turns the safetensors library's errors into one-line CheckpointErrors."""
    try:
        yield
    except (SafetensorError, OSError) as e:
        hint = _renamed_hint(path) or Message("ckpt_hint_corrupt")
        raise CheckpointError(Message("ckpt_bad_safetensors", name=path.name, reason=_first_sentence(e),
                                      hint=hint)) from None


def _read_pickle(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    mmap = zipfile.is_zipfile(path)  # maps a 4 GB file instead of reading it into memory
    try:
        with _ALLOW_LIST_LOCK, torch.serialization.safe_globals(_allowed_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(_refused_message(path, e)) from None
    except Exception as e:  # noqa: BLE001 - a parser fed arbitrary bytes can fail in any way; all mean "unreadable"
        hint = _renamed_hint(path) or Message("ckpt_hint_corrupt")
        raise CheckpointError(Message("ckpt_bad_pickle", name=path.name, reason=_first_sentence(e), hint=hint)) \
            from None
    return _unwrap(path, obj)


def _refused_message(path: Path, error: pickle.UnpicklingError) -> Message:
    found = re.search(r"GLOBAL ([\w.]+)|unrecognized function (\S+)|but got <class '([\w.]+)'>", str(error))
    if found is None and "global" not in str(error).lower():
        hint = _renamed_hint(path) or Message("ckpt_hint_corrupt")
        return Message("ckpt_bad_pickle", name=path.name, reason=Message("ckpt_unexpected_pickle"), hint=hint)
    what = f"`{next(g for g in found.groups() if g)}`" if found else Message("ckpt_code_outside")
    return Message("ckpt_runs_code", name=path.name, what=what)


def _first_sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(". ")[0][:160]


def _renamed_hint(path: Path) -> Message | str:
    """Says so when a file's bytes belong to the other format (a .ckpt renamed to .safetensors...)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES and (head.startswith(b"PK") or head[:1] == b"\x80"):
        return Message("ckpt_hint_is_ckpt")
    if path.suffix.lower() in PICKLE_SUFFIXES and len(head) == 9 and head[8:9] == b"{":
        return Message("ckpt_hint_is_safetensors")
    return ""


class _TrainingOnly:
    """Stands in for training-only classes a checkpoint names (callbacks, configs): holds nothing, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


# What Lightning 1.x/2.x training checkpoints pickle besides tensors. Weights never need these, so the
# classes are replaced by `_TrainingOnly` and their code never runs.
TRAINING_ONLY_GLOBALS = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
    "argparse.Namespace", "pathlib.PosixPath", "pathlib.WindowsPath",
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata",
    *(f"omegaconf.nodes.{n}" for n in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode",
                                       "EnumNode", "PathNode", "BytesNode")),
)


@cache
def _allowed_globals() -> list:
    """Plain containers and numpy scalars (logged metrics) as themselves; training-only classes as stubs."""
    numpy_core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    numpy = [(getattr(numpy_core, name), f"{module}.multiarray.{name}")
             for name in ("scalar", "_reconstruct") for module in ("numpy.core", "numpy._core")]
    numpy += [np.dtype, np.ndarray, *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFD"}]
    plain = [OrderedDict, defaultdict, dict, list, tuple, set, int, float, bool, str, Any]
    return plain + numpy + [(_TrainingOnly, name) for name in TRAINING_ONLY_GLOBALS]


def _unwrap(path: Path, obj) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Lightning's {"state_dict": ...} -> the tensors; nested dicts (embeddings) flatten to dotted keys."""
    if not isinstance(obj, dict):
        raise CheckpointError(Message("ckpt_not_weights", name=path.name, type=type(obj).__name__, need=NEED_SD_V1))
    metadata = obj.get(METADATA_ENTRY)
    metadata = {k: v for k, v in metadata.items() if isinstance(v, str)} if isinstance(metadata, dict) else {}
    weights = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    tensors = dict(_flatten(weights))
    if not tensors:
        raise CheckpointError(Message("ckpt_no_tensors", name=path.name, need=NEED_SD_V1))
    return tensors, metadata


def _flatten(d: dict):
    """(dotted key, tensor) in file order, depth first; a loop, not recursion, so that no nesting depth a file
    can hold overflows the stack."""
    stack = [("", iter(d.items()))]
    while stack:
        prefix, items = stack[-1]
        for k, v in items:
            if isinstance(v, torch.Tensor):
                yield prefix + str(k), v
            elif isinstance(v, dict) and k != METADATA_ENTRY:
                stack.append((f"{prefix}{k}.", iter(v.items())))
                break
        else:
            stack.pop()


# ---------------------------------------------------------------------------------------------------
# Key maps, load and save side by side. Our module names are the file's names in the form writers use
# today; readers also accept the older text-encoder names and the EMA copies of training files.
# ---------------------------------------------------------------------------------------------------

@cache
def _schedule_keys() -> frozenset[str]:
    return frozenset(ddpm_buffers())


def to_model_key(file_key: str) -> str:
    """File key -> module key: puts back the `text_model.` level that older files omit."""
    if file_key.startswith(LEGACY_TEXT_PREFIX) and not file_key.startswith(TEXT_PREFIX):
        return TEXT_PREFIX + file_key[len(LEGACY_TEXT_PREFIX):]
    return file_key


def to_file_key(model_key: str) -> str:
    """Module key -> file key. Our module names are the names writers use today (with `text_model.`);
    an old-style name handed to the writer is brought to that form too."""
    return to_model_key(model_key)


def _ema_key(unet_key: str) -> str:
    """CompVis LitEma's name for a UNet weight: the name under the UNet without its dots, e.g.
    `model.diffusion_model.input_blocks.1.0.in_layers.0.weight`
    -> `model_ema.diffusion_modelinput_blocks10in_layers0weight`.
    """
    return EMA_UNET_PREFIX + unet_key[len(UNET_PREFIX):].replace(".", "")


def _is_training_only(model_key: str) -> bool:
    return (model_key.startswith((EMA_PREFIX, VAE_PREFIX + "loss.")) or
            (model_key.startswith("cond_stage_model.") and model_key.endswith("position_ids")))


def normalize_state_dict(sd: dict[str, torch.Tensor], use_ema: bool = False) -> dict[str, torch.Tensor]:
    """A file's state dict -> our module keys: `text_model.` infix, no position_ids / VAE loss / EMA
    entries, fresh schedule buffers. With use_ema the UNet weights are the file's EMA copies."""
    out = {to_model_key(k): v for k, v in sd.items() if not _is_training_only(to_model_key(k))}
    if use_ema:
        out.update(ema_from_file(sd))
    out.update(ddpm_buffers())  # readers recompute the schedule (ldm.schedule); the file's may be fp16
    return out


def _file_state_dict(sd: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Mirror of normalize_state_dict: module keys (+ optional EMA copies) -> what we write."""
    out = {to_file_key(k): v for k, v in normalize_state_dict(sd).items()}
    out.update(ema_to_file(ema or {}))
    return out


def ema_from_file(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's model_ema.* copies under the UNet keys they shadow."""
    unet_keys = [k for k in sd if k.startswith(UNET_PREFIX)]
    missing = [k for k in unet_keys if _ema_key(k) not in sd]
    if len(missing) == len(unet_keys):
        raise CheckpointError(Message("ckpt_no_ema"))
    if missing:
        raise CheckpointError(Message("ckpt_ema_incomplete", missing=len(missing), total=len(unet_keys),
                                      example=missing[0]))
    return {k: sd[_ema_key(k)] for k in unet_keys}


def ema_to_file(ema: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EMA copies keyed like the model (`model.diffusion_model.X`), like the UNet (`X`), or already as
    `model_ema.*` -> the CompVis LitEma names."""
    out = {}
    for k, v in ema.items():
        if k.startswith(EMA_PREFIX):
            out[k] = v
        elif EMA_PREFIX + k in EMA_COUNTERS:
            out[EMA_PREFIX + k] = v
        else:
            out[_ema_key(k if k.startswith(UNET_PREFIX) else UNET_PREFIX + k)] = v
    return out


# ---------------------------------------------------------------------------------------------------
# Architecture detection: a pure function of keys and shapes
# ---------------------------------------------------------------------------------------------------

def detect_config(state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> SDConfig:
    """The SDConfig of an SD v1-family state dict, or a CheckpointError naming what the file is.

    Widths, depths and stages are read from shapes. Attention heads are not visible in any shape: the
    config we store in the metadata on save supplies them when it agrees with the shapes; otherwise
    UNet heads are 8 at width 320 (SD v1) else model_channels // 16 (TINY: 2), and text heads are
    width // 64 (CLIP: 12) or 2 below width 64 (TINY). Known configs (SD_V1, TINY) come back by name.
    """
    sd = {to_model_key(k): v for k, v in state_dict.items()}
    kind = _unsupported_kind(sd)
    if kind:
        raise CheckpointError(Message("ckpt_unsupported", kind=kind, need=NEED_SD_V1))
    unet, text = _infer_unet(sd), _infer_text(sd)
    if unet.context_dim != text.width:
        raise CheckpointError(Message("ckpt_mixed_parts", text=text.width, context=unet.context_dim, need=NEED_SD_V1))
    inferred = _known_or_custom(SDConfig(name="custom", unet=unet, vae=_infer_vae(sd), text=text))
    stored = _config_from_metadata(metadata or {})
    return stored if stored is not None and same_shapes(stored, inferred) else inferred


def detect_file_config(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str]) -> SDConfig:
    """detect_config of a file's tensors, its error naming the file."""
    try:
        return detect_config(state_dict, metadata)
    except CheckpointError as e:
        raise CheckpointError(Message("ckpt_in_file", name=path.name, error=message_of(e))) from None


def _unsupported_kind(sd: dict[str, torch.Tensor]) -> str | None:
    """Names files that are not an SD v1 model: other families, adapters, parts of a model."""
    keys = list(sd)

    def has(*parts: str) -> bool:
        return any(p in k for k in keys for p in parts)

    def starts(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if has("lora_", "lora.", "hada_", "lokr_"):
        return Message("kind_lora")
    if has("string_to_param", "emb_params") or {"clip_l", "clip_g"} & set(keys):
        return Message("kind_embedding")
    if starts("conditioner.embedders."):
        return Message("kind_sdxl")
    if starts("cond_stage_model.model."):
        return Message("kind_sd2")
    if not starts(UNET_PREFIX) and has("down_blocks.", "mid_block.", "up_blocks.", "time_embedding."):
        return Message("kind_diffusers_part")
    if starts(UNET_PREFIX):
        return _unsupported_unet(sd)
    if starts("encoder.", "decoder."):
        return Message("kind_vae")
    vae, text = starts(VAE_PREFIX), starts("cond_stage_model.", "text_model.", "transformer.")
    if vae or text:
        return Message("kind_vae_text_no_unet" if vae and text else "kind_vae_no_unet" if vae else "kind_text_no_unet")
    return Message("kind_not_sd")


def _unsupported_unet(sd: dict[str, torch.Tensor]) -> Message | None:
    context = _shape(sd, UNET_PREFIX + "middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1]
    in_channels = _shape(sd, UNET_PREFIX + "input_blocks.0.0.weight")[1]
    if context == 1024:
        return Message("kind_sd2_context")
    if context in (1280, 2048) or UNET_PREFIX + "label_emb.0.0.weight" in sd:
        return Message("kind_sdxl_context", context=context)
    if in_channels in (8, 9):
        return Message("kind_inpainting" if in_channels == 9 else "kind_pix2pix", channels=in_channels)
    if in_channels != 4:
        return Message("kind_unknown_unet", channels=in_channels)
    no_vae, no_text = (not any(k.startswith(prefix) for k in sd) for prefix in (VAE_PREFIX, TEXT_PREFIX))
    if no_vae or no_text:
        return Message("kind_unet_no_vae_text" if no_vae and no_text else "kind_unet_no_vae" if no_vae else
                       "kind_unet_no_text")
    return None


def _shape(sd: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(Message("ckpt_lacks_key", key=key, need=NEED_SD_V1))
    return tuple(sd[key].shape)


def _indices(sd: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Sorted N of the keys `prefix + "N.*"`."""
    return sorted({int(k[len(prefix):].split(".")[0]) for k in sd
                   if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()})


def _infer_unet(sd: dict[str, torch.Tensor]) -> UNetConfig:
    p = UNET_PREFIX
    mc, in_channels = _shape(sd, p + "input_blocks.0.0.weight")[:2]
    levels: list[list[tuple[int, bool]]] = [[]]  # per stage: (width, has attention) of each ResBlock
    for i in _indices(sd, p + "input_blocks.")[1:]:
        if p + f"input_blocks.{i}.0.op.weight" in sd:
            levels.append([])
        else:
            width = _shape(sd, p + f"input_blocks.{i}.0.in_layers.2.weight")[0]
            levels[-1].append((width, p + f"input_blocks.{i}.1.proj_in.weight" in sd))
    if len({len(level) for level in levels}) != 1 or not levels[0]:
        raise CheckpointError(Message("ckpt_stage_depths", depths=str([len(lv) for lv in levels]), need=NEED_SD_V1))
    return UNetConfig(
        in_channels=in_channels, out_channels=_shape(sd, p + "out.2.weight")[0], model_channels=mc,
        channel_mult=tuple(level[0][0] // mc for level in levels), num_res_blocks=len(levels[0]),
        attention_resolutions=tuple(2**i for i in reversed(range(len(levels))) if levels[i][0][1]),
        num_heads=8 if mc == 320 else max(1, mc // 16),
        context_dim=_shape(sd, p + "middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1])


def _infer_vae(sd: dict[str, torch.Tensor]) -> VAEConfig:
    p = VAE_PREFIX + "encoder."
    ch, in_channels = _shape(sd, p + "conv_in.weight")[:2]
    levels = _indices(sd, p + "down.")
    return VAEConfig(
        ch=ch, ch_mult=tuple(_shape(sd, p + f"down.{i}.block.0.conv2.weight")[0] // ch for i in levels),
        num_res_blocks=len(_indices(sd, p + "down.0.block.")),
        z_channels=_shape(sd, VAE_PREFIX + "decoder.conv_in.weight")[1], in_channels=in_channels)


def _infer_text(sd: dict[str, torch.Tensor]) -> TextEncoderConfig:
    p = TEXT_PREFIX
    width = _shape(sd, p + "embeddings.token_embedding.weight")[1]
    return TextEncoderConfig(width=width, layers=len(_indices(sd, p + "encoder.layers.")),
                             heads=width // 64 if width >= 64 else 2,
                             mlp_width=_shape(sd, p + "encoder.layers.0.mlp.fc1.weight")[0])


def _comparable(cfg: SDConfig, heads: bool = True) -> tuple:
    unet = dataclasses.replace(cfg.unet, attention_resolutions=tuple(sorted(cfg.unet.attention_resolutions)),
                               num_heads=cfg.unet.num_heads if heads else 0)
    return unet, cfg.vae, dataclasses.replace(cfg.text, heads=cfg.text.heads if heads else 0)


def _known_or_custom(cfg: SDConfig) -> SDConfig:
    for known in KNOWN_CONFIGS:
        if _comparable(known) == _comparable(cfg):
            return copy.deepcopy(known)
    return cfg


def same_shapes(a: SDConfig, b: SDConfig) -> bool:
    """Equal in everything the tensors' shapes show (all but the head counts)."""
    return _comparable(a, heads=False) == _comparable(b, heads=False)


def config_to_json(cfg: SDConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg))


def _tuples(fields: dict) -> dict:
    """JSON lists back to the tuples the config dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def _config_from_metadata(metadata: dict[str, str]) -> SDConfig | None:
    """Mirror of config_to_json, for the config save_checkpoint stores; None when absent or unusable."""
    try:
        d = json.loads(metadata[CONFIG_METADATA_KEY])
        cfg = SDConfig(name=str(d["name"]), unet=UNetConfig(**_tuples(d["unet"])), vae=VAEConfig(**_tuples(d["vae"])),
                       text=TextEncoderConfig(**_tuples(d["text"])))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    widths = [cfg.unet.model_channels * m for m in cfg.unet.channel_mult]
    heads_fit = (cfg.unet.num_heads > 0 and cfg.text.heads > 0 and cfg.text.width % cfg.text.heads == 0
                 and all(w % cfg.unet.num_heads == 0 for w in widths))
    return cfg if heads_fit else None


# ---------------------------------------------------------------------------------------------------
# Loading a model
# ---------------------------------------------------------------------------------------------------

def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               use_ema: bool = False) -> tuple[StableDiffusion, CheckpointInfo]:
    """Build the StableDiffusion a checkpoint holds, with its weights, on `device`.

    dtype None keeps the file's dtype, except that half-precision files are loaded as float32 on the
    CPU (which computes fp16 slowly or not at all). The schedule buffers are always float32.
    With use_ema the UNet gets the file's EMA weights (CheckpointError if it has none).
    """
    path, device = Path(path), torch.device(device)
    # 1. read and recognise
    raw, metadata = read_checkpoint(path)
    config = detect_file_config(path, raw, metadata)
    info = _info(path, raw, config, metadata)
    # 2. module keys, target dtype and device
    sd = normalize_state_dict(raw, use_ema=use_ema)
    del raw
    dtype = dtype or (torch.float32 if device.type == "cpu" and info.dtype.itemsize < 4 else info.dtype)
    for k, t in sd.items():  # one tensor at a time; copying also detaches weights from a memory-mapped file
        sd[k] = t.to(device=device, dtype=_dtype_for(k, t, dtype), copy=True)
    # 3. build without allocating, then adopt the file's tensors
    return model_from_state_dict(config, sd, device, path.name), info


def model_from_state_dict(config: SDConfig, sd: dict[str, torch.Tensor], device: torch.device,
                          name: str) -> StableDiffusion:
    """A StableDiffusion built on the meta device that adopts `sd`'s tensors, shared with `sd` (no copy); a
    CheckpointError naming `name` (the file they come from) when keys or shapes differ from the config's."""
    with torch.device("meta"):
        model = StableDiffusion(config)
    _check_keys(name, config, model, sd)
    model.load_state_dict(sd, strict=True, assign=True)
    _fill_unsaved_buffers(model, device)
    return model


def _info(path: Path, raw: dict, config: SDConfig, metadata: dict[str, str]) -> CheckpointInfo:
    fmt = "safetensors" if path.suffix.lower() in SAFETENSORS_SUFFIXES else "ckpt"
    unet_dtype = raw[UNET_PREFIX + "input_blocks.0.0.weight"].dtype
    return CheckpointInfo(path=path, config=config, format=fmt, dtype=unet_dtype,
                          has_ema=any(k.startswith(EMA_UNET_PREFIX) for k in raw), metadata=metadata,
                          file_size=path.stat().st_size)


def _dtype_for(key: str, tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    """Floating tensors get dtype, except the float32 schedule buffers and EMA decay; ints keep theirs."""
    if dtype is None or not tensor.is_floating_point():
        return tensor.dtype
    return torch.float32 if key in _schedule_keys() or key == "model_ema.decay" else dtype


def _check_keys(name: str, config: SDConfig, model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Strict loading, with a message that lists what differs instead of torch's wall of text."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [f"{k} {list(s)}" for k, s in expected.items() if k not in sd]
    unexpected = [f"{k} {list(v.shape)}" for k, v in sd.items() if k not in expected]
    wrong = [f"{k} {list(sd[k].shape)} (model: {list(s)})" for k, s in expected.items()
             if k in sd and tuple(sd[k].shape) != s]
    if missing or unexpected or wrong:
        parts = [f"{len(items)} {what}: {', '.join(items[:10])}{', ...' if len(items) > 10 else ''}"
                 for what, items in (("missing", missing), ("unexpected", unexpected), ("with other shapes", wrong))
                 if items]
        raise CheckpointError(Message("ckpt_mismatch", name=name, config=config.name, parts="; ".join(parts),
                                      need=NEED_SD_V1))


def _fill_unsaved_buffers(model: nn.Module, device: torch.device) -> None:
    """Buffers that are not in any file stay on the meta device after an assign-load; CLIP's
    position_ids is the only one in SD v1 and is 0..76."""
    for module in model.modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta and name == "position_ids":
                setattr(module, name, torch.arange(buf.shape[-1], device=device).expand(buf.shape))
            elif buf.is_meta:
                raise RuntimeError(f"ldm module {type(module).__name__} has an unsaved buffer {name!r} to fill")


# ---------------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------------

def save_checkpoint(model_or_state_dict: nn.Module | dict[str, torch.Tensor], path: str | Path,
                    dtype: torch.dtype | None = torch.float16, metadata: dict[str, str] | None = None,
                    include_ema: dict[str, torch.Tensor] | None = None) -> Path:
    """Write an SD v1 single-file checkpoint atomically and return its path.

    The suffix picks the format: .safetensors (also when there is none), or .ckpt/.pt/.pth as
    `{"state_dict": ..., "sdtrainer_metadata": ...}`. Floating tensors become `dtype` (None keeps them),
    the schedule buffers stay float32. `include_ema` (UNet EMA weights) is written as model_ema.*.
    The metadata gets the model's config (`sdtrainer_config`) and `format: sd-v1`.
    """
    # 1. where and what
    path = _output_path(Path(path))
    sd = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    config = getattr(model_or_state_dict, "cfg", None)
    if not isinstance(config, SDConfig):
        config = detect_config(sd, metadata)
    # 2. the file's tensors and header
    tensors = _storable(_file_state_dict(sd, include_ema), dtype)
    header = {**_string_metadata(metadata), CONFIG_METADATA_KEY: config_to_json(config), "format": FILE_FORMAT}
    # 3. write to a temporary file beside the target, then swap it in
    _write_atomic(path, tensors, header)
    return path


def _output_path(path: Path) -> Path:
    check_not_a_folder(path)
    path = path if path.suffix else path.with_suffix(".safetensors")
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        raise CheckpointError(Message("ckpt_save_suffix", suffix=path.suffix))
    check_not_a_folder(path)
    if not path.parent.is_dir():
        raise CheckpointError(Message("ckpt_no_folder", folder=path.parent))
    return path


def check_not_a_folder(path: Path) -> None:
    """CheckpointError when a file is to be written where a folder is (`--out outputs/` is not a file name)."""
    if path.is_dir():
        raise CheckpointError(Message("ckpt_save_folder", path=path, example=path / "model.safetensors"))


def _string_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    bad = [k for k, v in (metadata or {}).items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise CheckpointError(Message("ckpt_metadata", bad=str(bad[:5])))
    return dict(metadata or {})


def _storable(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Cast, CPU, contiguous tensors that own their memory, one at a time (no GPU copy of the model):
    safetensors refuses shared storage, and torch.save would write the whole storage behind a view."""
    out, seen = {}, set()
    for k, t in tensors.items():
        if t.is_meta:
            raise CheckpointError(Message("ckpt_meta_tensor", key=k))
        t = t.detach().to("cpu").to(_dtype_for(k, t, dtype))
        storage = t.untyped_storage()
        if t.nbytes and (storage.data_ptr() in seen or not t.is_contiguous() or storage.nbytes() != t.nbytes):
            t = t.clone(memory_format=torch.contiguous_format)
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    writer = _write_safetensors if path.suffix.lower() in SAFETENSORS_SUFFIXES else _write_pickle
    needed = sum(t.nbytes for t in tensors.values()) + (1 << 20)
    write_atomically(path, lambda tmp: writer(tensors, tmp, metadata), needed)


def write_atomically(path: Path, write: Callable[[Path], None], needed: int) -> None:
    """`write(tmp)` into a temporary file beside `path`, fsync, os.replace: `path` is either the old file or the
    new one. CheckpointError, with nothing left behind, when the folder has less than `needed` bytes free
    (checked first) or fills up while writing."""
    free = free_bytes(path.parent)
    if free < needed:
        raise _no_space(path, needed, free)
    tmp = temp_path(path)  # created by the writer: usual permissions
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode())  # some writers make private (0600) files; the app's other outputs are not
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise _no_space(path, needed, free_bytes(path.parent)) from None
        if isinstance(e, PermissionError):
            raise CheckpointError(Message("ckpt_permission", path=path)) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


@cache
def _new_file_mode() -> int:
    """The mode open() gives a new file: 0666 less the umask (read once; setting it back is the only way)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def temp_path(path: Path) -> Path:
    """A hidden file beside `path` that names this process, so that remove_stale_temp_files can tell a
    crashed save's leftover from a save under way. It keeps `path`'s suffix (writers pick the format by it)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")


# Ours (with the writer's process id), and the names older versions used (no id: always stale).
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.\w+)?$")
_OLD_TEMP_NAMES = re.compile(
    r"^\.(last\.ckpt\.tmp|.+\.[0-9a-f]{8}\.tmp|.+\.(pruning|replacing)\.(safetensors|ckpt|pt|pth))$")


def remove_stale_temp_files(*roots: Path) -> list[Path]:
    """Delete the temporary files that an interrupted save (a crash, kill -9, a full disk) left under `roots`,
    and return them; those of processes still running are kept."""
    removed = []
    for root in map(Path, roots):
        for path in root.rglob(".*") if root.is_dir() else []:
            found = _TEMP_NAME.match(path.name)
            stale = _OLD_TEMP_NAMES.match(path.name) if found is None else not _process_alive(int(found["pid"]))
            if stale and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # exists (another user's) or cannot tell: keep the file
    return True


def storage_bytes(obj: Any) -> int:
    """What torch.save writes for `obj`'s tensors: each storage once, whole."""
    seen: dict[tuple, int] = {}
    stack = [obj]
    while stack:  # no recursion: a deeply nested object must not overflow the stack
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            seen[(item.device, storage.data_ptr())] = storage.nbytes()
        elif isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, (list, tuple)):
            stack += item
    return sum(seen.values())


def _write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    save_file(tensors, path, metadata=metadata)


def _write_pickle(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    torch.save({"state_dict": tensors, METADATA_ENTRY: metadata}, path)


def _fsync(path: Path) -> None:
    with open(path, "r+b") as f:  # Windows flushes only handles open for writing
        os.fsync(f.fileno())


def _no_space(path: Path, needed: int, free: int) -> CheckpointError:
    return CheckpointError(Message("ckpt_no_space", name=path.name, needed=f"{needed / 1e9:.2f}", folder=path.parent,
                                   free=f"{free / 1e9:.2f}"))
