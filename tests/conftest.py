"""Shared fixtures: the tiny model of the SD v1 family that every test uses instead of real weights."""
import pytest
import torch

from ldm.model import TINY, StableDiffusion


@pytest.fixture(scope="session")
def tiny_model() -> StableDiffusion:
    torch.manual_seed(0)
    return StableDiffusion(TINY).eval()
