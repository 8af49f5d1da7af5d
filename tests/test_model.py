import json
from pathlib import Path

import pytest
import torch

from ldm.model import SD_V1, TINY, StableDiffusion
from ldm.schedule import LATENT_SCALE

# The SD v1 single-file key layout (key -> shape) that A1111, ComfyUI and diffusers read, kept with the tests
# so that a clone of the project alone passes its suite.
REFERENCE = Path(__file__).resolve().parent / "data" / "sd-v1-checkpoint-keys.json"


@pytest.fixture(scope="module")
def meta_v1() -> StableDiffusion:
    with torch.device("meta"):
        return StableDiffusion(SD_V1)


def test_full_v1_architecture_matches_reference_keys_and_shapes(meta_v1):
    reference = json.loads(REFERENCE.read_text())["keys"]
    ours = {k: list(v.shape) for k, v in meta_v1.state_dict().items()}
    assert sorted(set(reference) - set(ours)) == []
    assert sorted(set(ours) - set(reference)) == []
    assert {k: v for k, v in ours.items() if reference[k] != v} == {}


def test_full_v1_component_sizes(meta_v1):
    keys = meta_v1.state_dict().keys()
    count = lambda prefix: sum(k.startswith(prefix) for k in keys)
    assert count("model.diffusion_model.") == 686
    assert count("first_stage_model.") == 248
    assert count("cond_stage_model.transformer.text_model.") == 196
    assert sum(p.numel() for p in meta_v1.unet.parameters()) == 859_520_964


@pytest.mark.parametrize("height,width", [(64, 64), (64, 96)])
def test_tiny_unet_keeps_latent_shape(tiny_model, height, width):
    f = TINY.latent_factor
    x = torch.randn(2, 4, height // f, width // f)
    eps = tiny_model.unet(x, torch.tensor([1, 999]), torch.randn(2, 77, TINY.unet.context_dim))
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_unet_accepts_a_scalar_timestep(tiny_model):
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    with torch.no_grad():
        scalar = tiny_model.unet(x, torch.tensor(500.0), ctx)
        batched = tiny_model.unet(x, torch.tensor([500.0, 500.0]), ctx)
    torch.testing.assert_close(scalar, batched)


def test_unet_output_depends_on_text_context(tiny_model):
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        a = tiny_model.unet(x, torch.tensor([500]), torch.randn(1, 77, 32))
        b = tiny_model.unet(x, torch.tensor([500]), torch.randn(1, 77, 32))
    assert (a - b).abs().max() > 1e-4


def test_vae_round_trip_scales_latents_samples_the_posterior_and_clamps(tiny_model):
    images = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        mean = tiny_model.encode_images(images)
        sampled = tiny_model.encode_images(images, torch.Generator().manual_seed(0))
        decoded = tiny_model.decode_latents(mean)
        vae_mean, vae_std = tiny_model.vae.encode(images)
        raw = tiny_model.vae.decode(vae_mean)
    assert mean.shape == (2, 4, 8, 12)
    torch.testing.assert_close(mean, vae_mean * LATENT_SCALE)
    noise = torch.randn(vae_mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled, (vae_mean + vae_std * noise) * LATENT_SCALE)
    assert raw.abs().max() > 1  # the random tiny VAE overshoots, so the clamp below is exercised
    assert decoded.shape == images.shape
    torch.testing.assert_close(decoded, raw.clamp(-1, 1))


def test_text_encoder_maps_prompts_to_context(tiny_model):
    with torch.no_grad():
        ctx = tiny_model.text_encoder.encode(["a photo of sks person", "a dog"])
    assert ctx.shape == (2, 77, TINY.text.width)
    assert not torch.allclose(ctx[0], ctx[1])


def test_gradient_checkpointing_gives_same_output_and_gradients():
    torch.manual_seed(0)
    model = StableDiffusion(TINY)
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 77, 32)

    def run():
        model.zero_grad()
        out = model.unet(x, t, ctx)
        out.square().mean().backward()
        return out.detach(), model.unet.input_blocks[1][0].in_layers[2].weight.grad.clone()

    plain = run()
    model.unet.set_gradient_checkpointing(True)
    checkpointed = run()
    torch.testing.assert_close(plain[0], checkpointed[0])
    torch.testing.assert_close(plain[1], checkpointed[1])


def test_half_precision_decode_falls_back_to_float32_on_overflow():
    torch.manual_seed(0)
    model = StableDiffusion(TINY).half()

    def overflow_in_half(module, inputs, output):
        return output * float("inf") if output.dtype == torch.float16 else output

    model.vae.decoder.register_forward_hook(overflow_in_half)
    images = model.decode_latents(torch.randn(1, 4, 8, 8, dtype=torch.float16))
    assert torch.isfinite(images).all()
    assert next(model.vae.parameters()).dtype == torch.float16
