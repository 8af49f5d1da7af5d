"""Training settings: one typed dataclass, four presets, and the loader that merges them.

    cfg = load_config("12gb", "my.yaml", ["steps=1500", "learning_rate=2e-6"])
    cfg = load_config(values={"model": "models/v1-5.safetensors", "token": "joepenna", "class_word": "person"})
    save_config(cfg, run_dir / "config.yaml")

A value comes from, lowest precedence first: the dataclass defaults, the preset
`configs/train/<preset>.yaml`, the user's YAML, `values` (typed, e.g. from command-line flags), then
`overrides` (`key=value` strings, parsed as YAML). OmegaConf checks every key and type against
`TrainConfig`, so a typo fails at load time with its name (ConfigError). `check_config` adds the
checks that need several fields at once, before a run starts.

A numeric setting's accepted values are declared once, as a `Range` in its field's metadata
(`field_range("steps")`): `check_config` enforces it and the Training tab builds its inputs from it.
"""
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ldm.samplers import SamplerName
from sdtrainer.images import Crop, subfolders
from sdtrainer.lora_extract import MAX_RANK
from sdtrainer.messages import Message
from sdtrainer.sampling import MAX_STEPS

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"
DEFAULT_PRESET = "24gb"

# Free VRAM (GiB) each preset needs on the card before training starts: the gate's threshold and the
# UI dropdown's label. Estimated for SD v1 at 512 px, batch 1 + 1 class image, from the parts that
# dominate: fp32 UNet weights 3.2 GiB, their fp32 gradients 3.2 GiB, AdamW states 6.4 GiB (8-bit: 1.6),
# activations (bf16 autocast) 4-6 GiB without gradient checkpointing, ~1.5 with it, frozen fp16 VAE and
# text encoder 0.4 GiB, CUDA context and allocator slack ~1 GiB. Measured peaks are in
# bench/results/ and the README's performance table.
PRESET_VRAM_GIB: dict[str, float] = {
    "24gb": 20.0,  # fp32 weights + bf16 autocast + fused AdamW
    "classic": 20.0,  # fp32 throughout, UNet AND text encoder trained, gradient checkpointing
    "12gb": 11.0,  # bf16 weights (stochastically rounded updates) + 8-bit AdamW + CUDA graphs
    "8gb": 7.5,  # 12gb + gradient checkpointing
    "lora-8gb": 5.1,  # method lora: the frozen UNet in bf16, gradient checkpointing (lora_vram_gib)
}
# Smallest card (total VRAM, GiB) each preset accepts; a 24 GB card reports ~23.7 GiB to PyTorch.
PRESET_MIN_TOTAL_GIB: dict[str, float] = {"24gb": 23.0, "classic": 23.0, "12gb": 11.5, "8gb": 7.5}
# Method lora trains no UNet weight, so its figure is its own, from the same parts: the frozen UNet (bf16/fp16
# under mixed precision, else fp32), the activations, the frozen VAE and text encoder, CUDA context and slack,
# and the LoRA's factors with their gradients and AdamW states (6.8 M parameters at rank 16, 0.1 GiB; 0.5 allowed).
# Estimates; measured on an H200 (bench/results/latest.json, 2026-12-03): lora-8gb reserved 4.31 GiB at its peak with
# CUDA graphs (4.18 without).
LORA_VRAM_PARTS_GIB = {"unet_half": 1.7, "unet_fp32": 3.2, "activations": 5.0, "activations_checkpointed": 1.5,
                       "frozen": 0.4, "context": 1.0, "lora": 0.5}
EMA_EXTRA_GIB = 3.3  # an fp32 shadow copy of the SD v1 UNet stays on the GPU when ema is on
ALL_DEVICES = "all"  # devices: every GPU of the machine
DEFAULT_PREVIEW_PROMPTS = ["{token} {class}", "a portrait of {token} {class}, oil painting", "{class}"]


# A run on the CPU can only be the demo model's (a real SD v1 model would take days there), so the CPU gets
# a short run instead of the GPU recipe: it shows its first preview within a minute or two on 2 cores
# (class images, caching and the step-0 preview), and is over in a few minutes. A layer between the preset
# and the user's own settings (load_config's device_defaults); the GPU keeps the presets as they are.
DEMO_CLASS_IMAGE_STEPS = 8  # the demo model draws noise anyway
CPU_SETTINGS: dict[str, Any] = {
    "steps": 100, "class_images": 8, "class_image_steps": DEMO_CLASS_IMAGE_STEPS, "save_every": 50,
    "preview_every": 25, "preview_steps": 8, "resolution": 64,
    "precision": "32", "cuda_graphs": False,  # bf16 autocast only slows a CPU down; CUDA graphs need CUDA
}


class ConfigError(ValueError):
    """A training setting that is unknown, of the wrong type or out of range; the message names it."""


class Precision(str, Enum):
    """Lightning precision: weights' dtype and autocast."""

    FP32 = "32"  # fp32 weights and math (the old repos)
    BF16_MIXED = "bf16-mixed"  # fp32 weights, bf16 autocast (RTX 30xx and newer)
    FP16_MIXED = "16-mixed"  # fp32 weights, fp16 autocast with loss scaling (older cards)
    BF16_TRUE = "bf16-true"  # bf16 weights and math: half the memory; updates stochastically rounded


class OptimizerName(str, Enum):
    ADAMW = "adamw"  # torch AdamW (fused on CUDA)
    ADAMW8BIT = "adamw8bit"  # bitsandbytes AdamW8bit: optimizer states in 8 bits (pip install bitsandbytes)


class LRSchedule(str, Enum):
    CONSTANT = "constant"  # learning_rate throughout
    WARMUP = "warmup"  # linear from 0 over warmup_steps, then constant
    COSINE = "cosine"  # linear warmup, then cosine decay to 0 at the last step


class Method(str, Enum):
    FULL = "full"  # the whole UNet trains (DreamBooth): model files of 2-4 GB
    LORA = "lora"  # only a LoRA's low-rank factors train, beside the frozen base: kohya LoRA files of a few MB


class SaveFormat(str, Enum):
    SAFETENSORS = "safetensors"
    CKPT = "ckpt"


class Device(str, Enum):
    CUDA = "cuda"
    CPU = "cpu"  # only sensible for the tiny demo model


@dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts: low to high, each bound included unless marked open."""

    low: float
    high: float
    low_open: bool = False  # e.g. a learning rate: above 0, not 0
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def described(self) -> Message:
        """'between 1 and 100000' (or 'above 0 and at most 0.01', ...), in the reader's language."""
        key = {(False, False): "between", (True, False): "above_up_to", (True, True): "strictly_between",
               (False, True): "from_below"}[self.low_open, self.high_open]
        return Message(f"cfg_range_{key}", low=number_text(self.low), high=number_text(self.high))


def number_text(value: float) -> str:
    """A bound as people write it: 100000, 0.01, 1e-06."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def ranged(default, low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A dataclass field whose accepted values are Range(low, high, ...); see field_range."""
    return field(default=default, metadata={"range": Range(low, high, low_open, high_open)})


@dataclass
class Concept:
    """One subject of a run with several (the `concepts` list); the single-subject fields make one too. What a
    user writes; run_subjects resolves it into the concepts.Subject a run trains (see sdtrainer/concepts.py)."""

    token: str = ""  # rare word that will stand for this subject, e.g. "effy"
    class_word: str = ""  # what it is, e.g. "dog"; its captions are "<token> <class_word>"
    images: str = ""  # folder of its photos (captions: .txt beside an image, `@` file-name template, or default)
    reg_images: Optional[str] = None  # folder of class images for its prior term; None: the run's reg_images
    #                                   (its <class_word>/ sub-folder, or its root for the run's class_word),
    #                                   else `class_images` generated
    class_images: Optional[int] = ranged(None, 0, 5000)  # class images to generate; None: the run's class_images
    repeats: int = ranged(1, 1, 100)  # its share of the picks: repeats / sum of all repeats (1 each: every
    #                                   subject equally often, whatever its photo count)


@dataclass
class TrainConfig:
    # --- what to learn
    preset: str = DEFAULT_PRESET  # the preset this config started from (sets the VRAM gate and the OOM advice)
    model: str = ""  # base SD v1 checkpoint (.safetensors or .ckpt)
    images: str = ""  # folder with 5-20 photos of the subject; sub-folders <token>/<class>/ add more subjects
    token: str = ""  # rare word that will stand for the subject, e.g. "joepenna"
    class_word: str = ""  # what the subject is, e.g. "person"; captions are "<token> <class_word>"
    concepts: list[Concept] = field(default_factory=list)  # more subjects trained in the same run (see Concept)
    reg_images: Optional[str] = None  # folder of regularization images of the bare class; None: generate them
    class_images: int = ranged(200, 0, 5000)  # class images to generate with the base model when reg_images is None
    class_images_dir: Optional[str] = None  # where generated class images go (None: <run>/class_images); share
    #                                         one folder per class word and base model to reuse them
    class_image_steps: int = 30  # sampler steps per generated class image
    # --- data
    resolution: int = 512  # training squares, pixels
    repeats: int = ranged(1, 1, 100)  # share of the picks of the subjects of `images` (see Concept.repeats);
    #                                   each photo of a subject is seen equally often
    flip_p: float = ranged(0.5, 0, 1)  # chance that a sample is mirrored left-right
    crop: Crop = Crop.CENTER  # how non-square photos become square: center or face
    # --- loss
    prior_loss_weight: float = ranged(1.0, 0, 10)  # lambda of the class (prior preservation) loss; 0 trains
    #                                                without class images
    noise_offset: float = ranged(0.0, 0, 1)  # std of a per-channel constant added to the noise (0.05-0.1 helps
    #                                          very dark or bright subjects)
    min_snr_gamma: float = ranged(0.0, 0, 20)  # min-SNR-gamma loss weighting (Hang et al. 2023), 5 is typical; 0 = off
    # --- what trains
    method: Method = Method.FULL  # full: the whole UNet; lora: a LoRA on the frozen UNet (sdtrainer/lora_training.py)
    lora_rank: int = ranged(16, 1, MAX_RANK)  # method lora: the rank of every adapted layer but the 3x3 convs
    lora_alpha: float = ranged(8.0, 0, MAX_RANK, low_open=True)  # every layer adds up @ down x lora_alpha/lora_rank
    lora_conv_rank: int = ranged(0, 0, MAX_RANK)  # rank of the ResBlocks' and samplers' 3x3 convs, whose other
    #                                               layers get lora_rank; 0: the transformers' layers only (kohya's
    #                                               default)
    lora_learning_rate: float = ranged(1e-4, 0, 1e-2, low_open=True)  # method lora's (learning_rate is full's)
    train_text_encoder: bool = False  # also fine-tune the CLIP text encoder (the old repos did; costs VRAM)
    text_encoder_lr: Optional[float] = ranged(None, 0, 1e-2, low_open=True)  # its learning rate; None = learning_rate
    ema: bool = False  # keep an exponential moving average of the UNet (saved as model_ema.*); +3.3 GiB VRAM
    ema_decay: float = ranged(0.999, 0, 1, low_open=True, high_open=True)  # per optimizer step
    # --- optimisation
    steps: int = ranged(2000, 1, 100_000)  # optimizer steps
    learning_rate: float = ranged(1e-6, 0, 1e-2, low_open=True)
    lr_schedule: LRSchedule = LRSchedule.CONSTANT
    warmup_steps: int = ranged(0, 0, 100_000)  # for warmup and cosine
    batch_size: int = ranged(1, 1, 16)  # instance images per step; as many class images join them in the same UNet call
    grad_accum: int = ranged(1, 1, 64)  # batches accumulated per optimizer step
    max_grad_norm: float = ranged(1.0, 0, 100)  # gradient clipping; 0 = off
    weight_decay: float = ranged(1e-2, 0, 1)  # AdamW decoupled weight decay
    optimizer: OptimizerName = OptimizerName.ADAMW
    precision: Precision = Precision.BF16_MIXED
    gradient_checkpointing: bool = False  # recompute UNet activations in backward: ~30% slower, far less memory
    compile: bool = False  # torch.compile the UNet's training step (fused kernels, fewer launches): faster steps
    #                        after a one-time warm-up at step 1 (a minute or two); CUDA only, previews stay eager
    cuda_graphs: bool = False  # replay the UNet's training forward and backward as two CUDA graphs (captured at
    #                            step 1, a second or two): removes the launch overhead that bounds a 512 px step.
    #                            CUDA only; ignored with train_text_encoder. With adamw8bit the UNet's weights
    #                            and gradients then live in one flat buffer each (~1.5 GiB more at the peak)
    cache_latents: bool = True  # VAE latents and text embeddings are computed once before step 1 (the VAE is
    #                             frozen, so this is always on; False is refused)
    # --- outputs
    save_every: int = ranged(500, 0, 100_000)  # write a model file (and the resumable state) every N steps;
    #                                            0 = only at the end
    save_format: SaveFormat = SaveFormat.SAFETENSORS
    save_half: bool = True  # model files in fp16 (2 GB); False writes fp32 (4 GB)
    keep_all_states: bool = False  # keep state/stepNNNNN.ckpt for every save (about 11 GB each for SD v1)
    preview_every: int = ranged(250, 0, 100_000)  # sample the preview prompts every N steps (and at step 0);
    #                                               0 = only at start and end
    preview_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PREVIEW_PROMPTS))  # {token}, {class}
    preview_seeds: list[int] = field(default_factory=lambda: [42])  # every prompt with every seed, same each time
    preview_steps: int = ranged(20, 1, MAX_STEPS)
    preview_sampler: SamplerName = SamplerName.EULER_A
    preview_cfg_scale: float = 7.0
    # --- run
    seed: int = ranged(42, 0, 2**31 - 1)  # data order, flips, noise and timesteps are functions of (seed, step)
    device: Device = Device.CUDA
    devices: Union[int, str] = 1  # GPUs to train on, or "all": above 1, one process per GPU (Lightning's ddp),
    #                               each with its own batch_size (the effective batch is batch_size x grad_accum x
    #                               devices); steps stay as set. On the CPU, the number of processes (tests)
    required_free_gib: Optional[float] = None  # VRAM gate; None: PRESET_VRAM_GIB[preset] (+ EMA_EXTRA_GIB with ema)
    min_total_gib: Optional[float] = None  # smallest card accepted; None: PRESET_MIN_TOTAL_GIB[preset]


def preset_names() -> list[str]:
    """The presets shipped in configs/train, for dropdowns and --preset."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_config(preset: str | None = None, yaml_path: str | Path | None = None, overrides: list[str] = (),
                values: dict[str, Any] | None = None, device_defaults: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- preset <- device_defaults <- user YAML <- values <- overrides, type-checked; ConfigError
    names a bad key. device_defaults: what the machine changes in every preset (`defaults_for(device)`).

    preset None takes the user YAML's `preset` entry (a saved run's config.yaml has one), else 24gb.
    """
    user = _read_yaml(Path(yaml_path), Message("cfg_what_file")) if yaml_path is not None else {}
    preset = preset or user.get("preset") or DEFAULT_PRESET
    layers = [(Message("cfg_source_preset", name=preset), {**_read_preset(preset), "preset": preset}),
              (Message("cfg_source_device"), device_defaults or {}),
              (Message("cfg_source_file", path=yaml_path), {k: v for k, v in user.items() if k != "preset"}),
              (Message("cfg_source_settings"), values or {}),
              (Message("cfg_source_overrides"), _parse_overrides(overrides))]
    cfg = OmegaConf.structured(TrainConfig)
    for source, data in layers:
        cfg = _merge(cfg, _enum_values_as_str(data), source)
    return OmegaConf.to_object(cfg)


def defaults_for(device: Device) -> dict[str, Any]:
    """The settings a device changes in every preset: CPU_SETTINGS on the CPU, none on a GPU."""
    return {**CPU_SETTINGS, "device": Device.CPU.value} if device is Device.CPU else {}


def _read_preset(name: str) -> dict:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(Message("cfg_unknown_preset", name=name, names=", ".join(preset_names())))
    return _read_yaml(path, Message("cfg_what_preset"))


def _read_yaml(path: Path, what: Message) -> dict:
    if not path.is_file():
        raise ConfigError(Message("cfg_file_missing", what=what, path=path))
    try:
        data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # noqa: BLE001 - yaml raises many error types for a broken file
        raise ConfigError(Message("cfg_file_yaml", what=what, path=path, reason=str(e).splitlines()[0])) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(Message("cfg_file_not_mapping", what=what, path=path, type=type(data).__name__))
    return data


def _parse_overrides(overrides: list[str]) -> dict:
    bad = [o for o in overrides if "=" not in o or not o.split("=", 1)[0].strip()]
    if bad:
        raise ConfigError(Message("cfg_override_form", bad=", ".join(bad)))
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        raise ConfigError(Message("cfg_override_unreadable", overrides=str(list(overrides)),
                                  reason=str(e).splitlines()[0])) from None


def _enum_values_as_str(data: dict) -> dict:
    """`precision: 32` is read by YAML as an int; enum fields want the string value."""
    hints = typing.get_type_hints(TrainConfig)
    return {k: str(v) if isinstance(hints.get(k), type) and issubclass(hints[k], Enum)
            and isinstance(v, (int, float)) and not isinstance(v, bool) else v for k, v in data.items()}


def _merge(cfg, data: dict, source: Message, schema: type = TrainConfig, prefix: str = ""):
    if schema is TrainConfig and "concepts" in data:
        _check_concept_entries(data["concepts"], source)
    try:
        return OmegaConf.merge(cfg, data)
    except ConfigKeyError as e:
        key = str(e.full_key or e.key)
        close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(schema)], n=1)
        hint = Message("cfg_did_you_mean", name=prefix + close[0]) if close else Message("cfg_see_settings")
        raise ConfigError(Message("cfg_unknown_setting", source=source, key=prefix + key, hint=hint)) from None
    except OmegaConfBaseException as e:
        key = str(getattr(e, "full_key", None) or getattr(e, "key", None) or "?")
        raise ConfigError(Message("cfg_bad_value", source=source, key=prefix + key, reason=str(e).splitlines()[0],
                                  choices=_choices(key, schema))) from None


def _check_concept_entries(concepts: Any, source: Message) -> None:
    """Each `concepts` entry merged on its own, so a bad key or value is named with its index
    (`concepts[1].repeats`): merged as a whole list, OmegaConf names the key alone."""
    example = "concepts=[{token: effy, class_word: dog, images: photos/effy}]"
    if not isinstance(concepts, list):
        raise ConfigError(Message("cfg_concepts_list", source=source, example=example, value=repr(concepts)))
    for n, entry in enumerate(concepts):
        if isinstance(entry, Concept):
            continue
        if not isinstance(entry, dict):
            raise ConfigError(Message("cfg_concept_entry", source=source, n=n, example=example,
                                      value=repr(entry)))
        _merge(OmegaConf.structured(Concept), entry, source, Concept, f"concepts[{n}].")


def _choices(key: str, schema: type = TrainConfig) -> Message | str:
    kind = typing.get_type_hints(schema).get(key)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return Message("cfg_choose_one", names=", ".join(m.value for m in kind))
    return "."


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain types only: enums as their values (what YAML files and checkpoint metadata hold)."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in dataclasses.asdict(cfg).items()}


def config_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(config_dict(cfg)))


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (load_config(yaml_path=path) reads it back unchanged)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# sdtrainer training config, resolved (preset + your settings)\n" + config_yaml(cfg),
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# Checks across fields, and what follows from the config
# ---------------------------------------------------------------------------------------------------

def check_config(cfg: TrainConfig) -> None:
    """Everything a run needs that types alone cannot say; ConfigError with what to set."""
    if not str(cfg.model).strip():
        raise ConfigError(Message("cfg_set", key="model", hint=Message("cfg_hint_model")))
    if not cfg.images.strip() and not cfg.concepts:
        raise ConfigError(Message("cfg_set", key="images", hint=Message("cfg_hint_images_or_concepts")))
    if cfg.images.strip() and not subfolders(cfg.images):  # <token>/ folders name their own subjects
        for key in ("token", "class_word"):
            if not str(getattr(cfg, key)).strip():
                raise ConfigError(Message("cfg_set", key=key, hint=Message(f"cfg_hint_{key}")))
    if len(str(cfg.token).split()) > 1:
        raise ConfigError(Message("cfg_token_one_word", token=cfg.token))
    for n, concept in enumerate(cfg.concepts):
        _check_concept(n, concept)
    _check_ranges(cfg)
    if not cfg.cache_latents:
        raise ConfigError(Message("cfg_cache_latents"))
    _check_devices(cfg)
    _check_method(cfg)
    if cfg.preset not in PRESET_VRAM_GIB and cfg.device is Device.CUDA and cfg.required_free_gib is None:
        raise ConfigError(Message("cfg_preset_vram", preset=cfg.preset))


def _check_devices(cfg: TrainConfig) -> None:
    """devices is a whole number from 1 or "all"; several processes need what DDP can run."""
    devices = cfg.devices
    if devices != ALL_DEVICES and (not isinstance(devices, int) or devices < 1):
        raise ConfigError(Message("cfg_devices_value", value=devices))
    if devices == 1:
        return
    if cfg.cuda_graphs and cfg.device is Device.CUDA:
        raise ConfigError(Message("cfg_devices_graphs", devices=devices))
    if devices == ALL_DEVICES and cfg.device is Device.CPU:
        raise ConfigError(Message("cfg_devices_all_cpu"))


def _check_method(cfg: TrainConfig) -> None:
    """What method lora does not combine with (sdtrainer/lora_training.py trains the UNet's LoRA, one process)."""
    if cfg.method is not Method.LORA:
        return
    refused = (("cfg_lora_text_encoder", cfg.train_text_encoder), ("cfg_lora_ema", cfg.ema),
               ("cfg_lora_precision", cfg.precision is Precision.BF16_TRUE),
               ("cfg_lora_format", cfg.save_format is not SaveFormat.SAFETENSORS),
               ("cfg_lora_devices", cfg.devices != 1))
    for key, wrong in refused:
        if wrong:
            raise ConfigError(Message(key))


def _check_concept(n: int, concept: Concept) -> None:
    for key in ("token", "class_word", "images"):
        if not getattr(concept, key).strip():
            raise ConfigError(Message("cfg_concept_set", n=n, key=key))
    if len(concept.token.split()) > 1:
        raise ConfigError(Message("cfg_concept_token", n=n, token=concept.token))
    _check_ranges(concept, f"concepts[{n}].")


def field_range(name: str, settings: type = TrainConfig) -> Range | None:
    """The Range declared on a field of TrainConfig (or Concept); None for a field without one."""
    return {f.name: f for f in dataclasses.fields(settings)}[name].metadata.get("range")


def _check_ranges(settings: TrainConfig | Concept, prefix: str = "") -> None:
    """ConfigError naming the first field whose value is outside its declared Range (None: unset, fine)."""
    for f in dataclasses.fields(settings):
        value, accepted = getattr(settings, f.name), f.metadata.get("range")
        if accepted is not None and value is not None and value not in accepted:
            raise ConfigError(Message("cfg_must_be", key=prefix + f.name, what=accepted.described(), value=value))
    if isinstance(settings, TrainConfig) and (settings.resolution < 64 or settings.resolution % 64):
        raise ConfigError(Message("cfg_must_be", key="resolution", what=Message("cfg_multiple_of_64"),
                                  value=settings.resolution))


def process_count(cfg: TrainConfig, gpus: int) -> int:
    """How many processes train: cfg.devices, with "all" as the `gpus` the machine has."""
    return gpus if cfg.devices == ALL_DEVICES else int(cfg.devices)


def uses_prior(cfg: TrainConfig) -> bool:
    """Whether class images take part: a prior weight above 0 and a reg folder or images to generate (for the
    images folder's subjects when there is one, for the concepts' own)."""
    sources = [(cfg.reg_images, cfg.class_images)] if cfg.images.strip() else []
    sources += [(c.reg_images or cfg.reg_images, cfg.class_images if c.class_images is None else c.class_images)
                for c in cfg.concepts]
    return cfg.prior_loss_weight > 0 and any(bool(reg) or count > 0 for reg, count in sources)


def preview_prompts(cfg: TrainConfig, subjects: list[tuple[str, str]] | None = None) -> list[str]:
    """The preview prompts filled in for each subject: a prompt with {token} once per (token, class) pair,
    a prompt with only {class} once per class word. `subjects` default: the run's token and class_word."""
    subjects = subjects or [(cfg.token, cfg.class_word)]
    classes = list(dict.fromkeys(c for _, c in subjects))
    prompts = []
    for p in cfg.preview_prompts:
        pairs = subjects if "{token}" in p else [("", c) for c in classes] if "{class}" in p else [("", "")]
        prompts += [p.replace("{token}", t).replace("{class}", c) for t, c in pairs]
    return list(dict.fromkeys(prompts))


def required_free_gib(cfg: TrainConfig) -> float:
    """Free VRAM the gate asks for: the explicit setting, else the method's figure: a LoRA's own, the whole UNet's
    the preset's (+ the EMA copy)."""
    if cfg.required_free_gib is not None:
        return cfg.required_free_gib
    if cfg.method is Method.LORA:
        return lora_vram_gib(cfg)
    return PRESET_VRAM_GIB[cfg.preset] + (EMA_EXTRA_GIB if cfg.ema else 0.0)


def lora_vram_gib(cfg: TrainConfig) -> float:
    """What training a LoRA needs free, from LORA_VRAM_PARTS_GIB: the same on a card of any size."""
    parts = LORA_VRAM_PARTS_GIB
    unet = parts["unet_fp32"] if cfg.precision is Precision.FP32 else parts["unet_half"]
    activations = parts["activations_checkpointed"] if cfg.gradient_checkpointing else parts["activations"]
    return round(unet + activations + parts["frozen"] + parts["context"] + parts["lora"], 1)


def min_total_gib(cfg: TrainConfig) -> float:
    """The smallest card accepted: the explicit setting, else the preset's (a LoRA: any card with the room)."""
    if cfg.min_total_gib is not None:
        return cfg.min_total_gib
    if cfg.method is Method.LORA:
        return required_free_gib(cfg)
    return PRESET_MIN_TOTAL_GIB.get(cfg.preset, required_free_gib(cfg))


def lower_preset(preset: str) -> str | None:
    """The preset of the same method needing the most VRAM below `preset`'s (None for the smallest or an unknown
    one): what to try after running out of memory, without changing what the run makes."""
    if preset not in PRESET_VRAM_GIB:
        return None
    below = {n: g for n, g in PRESET_VRAM_GIB.items()
             if g < PRESET_VRAM_GIB[preset] and preset_method(n) is preset_method(preset)}
    return max(below, key=below.get) if below else None


def preset_method(name: str) -> Method:
    return Method(_read_preset(name).get("method", Method.FULL.value))
