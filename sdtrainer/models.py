"""Where models come from: the user's checkpoints, each run's outputs, and the built-in demo model.

    path = ensure_demo_model(Path("outputs"))      # writes the tiny random-weight model once
    cache = ModelCache()
    model, info = cache.get(path)                  # loads once, on the GPU in fp16 when there is one

`ModelCache.lock` is the one lock around GPU work: generation, class-image sampling and training
take it, so two of them never fight for VRAM.
"""
import threading
from pathlib import Path

import torch

from ldm.cuda_graph import CUDAGraphUNet
from ldm.model import TINY, StableDiffusion
from sdtrainer.checkpoint import CheckpointInfo, load_model, save_checkpoint

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
DEMO_MODEL_NAME = "sdtrainer-demo-tiny.safetensors"
DEMO_SEED = 0


def write_demo_model(path: Path, seed: int = DEMO_SEED) -> Path:
    """A random-weight model of the tiny configuration in the SD v1 key layout (a few MB, fp16)."""
    torch.manual_seed(seed)
    model = StableDiffusion(TINY)
    return save_checkpoint(model, path, dtype=torch.float16,
                           metadata={"sdtrainer_demo": "true", "base_model": "random init (demo)"})


def ensure_demo_model(outputs_dir: Path) -> Path:
    path = outputs_dir / "demo" / DEMO_MODEL_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_demo_model(path)
    return path


def list_checkpoints(*folders: Path) -> list[Path]:
    """Every checkpoint file under the folders (recursively), newest first within each folder."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files = [p for p in folder.rglob("*") if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file()]
            found += sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)
    return found


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """Half precision on the GPU (the VAE falls back to fp32 on overflow), fp32 on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


class ModelCache:
    """Keeps the last loaded model so repeated generations do not reload a 2-4 GB file."""

    def __init__(self, device: torch.device | None = None):
        self.device = device or default_device()
        self.lock = threading.RLock()
        self._key: tuple | None = None
        self._loaded: tuple[StableDiffusion, CheckpointInfo] | None = None
        self._graphed: CUDAGraphUNet | None = None

    def get(self, path: Path) -> tuple[StableDiffusion, CheckpointInfo]:
        path = Path(path)
        key = (path.resolve(), path.stat().st_mtime_ns if path.exists() else None)
        with self.lock:
            if self._key != key:
                self.clear()
                model, info = load_model(path, device=self.device, dtype=inference_dtype(self.device))
                self._key, self._loaded = key, (model.eval().requires_grad_(False), info)
                self._graphed = CUDAGraphUNet(model.unet) if self.device.type == "cuda" else None
            return self._loaded

    def sampling_unet(self) -> CUDAGraphUNet | None:
        """For `generate(..., unet=)`: the cached model's UNet replayed from CUDA graphs (one capture per
        image size, kept with the model: ~3x faster steps at 512 px); None on the CPU."""
        return self._graphed

    def clear(self) -> None:
        """Drop the cached model (training needs the VRAM)."""
        with self.lock:
            self._key = self._loaded = self._graphed = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
