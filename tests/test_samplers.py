"""Tests for ldm/samplers.py on a problem with a known answer.

Data x0 ~ N(MU, S^2) per dimension has the analytic ideal denoiser
D(x, sigma) = MU + S^2 / (S^2 + sigma^2) * (x - MU), and the probability-flow ODE maps
x at sigma_a to MU + (x - MU) * sqrt((S^2 + sigma_b^2) / (S^2 + sigma_a^2)) at sigma_b.
S = 1 because LATENT_SCALE makes SD latents roughly unit variance.
"""
import importlib.util

import pytest
import torch
from torch import nn

from ldm.samplers import (
    SAMPLERS,
    CFGDenoiser,
    EpsDenoiser,
    SamplerName,
    ddim_sigmas,
    get_sampler,
    karras_sigmas,
    model_sigmas,
    sample,
    sample_ddim,
    sample_dpmpp_2m,
    sample_euler,
    sample_euler_ancestral,
    sigmas_for,
)
from ldm.schedule import LINEAR_END, LINEAR_START, alphas_cumprod, sigmas_from_alphas_cumprod

MU, S = 0.5, 1.0
SD_SIGMAS = sigmas_from_alphas_cumprod(alphas_cumprod())  # float64, ascending in t


class GaussianDenoiser:
    """The ideal denoiser for N(MU, S^2) data, with SD v1's sigma table; records what it was called with."""

    def __init__(self):
        self.sigmas = SD_SIGMAS
        self.sigma_min, self.sigma_max = SD_SIGMAS[0], SD_SIGMAS[-1]
        self.calls = []

    def __call__(self, x, sigma, **extra_args):
        self.calls.append({"x": x, "sigma": sigma, **extra_args})
        sigma = sigma.reshape(-1, *[1] * (x.ndim - 1))
        return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def ode_solution(x, sigma_from, sigma_to):
    return MU + (x - MU) * ((S**2 + sigma_to**2) / (S**2 + sigma_from**2)).sqrt()


def start(sigma, seed=0, n=20000, dim=4):
    """Samples of the exact noisy marginal N(MU, S^2 + sigma^2)."""
    g = torch.Generator().manual_seed(seed)
    return MU + (S**2 + sigma**2).sqrt() * torch.randn(n, dim, generator=g, dtype=torch.float64)


# Steps each sampler needs on this problem for 3%: Euler-type samplers are first order, and on the
# model schedule they undershoot the std by ~2.5% (euler, ddim) and ~5% (euler_a) at 50 steps.
STEPS_FOR_3_PERCENT = {"euler": 100, "euler_a": 200, "ddim": 100, "dpmpp_2m": 30}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_recovers_data_distribution(name):
    spec, denoiser = get_sampler(name), GaussianDenoiser()
    sigmas = sigmas_for(spec, denoiser, STEPS_FOR_3_PERCENT[name])
    x = spec.fn(denoiser, start(sigmas[0]), sigmas, generator=torch.Generator().manual_seed(1))
    assert abs(x.mean().item() - MU) < 0.01 * S
    assert abs(x.std().item() / S - 1) < 0.03


@pytest.mark.parametrize("fn, order", [(sample_euler, 1), (sample_ddim, 1), (sample_dpmpp_2m, 2)])
def test_deterministic_samplers_converge_at_their_order(fn, order):
    x = torch.linspace(-30, 30, 13, dtype=torch.float64)[:, None]
    errors = []
    for n in (64, 128):  # asymptotic regime: halving the step divides the error by 2**order
        sigmas = karras_sigmas(n, 0.03, 14.6)[:-1]  # stop at sigma_min to measure the ODE error alone
        errors.append((fn(GaussianDenoiser(), x, sigmas) - ode_solution(x, sigmas[0], sigmas[-1])).abs().max())
    assert errors[1] < 0.05
    assert 2**order * 0.85 < errors[0] / errors[1] < 2**order * 1.25


def test_ddim_is_euler_in_sigma_space_and_ancestral_with_eta():
    sigmas, x = karras_sigmas(20, 0.03, 14.6), start(torch.tensor(14.6), n=64)
    torch.testing.assert_close(sample_ddim(GaussianDenoiser(), x, sigmas), sample_euler(GaussianDenoiser(), x, sigmas))
    for eta in (0.5, 1.0):
        ddim = sample_ddim(GaussianDenoiser(), x, sigmas, generator=torch.Generator().manual_seed(3), eta=eta)
        anc = sample_euler_ancestral(GaussianDenoiser(), x, sigmas, generator=torch.Generator().manual_seed(3), eta=eta)
        torch.testing.assert_close(ddim, anc)
        assert not torch.allclose(ddim, sample_euler(GaussianDenoiser(), x, sigmas))


@pytest.mark.parametrize("fn, options", [(sample_euler_ancestral, {}), (sample_ddim, {"eta": 0.7})])
def test_stochastic_samplers_draw_only_from_the_generator(fn, options):
    sigmas, x = karras_sigmas(10, 0.03, 14.6), start(torch.tensor(14.6), n=8)

    def run(seed, global_seed):
        torch.manual_seed(global_seed)
        return fn(GaussianDenoiser(), x, sigmas, generator=torch.Generator().manual_seed(seed), **options)

    assert torch.equal(run(seed=1, global_seed=10), run(seed=1, global_seed=20))
    assert not torch.allclose(run(seed=1, global_seed=10), run(seed=2, global_seed=10))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sample_runs_the_sampler_on_its_schedule(name):
    denoiser, steps, seen = GaussianDenoiser(), 7, []
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sample(denoiser, noise, name, steps, {"cond": "c"}, callback=seen.append, generator=torch.Generator())
    spec = get_sampler(name)
    expected = sigmas_for(spec, denoiser, steps)
    assert len(seen) == len(denoiser.calls) == steps
    assert all(info.keys() >= {"i", "sigma", "denoised", "x"} for info in seen)
    assert [info["i"] for info in seen] == list(range(steps))
    torch.testing.assert_close(torch.stack([info["sigma"] for info in seen]), expected[:-1])
    torch.testing.assert_close(torch.stack([c["sigma"][0] for c in denoiser.calls]), expected[:-1])
    assert all(c["cond"] == "c" for c in denoiser.calls)
    start = (1 + expected[0] ** 2).sqrt() if spec.variance_preserving else expected[0]  # x_T of unit variance
    torch.testing.assert_close(denoiser.calls[0]["x"], noise * start)
    assert torch.equal(seen[-1]["denoised"], denoiser(seen[-1]["x"], seen[-1]["sigma"].expand(3)))


def test_sample_helper_turns_unit_noise_into_data():
    noise = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = sample(GaussianDenoiser(), noise, SamplerName.DPMPP_2M, 30, {})
    # starting from N(0, sigma_max^2) instead of N(MU, S^2 + sigma_max^2) shifts the mean by MU*S/sigma_max
    assert x.mean().item() == pytest.approx(MU * (1 - S / (S**2 + SD_SIGMAS[-1] ** 2).sqrt().item()), abs=0.01)
    assert x.std().item() == pytest.approx(S, rel=0.02)


def test_sample_rejects_bad_arguments():
    noise = torch.randn(1, 2)
    with pytest.raises(ValueError, match="steps"):
        sample(GaussianDenoiser(), noise, "euler", 0, {})
    with pytest.raises(ValueError, match="euler_a, ddim"):
        sample(GaussianDenoiser(), noise, "euler", 5, {}, eta=0.5)


def test_unknown_sampler_lists_choices():
    with pytest.raises(ValueError) as err:
        get_sampler("heun")
    assert "heun" in str(err.value)
    assert all(name in str(err.value) for name in ("euler", "euler_a", "ddim", "dpmpp_2m"))


def test_sampler_names_and_schedules():
    assert {n.value for n in SamplerName} == set(SAMPLERS)
    assert get_sampler(SamplerName.EULER_A) is SAMPLERS["euler_a"] is get_sampler("euler_a")
    assert {n: s.schedule for n, s in SAMPLERS.items()} == {
        "euler": "model", "euler_a": "model", "ddim": "ddim", "dpmpp_2m": "karras"}
    assert [n for n, s in SAMPLERS.items() if s.variance_preserving] == ["ddim"]


def test_karras_sigmas():
    sigmas = karras_sigmas(10, 0.03, 80.0)
    assert sigmas.shape == (11,)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-2].item() == pytest.approx(0.03)
    assert sigmas[-1] == 0 and (sigmas.diff() < 0).all()
    steps = (sigmas[:-1] ** (1 / 7)).diff()
    torch.testing.assert_close(steps, steps[:1].expand(9))  # evenly spaced in sigma^(1/rho)
    torch.testing.assert_close(karras_sigmas(4, 1.0, 4.0, rho=1.0),
                               torch.tensor([4.0, 3, 2, 1, 0], dtype=torch.float64))


def test_model_sigmas():
    denoiser = GaussianDenoiser()
    torch.testing.assert_close(model_sigmas(denoiser, 1000),
                               torch.cat([SD_SIGMAS.flip(0), torch.zeros(1, dtype=torch.float64)]))
    sigmas = model_sigmas(denoiser, 4)  # t = 999, 666, 333, 0
    torch.testing.assert_close(sigmas, torch.cat([SD_SIGMAS[[999, 666, 333, 0]], torch.zeros(1, dtype=torch.float64)]))

    sigmas = model_sigmas(denoiser, 7)
    assert sigmas[0] == pytest.approx(SD_SIGMAS[-1].item()) and sigmas[-2] == pytest.approx(SD_SIGMAS[0].item())


def test_ddim_sigmas_are_sd_v1_ddim_timesteps_then_the_final_alpha():
    denoiser = GaussianDenoiser()
    torch.testing.assert_close(ddim_sigmas(denoiser, 25), SD_SIGMAS[[*range(961, 0, -40), 0]])
    torch.testing.assert_close(ddim_sigmas(denoiser, 3), SD_SIGMAS[[667, 334, 1, 0]])  # 1000 // 3 apart
    torch.testing.assert_close(ddim_sigmas(denoiser, 999), SD_SIGMAS[[*range(999, 0, -1), 0]])
    with pytest.raises(ValueError, match="at most 999 steps"):
        ddim_sigmas(denoiser, 1000)


class SmoothEpsUNet(nn.Module):
    """A made-up eps prediction, smooth in x and t, for comparing samplers that call the UNet alike."""

    def forward(self, x, t, context=None):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
        return torch.tanh(x) * torch.cos(t / 300) + 0.1 * x * (t / 1000)


def compvis_ddim(unet, noise, steps, eta=0.0, generator=None):
    """SD v1 DDIM written independently in x_t space (Song et al. 2021, eq. 12; CompVis' DDIMSampler update)
    on diffusers' timesteps: arange(steps) * (1000 // steps) + 1 from the top, then abar_0 as the final alpha."""
    acp = alphas_cumprod()
    timesteps = [i * (1000 // steps) + 1 for i in reversed(range(steps))]
    x = noise
    for t, t_prev in zip(timesteps, [*timesteps[1:], 0]):
        a, a_prev = acp[t], acp[t_prev]
        eps = unet(x, torch.tensor([float(t)] * len(x)))
        pred_x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        std = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x = a_prev.sqrt() * pred_x0 + (1 - a_prev - std**2).sqrt() * eps
        if eta > 0:
            x = x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


def ddim_noise(seed=0):
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("steps, eta", [(25, 0.0), (7, 0.0), (10, 0.6)])
def test_ddim_matches_an_independent_sd_v1_ddim(steps, eta):
    noise, unet = ddim_noise(), SmoothEpsUNet()
    ours = sample(EpsDenoiser(unet, alphas_cumprod()), noise, "ddim", steps, {"cond": None},
                  generator=torch.Generator().manual_seed(5), eta=eta)
    reference = compvis_ddim(unet, noise, steps, eta, torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None, reason="diffusers is a test dependency")
@pytest.mark.parametrize("steps", [25, 7])
def test_ddim_matches_diffusers_ddim_scheduler(steps):
    from diffusers import DDIMScheduler  # SD v1's scheduler settings (its scheduler_config.json)
    scheduler = DDIMScheduler(beta_start=LINEAR_START, beta_end=LINEAR_END, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    scheduler.set_timesteps(steps)
    noise, unet = ddim_noise(1), SmoothEpsUNet()
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t.expand(len(x))), t, x, eta=0.0).prev_sample
    seen_t = []
    denoiser = EpsDenoiser(lambda x, t, cond: seen_t.append(t[0].item()) or unet(x, t), alphas_cumprod())
    ours = sample(denoiser, noise, "ddim", steps, {"cond": None})
    assert [round(t) for t in seen_t] == scheduler.timesteps.tolist()
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-5)


class ExactEpsUNet(nn.Module):
    """Returns the true noise of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for a known x0 at integer t."""

    def __init__(self, x0):
        super().__init__()
        self.x0, self.acp, self.seen_t = x0, alphas_cumprod(), None

    def forward(self, x, t, context):
        self.seen_t = t
        abar = self.acp[t.round().long()].reshape(-1, 1, 1, 1)
        return (x - abar.sqrt() * self.x0) / (1 - abar).sqrt()


@pytest.mark.parametrize("timesteps", [[999, 500, 10, 0], [321]])
def test_eps_denoiser_recovers_x0(timesteps):
    x0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    unet = ExactEpsUNet(x0)
    denoiser = EpsDenoiser(unet, alphas_cumprod())
    sigma = denoiser.sigmas[timesteps].double().squeeze(0)  # per-batch [4] or scalar
    x = x0 + eps * (sigma.reshape(-1, 1, 1, 1) if sigma.ndim else sigma)
    torch.testing.assert_close(denoiser(x, sigma, cond=None), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unet.seen_t, torch.tensor(timesteps, dtype=torch.float64).expand(4), atol=1e-4, rtol=0)


def test_eps_denoiser_sigma_table_and_interpolation():
    denoiser = EpsDenoiser(nn.Identity(), alphas_cumprod())
    assert denoiser.sigmas.dtype == torch.float32 and "sigmas" in dict(denoiser.named_buffers())
    assert denoiser.sigma_min.item() == pytest.approx(0.02916, rel=1e-3)
    assert denoiser.sigma_max.item() == pytest.approx(14.6146, rel=1e-4)
    t = torch.linspace(0, 999, 37, dtype=torch.float64)
    torch.testing.assert_close(denoiser.sigma_to_t(denoiser.t_to_sigma(t)), t)
    torch.testing.assert_close(denoiser.sigma_to_t(denoiser.sigmas[[0, 250, 999]]), torch.tensor([0.0, 250, 999]))
    halfway = denoiser.t_to_sigma(torch.tensor([250.5], dtype=torch.float64))  # interpolates log-sigma
    torch.testing.assert_close(halfway, (SD_SIGMAS[250] * SD_SIGMAS[251]).sqrt().reshape(1), rtol=1e-6, atol=0)


class AffineDenoiser(nn.Module):
    """D(x, sigma, cond) = x * sigma + cond, counting calls and batch sizes."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = []

    def forward(self, x, sigma, cond):
        self.batch_sizes.append(x.shape[0])
        return x * sigma[:, None] + cond


def test_cfg_denoiser_batches_cond_and_uncond():
    inner = AffineDenoiser()
    x, sigma = torch.randn(3, 5), torch.tensor([1.0, 2.0, 3.0])
    cond, uncond = torch.randn(3, 5), torch.randn(3, 5)
    out = CFGDenoiser(inner)(x, sigma, cond, uncond, cfg_scale=7.5)
    torch.testing.assert_close(out, x * sigma[:, None] + uncond + (cond - uncond) * 7.5)
    assert inner.batch_sizes == [6]


def test_cfg_scale_one_skips_uncond():
    inner = AffineDenoiser()
    x, cond = torch.randn(3, 5), torch.randn(3, 5)
    out = CFGDenoiser(inner)(x, torch.tensor([2.0, 2.0, 2.0]), cond, torch.full((3, 5), float("nan")), cfg_scale=1.0)
    torch.testing.assert_close(out, x * 2 + cond)
    assert inner.batch_sizes == [3]


def test_cfg_denoiser_exposes_inner_schedule():
    cfg = CFGDenoiser(EpsDenoiser(nn.Identity(), alphas_cumprod()))
    assert cfg.sigma_max == cfg.inner.sigma_max and cfg.sigma_min == cfg.inner.sigma_min
    assert model_sigmas(cfg, 5)[0].item() == pytest.approx(14.6146, rel=1e-4)
