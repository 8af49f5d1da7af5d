"""Shared fixtures: the tiny model of the SD v1 family that every test uses instead of real weights,
and small synthetic photo sets (a "subject" of vertical stripes, a "class" of horizontal ones)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm.model import TINY, StableDiffusion
from sdtrainer.models import write_demo_model


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
