"""flat_params.flatten_ and the stochastically rounded AdamW on a flat buffer (the 12gb and 8gb presets' CUDA
path, on the CPU): parameters become views of one buffer and gradients views of another; a step of the flat
tensor does what steps of the separate tensors do; bf16 steps taken chunk by chunk follow the fp32 ones."""
import pytest
import torch

from ldm.model import TINY, StableDiffusion
from sdtrainer import stochastic_rounding
from sdtrainer.flat_params import flatten_
from sdtrainer.stochastic_rounding import StochasticRoundingAdamW


@pytest.fixture(autouse=True)
def no_compile():
    with torch._dynamo.config.patch(disable=True):  # bitsandbytes' CPU kernels: no compile per tensor shape
        yield


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return StableDiffusion(TINY).unet


def backward_once(unet: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    x, context = torch.randn((2, 4, 8, 8), generator=g), torch.randn((2, 77, TINY.text.width), generator=g)
    unet(x, torch.tensor([10, 500]), context).square().mean().backward()


def weights(unet: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in unet.parameters()])


def test_parameters_become_views_of_one_buffer_with_their_values():
    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.named_parameters()}
    flat = flatten_(list(unet.parameters()))
    assert flat.numel() == sum(p.numel() for p in before.values())
    assert all(torch.equal(p, before[k]) for k, p in unet.named_parameters())
    with torch.no_grad():
        flat.add_(1.0)  # writing the buffer writes every parameter
    assert all(torch.equal(p, before[k] + 1.0) for k, p in unet.named_parameters())


def test_backward_accumulates_into_the_flat_gradient():
    unet, reference = tiny_unet(), tiny_unet()
    flat = flatten_(list(unet.parameters()))
    backward_once(unet)
    backward_once(reference)
    torch.testing.assert_close(flat.grad, torch.cat([p.grad.flatten() for p in reference.parameters()]))


def test_mixed_dtypes_are_refused():
    with pytest.raises(ValueError, match="one dtype and device"):
        flatten_([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))])


@pytest.mark.parametrize("bits", [8, 32])
def test_a_flat_step_equals_the_per_tensor_steps(bits):
    """8-bit states are quantized in blocks of 256 elements; in the flat buffer a block can straddle two
    tensors, so the 8-bit runs differ slightly (measured 0.3% of the move); 32-bit states agree exactly."""
    flat_unet, unet = tiny_unet(), tiny_unet()
    start = weights(unet)
    flat = flatten_(list(flat_unet.parameters()))
    optimizers = [StochasticRoundingAdamW([flat], lr=1e-3, weight_decay=1e-2, optim_bits=bits, seed=0),
                  StochasticRoundingAdamW(list(unet.parameters()), lr=1e-3, weight_decay=1e-2, optim_bits=bits, seed=0)]
    for model, optimizer in zip((flat_unet, unet), optimizers):
        for _ in range(3):
            backward_once(model)
            optimizer.step()
            optimizer.zero_grad(set_to_none=model is unet)  # the flat gradient keeps its views
    moved = (weights(unet) - start).abs().mean()
    assert moved > 1e-4  # the steps did something
    assert (weights(flat_unet) - weights(unet)).abs().mean() / moved < (0.02 if bits == 8 else 1e-6)


@pytest.mark.parametrize("bits", [8, 32])
def test_bf16_steps_in_chunks_follow_the_fp32_steps(bits, monkeypatch):
    """At the presets' learning rate (1e-6, far below a bf16 step of these weights) and with fixed gradients:
    the bf16 buffer stepped in chunks that do not line up with its tensors moves, in expectation, as the fp32
    one (projection of its change onto the fp32 change ~1; rounded to nearest it is ~0.01)."""
    monkeypatch.setattr(stochastic_rounding, "CHUNK", 40 * stochastic_rounding.BLOCK)
    fp32 = flatten_(list(tiny_unet().parameters()))
    bf16 = flatten_(list(tiny_unet().to(torch.bfloat16).parameters()))
    starts = [fp32.detach().clone(), bf16.detach().float()]
    optimizers = [StochasticRoundingAdamW([p], lr=1e-6, weight_decay=1e-2, optim_bits=bits, seed=0)
                  for p in (fp32, bf16)]
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        grad = torch.randn(fp32.shape, generator=g) * 0.1 + 0.05
        for p, optimizer in zip((fp32, bf16), optimizers):
            p.grad.copy_(grad)
            optimizer.step()
    want, got = fp32.detach() - starts[0], bf16.detach().float() - starts[1]
    assert abs(float(got @ want / (want @ want)) - 1) < 0.03
    assert 0.01 < (got != 0).float().mean() < 0.9  # whole bf16 steps, taken by some weights only
