"""Shared fixtures: the tiny model of the SD v1 family that every test uses instead of real weights,
small synthetic photo sets (a "subject" of vertical stripes, a "class" of horizontal ones), and a
GPU probe that says what a test needs whatever machine it runs on.

Tests that need CUDA carry ``@pytest.mark.gpu``: skipped without a GPU, run on the GPU machine.
With ``CI=true`` (as .ci/run sets it) any other skip is a failure: a missing test dependency
(chromium, diffusers) must not pass unseen.
"""
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ldm.model import TINY, StableDiffusion
from sdtrainer import preflight
from sdtrainer.checkpoint import save_checkpoint
from sdtrainer.lora import lora_layers
from sdtrainer.preflight import GIB, GpuInfo, GpuProcess
from sdtrainer.models import write_demo_model

IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (runs on the GPU machine)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not item.get_closest_marker("gpu") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome, report.longrepr = "failed", f"skipped in CI, where every test must run: {reason}"


class FakeProbe:
    """An RTX 3090 with `free` GiB free and (busy) one other program computing on it, or no CUDA at all."""

    def __init__(self, free: float = 5.0, cuda: bool = True, busy: bool = True):
        self.free, self.cuda, self.busy = free, cuda, busy

    def cuda_available(self):
        return self.cuda

    def cuda_build(self):
        return None

    def device_count(self):
        return 1

    def info(self, index):
        return GpuInfo("NVIDIA GeForce RTX 3090", 24 * GIB, int(self.free * GIB), "550.54")

    def processes(self, index):
        return [GpuProcess(4242, "python", 3000, "compute")] if self.busy else []


@pytest.fixture
def no_gpu(monkeypatch) -> FakeProbe:
    """The default GPU probe says there is no CUDA, as on a CPU-only PyTorch, on any machine."""
    probe = FakeProbe(cuda=False)
    monkeypatch.setattr(preflight, "NvmlProbe", lambda: probe)
    return probe


def pytest_configure(config):
    """Every model here is tiny: one CPU thread runs its small tensors several times faster than several, which
    mostly wait on each other (see sdtrainer.models.demo_threads)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model() -> StableDiffusion:
    torch.manual_seed(0)
    return StableDiffusion(TINY).eval()


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory) -> Path:
    """The demo model (tiny configuration, random weights) as a file, like a user's base checkpoint."""
    return write_demo_model(tmp_path_factory.mktemp("models") / "demo.safetensors")


@pytest.fixture(scope="session")
def base_and_tuned(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    """Two float32 files of the tiny model, as a base and a model "trained" from it on `ohwx person`: every layer
    a LoRA can adapt (3x3 convs and text encoder included) moved by a rank-2 change plus a little full-rank noise,
    everything else (norms, biases, conv_in...) untouched, so that a LoRA can hold the whole difference."""
    folder = tmp_path_factory.mktemp("lora-models")
    base = save_checkpoint(tiny_model, folder / "base.safetensors", dtype=None)
    g = torch.Generator().manual_seed(7)
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    for layer in lora_layers(tiny_model):
        w = sd[layer.key].flatten(1)
        change = 0.05 * torch.randn(w.shape[0], 2, generator=g) @ torch.randn(2, w.shape[1], generator=g)
        sd[layer.key] = (w + change + 0.002 * torch.randn(w.shape, generator=g)).reshape(sd[layer.key].shape)
    tuned = save_checkpoint(sd, folder / "tuned.safetensors", dtype=None,
                            metadata={"token": "ohwx", "class_word": "person", "concepts": '[["ohwx", "person"]]'})
    return base, tuned


def stripes(seed: int, vertical: bool, size: int = 64) -> Image.Image:
    """A sharp striped square with a little noise: one picture of a synthetic subject or class."""
    band = (np.arange(size) // 4) % 2 * 200.0 + 20
    pixels = np.broadcast_to(band[None, :] if vertical else band[:, None], (size, size))
    pixels = pixels[..., None] + np.random.default_rng(seed).normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_photos(folder: Path, count: int, vertical: bool, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        stripes(seed + i, vertical).save(folder / f"{folder.name}-{i}.png")
    return folder


@pytest.fixture(scope="session")
def subject_photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("subject") / "photos", 5, vertical=True)


@pytest.fixture(scope="session")
def class_photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("class") / "reg", 6, vertical=False, seed=100)



def scene(seed: int, size=(160, 120)) -> Image.Image:
    """A colourful, sharp, asymmetric picture: random ellipses on a random background."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        w, h = (int(v) for v in rng.integers(8, size[0] // 2, 2))
        draw.ellipse([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def free_port() -> int:
    """A TCP port nobody listens on now, for an app launched by a test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
