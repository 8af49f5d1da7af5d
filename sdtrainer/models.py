"""Where models come from: the user's checkpoints, each run's outputs, and the built-in demo model.

    path = ensure_demo_model(Path("outputs"))      # writes the tiny random-weight model once
    cache = ModelCache()
    model, info = cache.get(path)                  # loads once, on the GPU in fp16 when there is one
    styled, _ = cache.get(path, lora=Path("outputs/lora/joe.safetensors"), weight=0.8)  # the LoRA merged in

`ModelCache.lock` is the one lock around GPU work: generation, class-image sampling and training
take it, so two of them never fight for VRAM.
"""
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ldm.cuda_graph import CUDAGraphUNet
from ldm.model import TINY, StableDiffusion
from sdtrainer.checkpoint import CheckpointError, CheckpointInfo, load_model, read_metadata, save_checkpoint
from sdtrainer.lora import is_lora_file, read_lora, with_lora

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
DEMO_MODEL_NAME = "sdtrainer-demo-tiny.safetensors"
DEMO_SEED = 0
DEMO_MARK = "sdtrainer_demo"  # metadata key that the demo model carries ("true")


def write_demo_model(path: Path, seed: int = DEMO_SEED) -> Path:
    """A random-weight model of the tiny configuration in the SD v1 key layout (a few MB, fp16)."""
    torch.manual_seed(seed)
    model = StableDiffusion(TINY)
    save_checkpoint(model, path, dtype=torch.float16,
                    metadata={DEMO_MARK: "true", "base_model": "random init (demo)"})
    return path


def is_demo(metadata: dict[str, str], config_name: str | None = None) -> bool:
    """Whether a checkpoint is the demo model or a model trained from it: the demo's mark in its metadata, or
    the tiny architecture, named by the config saved in its metadata or detected from its weights (config_name)."""
    return (metadata.get(DEMO_MARK) == "true" or config_name == TINY.name
            or f'"name": "{TINY.name}"' in metadata.get("sdtrainer_config", ""))


def is_demo_file(path: Path) -> bool:
    """is_demo of a safetensors file's header (False for a .ckpt, which would have to be read whole)."""
    if Path(path).suffix.lower() != ".safetensors":
        return False
    try:
        return is_demo(read_metadata(path))
    except CheckpointError:
        return False


@contextmanager
def demo_threads(path: Path, device: str) -> Iterator[None]:
    """One CPU thread while the demo model works on the CPU, then as before. Its tensors are so small that
    threads mostly wait on each other: on 2 busy cores a training step of the demo model took 0.65 s with
    torch's 2 threads and 0.08 s with one."""
    if device != "cpu" or not is_demo_file(path):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ensure_demo_model(outputs_dir: Path) -> Path:
    path = outputs_dir / "demo" / DEMO_MODEL_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_demo_model(path)
    return path


def list_checkpoints(*folders: Path) -> list[Path]:
    """Every model file under the folders (recursively; LoRA files left out), newest first within each folder."""
    return [p for p in _files(folders, CHECKPOINT_SUFFIXES) if not is_lora_file(p)]


def list_loras(*folders: Path) -> list[Path]:
    """Every kohya LoRA .safetensors file under the folders (recursively), newest first within each folder."""
    return [p for p in _files(folders, (".safetensors",)) if is_lora_file(p)]


def _files(folders: tuple[Path, ...], suffixes: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files = [p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
            found += sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
    return found


def default_device() -> torch.device:
    """Where models load and the Training tab trains: the GPU when PyTorch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """Half precision on the GPU (the VAE falls back to fp32 on overflow), fp32 on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _stamp(path: Path) -> tuple:
    """Which version of a file: a file saved again is loaded again."""
    return path.resolve(), path.stat().st_mtime_ns if path.exists() else None


class ModelCache:
    """Keeps the last loaded model, and the last LoRA merged into it, so repeated generations do not reload a
    2-4 GB file. The cached model is never changed: a LoRA is merged into a model that shares its other tensors."""

    def __init__(self, device: torch.device | None = None):
        self.device = device or default_device()
        self.lock = threading.RLock()
        self._key: tuple | None = None
        self._loaded: tuple[StableDiffusion, CheckpointInfo] | None = None
        self._merged_key: tuple | None = None
        self._merged: StableDiffusion | None = None
        self._graphed: dict[int, CUDAGraphUNet] = {}  # by id of the UNet they replay

    def get(self, path: Path, lora: Path | None = None, weight: float = 1.0) -> tuple[StableDiffusion, CheckpointInfo]:
        """The model of `path`, with `lora` merged at `weight` when one is given."""
        key = _stamp(Path(path))
        with self.lock:
            if self._key != key:
                self.clear()
                model, info = load_model(path, device=self.device, dtype=inference_dtype(self.device))
                self._key, self._loaded = key, (model.eval().requires_grad_(False), info)
                self._graph(model)
            if lora is None:
                return self._loaded
            merged_key = (key, _stamp(Path(lora)), weight)
            if self._merged_key != merged_key:
                self._drop_merged()
                self._merged = with_lora(self._loaded[0], read_lora(lora), weight)
                self._merged_key = merged_key
                self._graph(self._merged)
            return self._merged, self._loaded[1]

    def sampling_unet(self, model: StableDiffusion) -> CUDAGraphUNet | None:
        """For `generate(..., unet=)`: the UNet of a model this cache gave, replayed from CUDA graphs (one capture
        per image size, kept with the model: ~3x faster steps at 512 px); None on the CPU."""
        return self._graphed.get(id(model.unet))

    def _graph(self, model: StableDiffusion) -> None:
        if self.device.type == "cuda":
            self._graphed[id(model.unet)] = CUDAGraphUNet(model.unet)

    def _drop_merged(self) -> None:
        if self._merged is not None:
            self._graphed.pop(id(self._merged.unet), None)
        self._merged_key = self._merged = None

    def clear(self) -> None:
        """Drop the cached models (training needs the VRAM)."""
        with self.lock:
            self._drop_merged()
            self._key = self._loaded = None
            self._graphed.clear()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
