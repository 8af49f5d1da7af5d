import numpy as np
import pytest
import torch
from PIL import Image

from sdtrainer.sampling import (
    GenerationError,
    GenerationParams,
    LoraUse,
    check_params,
    generate,
    infotext,
    sample_latents,
    save_images,
    size_multiple,
)


def params(**kw) -> GenerationParams:
    base = dict(prompt="a photo of sks person", sampler="euler", steps=4, seed=7, width=64, height=64)
    return GenerationParams(**{**base, **kw})


def pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


@pytest.mark.parametrize("sampler", ["euler", "euler_a", "ddim", "dpmpp_2m"])
def test_same_seed_same_image_other_seed_other_image(tiny_model, sampler):
    a, = generate(tiny_model, params(sampler=sampler), "tiny")
    b, = generate(tiny_model, params(sampler=sampler), "tiny")
    c, = generate(tiny_model, params(sampler=sampler, seed=8), "tiny")
    assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(a) - pixels(c)).mean() > 1


@pytest.mark.parametrize("sampler, eta", [("euler", None), ("euler_a", None), ("ddim", 0.8)])
def test_batch_image_i_is_the_single_image_of_seed_plus_i(tiny_model, sampler, eta):
    batch = generate(tiny_model, params(batch_size=3, sampler=sampler, eta=eta), "tiny")
    single, = generate(tiny_model, params(seed=9, sampler=sampler, eta=eta), "tiny")
    assert [r.seed for r in batch] == [7, 8, 9]
    assert np.abs(pixels(batch[2]) - pixels(single)).max() <= 1


def test_euler_a_noise_continues_the_image_seed_stream(tiny_model):
    """The noise euler_a adds after step 0 is the seed's second draw: independent of the initial noise
    (its first draw), as AUTOMATIC1111 and diffusers draw it, not a copy of it."""
    seen = []
    sample_latents(tiny_model, check_params(params(sampler="euler_a", seed=11), tiny_model.cfg), seen.append)
    (x0, sigma0, denoised0), (x1, sigma1) = (seen[0]["x"], seen[0]["sigma"], seen[0]["denoised"]), \
        (seen[1]["x"], seen[1]["sigma"])
    sigma_up = (sigma1**2 * (sigma0**2 - sigma1**2) / sigma0**2).sqrt()  # Ho et al.'s ancestral split
    sigma_down = (sigma1**2 - sigma_up**2).sqrt()
    added = (x1 - x0 - (x0 - denoised0) / sigma0 * (sigma_down - sigma0)) / sigma_up
    stream = torch.Generator().manual_seed(11)
    first, second = (torch.randn(x0.shape[1:], generator=stream) for _ in range(2))
    torch.testing.assert_close(x0[0] / sigma0, first)
    torch.testing.assert_close(added[0], second, atol=1e-3, rtol=1e-3)
    assert abs(torch.corrcoef(torch.stack([added.flatten(), first.flatten()]))[0, 1]) < 0.2


def test_negative_prompt_and_cfg_change_the_image(tiny_model):
    plain, = generate(tiny_model, params(), "tiny")
    negative, = generate(tiny_model, params(negative_prompt="blurry"), "tiny")
    no_cfg, = generate(tiny_model, params(cfg_scale=1.0), "tiny")
    assert np.abs(pixels(plain) - pixels(negative)).mean() > 0.5
    assert np.abs(pixels(plain) - pixels(no_cfg)).mean() > 0.5


def test_non_square_size_and_random_seed(tiny_model):
    result, = generate(tiny_model, params(width=96, height=64, seed=-1), "tiny")
    assert result.image.size == (96, 64) and 0 <= result.seed < 2**32
    assert f"Seed: {result.seed}" in result.infotext


def test_infotext_is_automatic1111_format(tiny_model):
    result, = generate(tiny_model, params(negative_prompt="ugly", sampler="dpmpp_2m", cfg_scale=7.5), "my-model")
    assert result.infotext.splitlines() == [
        "a photo of sks person", "Negative prompt: ugly",
        "Steps: 4, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 7, Size: 64x64, Model: my-model"]


@pytest.mark.parametrize("sampler, field", [("ddim", "Eta DDIM: 0.3"), ("euler_a", "Eta: 0.3")])
def test_infotext_names_eta_as_automatic1111_reads_it(sampler, field):
    text = infotext(params(sampler=sampler, eta=0.3), 7, "m")
    assert text.splitlines()[-1].endswith(f"Model: m, {field}")


def test_infotext_records_a_lora_as_automatic1111_does():
    """`<lora:name:weight>` after the prompt; `Lora hashes` quoted, without ':' or ',' in the name."""
    text = infotext(params(negative_prompt="ugly", lora=LoraUse("joe:v2,x", 0.75, "0123456789ab")), 7, "m")
    assert text.splitlines() == [
        "a photo of sks person <lora:joe:v2,x:0.75>", "Negative prompt: ugly",
        'Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 7, Size: 64x64, Model: m, Lora hashes: "joev2x: 0123456789ab"']


@pytest.mark.parametrize("change,words", [
    (dict(width=70), "multiple of 16"), (dict(height=0), "height"), (dict(steps=0), "steps"),
    (dict(batch_size=99), "batch size"), (dict(cfg_scale=float("nan")), "CFG"), (dict(sampler="plms"), "euler_a"),
    (dict(eta=-1.0), "Eta must be between 0 and 1"), (dict(seed=10**23), "seed must be a whole number"),
    (dict(seed=-2), "seed must be a whole number"),
])
def test_bad_requests_are_refused_with_a_message(tiny_model, change, words):
    assert size_multiple(tiny_model.cfg) == 16
    with pytest.raises(GenerationError, match=words):
        generate(tiny_model, params(**change), "tiny")


def test_saved_pngs_carry_parameters_and_number_on(tiny_model, tmp_path):
    results = generate(tiny_model, params(batch_size=2), "tiny")
    first = save_images(results, tmp_path)
    second = save_images(results[:1], tmp_path)
    assert [p.name for p in first] == ["00000-7.png", "00001-8.png", "grid-00000-7.png"]
    assert [p.name for p in second] == ["00002-7.png"]
    with Image.open(first[1]) as img:
        assert img.info["parameters"] == results[1].infotext
    with Image.open(first[2]) as grid:
        assert grid.size == (128, 64)
