"""Method lora on the CPU with the tiny model: it learns at the lora-8gb preset's own settings, trains only the
LoRA's factors, leaves the base untouched, writes kohya files that reproduce the live model through with_lora,
resumes exactly, and starts from the app's Training tab; config checks and the gate's figure."""
import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from gradio_client import Client, handle_file
from safetensors.torch import load_file

from bench.train import heldout_error
from conftest import FakeProbe, free_port, write_photos
from ldm.model import TINY, StableDiffusion
from sdtrainer.checkpoint import load_model, read_metadata
from sdtrainer.config import (PRESET_VRAM_GIB, ConfigError, Device, Method, defaults_for, load_config,
                              lora_vram_gib, min_total_gib, required_free_gib)
from sdtrainer.lora import (ALPHA, DOWN, UP, Lora, LoraModule, lora_hash, lora_layers, model_hashes, read_lora,
                            with_lora)
from sdtrainer.lora_training import LoraNetwork, save_lora
from sdtrainer.session import gate_report
from sdtrainer.trainer import DreamBoothModule, EventKind, RunControl, build_trainer, model_metadata, run_training
from sdtrainer.ui.app import build_app
from sdtrainer.ui.training_tab import SETTINGS
from test_presets import synthetic_data

PRESET = "lora-8gb"
CPU_STEPS = 100  # the CPU's default run (config.CPU_SETTINGS)


def lora_config(model: Path | str, **values):
    """The lora-8gb preset as the app gives it on the CPU (CPU_SETTINGS: fp32, 64 px, 100 steps), and `values`."""
    base = {"model": str(model), "images": "-", "token": "ohwx", "class_word": "thing", "preview_steps": 3,
            "preview_sampler": "euler"}
    return load_config(PRESET, values={**base, **values}, device_defaults=defaults_for(Device.CPU))


def fitted(cfg, model: StableDiffusion) -> tuple[DreamBoothModule, pl.Trainer]:
    """cfg.steps steps of method lora on synthetic cached latents (no files): the module and its trainer."""
    pl.seed_everything(0, verbose=False)
    module = DreamBoothModule(cfg, model, synthetic_data())
    trainer = build_trainer(cfg, [])
    # bitsandbytes' CPU kernels are torch.compile'd: one compile per tensor shape costs more than the test
    with torch._dynamo.config.patch(disable=True):
        trainer.fit(module)
    return module, trainer


@pytest.fixture(scope="module")
def preset_run(demo_file):
    """The lora-8gb preset at its own settings (rank 16, alpha 8, lr 1e-4, 8-bit AdamW, gradient checkpointing)
    for the CPU's 100 steps, from the demo model: base weights before, subject's error before and after."""
    cfg = lora_config(demo_file, steps=CPU_STEPS)
    model, _ = load_model(demo_file)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    before = heldout_error(model, synthetic_data())
    module, trainer = fitted(cfg, model)
    return {"cfg": cfg, "model": model, "module": module, "trainer": trainer, "base": base, "before": before,
            "after": heldout_error(model, synthetic_data())}


def test_the_preset_trains_a_lora_at_kohyas_usual_settings():
    cfg = load_config(PRESET)
    assert (cfg.method, cfg.lora_rank, cfg.lora_alpha, cfg.lora_conv_rank) == (Method.LORA, 16, 8.0, 0)
    assert (cfg.lora_learning_rate, cfg.optimizer.value, cfg.precision.value) == (1e-4, "adamw8bit", "bf16-mixed")
    assert cfg.gradient_checkpointing and cfg.cuda_graphs and not cfg.train_text_encoder


def test_step_0_is_the_base_model(tiny_model):
    """kohya's initialisation: down random, up zero, so the hooked model gives the base's outputs exactly."""
    model = StableDiffusion(TINY)
    model.load_state_dict(tiny_model.state_dict())
    x, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 77, TINY.text.width)
    with torch.no_grad():
        expected = model.unet(x, t, cond)
        network = LoraNetwork.for_model(model, lora_config("-")).attach(model)
        assert torch.equal(model.unet(x, t, cond), expected)
    assert all(branch.lora_down.weight.abs().sum() > 0 and not branch.lora_up.weight.any()
               for branch in network.children())


def test_kohyas_default_layers_or_the_convs_too(tiny_model):
    attention = LoraNetwork.for_model(tiny_model, lora_config("-"))
    layers = lora_layers(tiny_model)
    assert [layer.name for layer in attention.layers] == [
        layer.name for layer in layers if layer.group.value == "attention"]
    with_convs = LoraNetwork.for_model(tiny_model, lora_config("-", lora_conv_rank=4))
    ranks = {layer.name: getattr(with_convs, layer.name).lora_down.weight.shape[0] for layer in with_convs.layers}
    assert len(ranks) == len([layer for layer in layers if layer.group.value != "text"]) > len(attention.layers)
    conv = next(layer for layer in with_convs.layers if layer.is_conv3x3)
    assert ranks[conv.name] == 4 and getattr(with_convs, conv.name).scale == 8.0 / 16  # alpha goes with the rank


def test_every_kind_of_branch_is_the_merged_weights_of_with_lora(tiny_model):
    """Linear, 1x1 and 3x3 convs (the downsamplers' of stride 2 too): hooked branches as trained give the outputs
    of the same factors merged into the weights by with_lora, fp32 rounding apart (measured 1.4e-6 on outputs of
    size ~1.4: atol 1e-5, while the LoRA moves them by more than 1e-2)."""
    model = StableDiffusion(TINY)
    model.load_state_dict(tiny_model.state_dict())
    network = LoraNetwork.for_model(model, lora_config("-", lora_conv_rank=4))
    for branch in network.children():
        torch.nn.init.normal_(branch.lora_up.weight, std=0.02)
    sd = network.state_dict()
    lora = Lora(Path("trained.safetensors"), {layer.name: LoraModule(
        sd[layer.name + DOWN], sd[layer.name + UP], float(sd[layer.name + ALPHA])) for layer in network.layers}, {})
    merged = with_lora(tiny_model, lora, 1.0)
    network.attach(model)
    x, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 77, TINY.text.width)
    with torch.no_grad():
        hooked, applied, base = model.unet(x, t, cond), merged.unet(x, t, cond), tiny_model.unet(x, t, cond)
    torch.testing.assert_close(hooked, applied, rtol=0, atol=1e-5)
    assert (hooked - base).abs().max() > 1e-2


def test_a_lora_learns_the_subject_at_the_presets_settings(preset_run):
    """Measured: the subject's denoising error (fixed noise and timesteps) drops 1.3% in 100 steps at lr 1e-4."""
    drop = (preset_run["before"] - preset_run["after"]) / preset_run["before"]
    assert drop > 0.005, drop


def test_only_the_lora_trains_and_the_base_is_untouched(preset_run):
    module, trainer = preset_run["module"], preset_run["trainer"]
    [group] = trainer.optimizers[0].param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in module.lora.parameters()}
    assert group["lr"] == 1e-4 and all(p.dtype == torch.float32 for p in group["params"])
    assert not any(p.requires_grad for p in preset_run["model"].parameters())
    after = preset_run["model"].state_dict()
    assert after.keys() == preset_run["base"].keys()
    assert all(torch.equal(after[k], v) for k, v in preset_run["base"].items())
    assert any(branch.lora_up.weight.any() for branch in module.lora.children())  # and the LoRA moved


def test_the_saved_lora_reproduces_the_live_model_through_with_lora(preset_run, demo_file, tmp_path):
    """base + LoRA file (fp32) at weight 1 == the trained model: (W + s up@down) x against W x + s up(down x),
    fp32 rounding apart. Outputs of size ~1.4: measured 1.0e-6 apart (6e-6 from the fp16 file the preset
    writes), while the LoRA moved them by 0.056; atol 1e-5."""
    cfg, model = preset_run["cfg"], preset_run["model"]
    path = tmp_path / "joe.safetensors"
    save_lora(preset_run["module"].lora, path, lora_config(demo_file, save_half=False), model_metadata(cfg, 100))
    merged = with_lora(load_model(demo_file)[0], read_lora(path), 1.0)
    base, _ = load_model(demo_file)
    g = torch.Generator().manual_seed(3)
    x, cond = torch.randn((2, 4, 8, 8), generator=g), torch.randn((2, 77, TINY.text.width), generator=g)
    t = torch.tensor([100, 700])
    with torch.no_grad():
        live, applied, before = model.unet(x, t, cond), merged.unet(x, t, cond), base.unet(x, t, cond)
    torch.testing.assert_close(applied, live, rtol=0, atol=1e-5)
    assert (live - before).abs().max() > 100 * 1e-5


def test_the_lora_file_says_what_kohyas_tools_read(preset_run, demo_file, tmp_path):
    path = tmp_path / "joe.safetensors"
    save_lora(preset_run["module"].lora, path, preset_run["cfg"], model_metadata(preset_run["cfg"], 100))
    meta, tensors = read_metadata(path), load_file(path)
    legacy, sha256 = model_hashes(demo_file)
    assert (meta["ss_network_dim"], meta["ss_network_alpha"], meta["ss_network_args"]) == ("16", "8.0", "{}")
    assert (meta["ss_sd_model_hash"], meta["ss_new_sd_model_hash"], meta["ss_sd_model_name"]) == (
        legacy, sha256, demo_file.name)
    assert (meta["token"], meta["class_word"], meta["modelspec.trigger_phrase"], meta["steps"]) == (
        "ohwx", "thing", "ohwx thing", "100")
    assert {t.dtype for t in tensors.values()} == {torch.float16}  # save_half, as the preset has it
    assert len(tensors) == 3 * len(preset_run["module"].lora.layers) and len(lora_hash(path)) == 12


def test_a_base_held_in_bf16_trains_fp32_factors_under_autocast(tiny_model):
    """On a GPU a LoRA's frozen UNet is held in the autocast dtype (load_base_model); the factors and their
    gradients stay fp32 and the base does not move. Here under the CPU's bf16 autocast."""
    model = StableDiffusion(TINY)
    model.load_state_dict(tiny_model.state_dict())
    model.unet.to(torch.bfloat16).requires_grad_(False)
    network = LoraNetwork.for_model(model, lora_config("-")).attach(model)
    for branch in network.children():
        torch.nn.init.normal_(branch.lora_up.weight, std=0.01)
    x, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 77, TINY.text.width)
    with torch.autocast("cpu", torch.bfloat16):
        model.unet(x.bfloat16(), t, cond.bfloat16()).float().square().mean().backward()
    grads = [p.grad for p in network.parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads) and any(g.any() for g in grads)
    assert all(p.grad is None for p in model.unet.parameters())


# ---------------------------------------------------------------------------------------------------
# Whole runs: prior preservation, two subjects, files, previews, resume
# ---------------------------------------------------------------------------------------------------

def train(cfg, run_dir: Path, resume=False, stop_at=None):
    control, events = RunControl(), []

    def emit(event):
        events.append(event)
        if event.kind is EventKind.PROGRESS and event.step == stop_at:
            control.stop()

    return run_training(cfg, run_dir, emit, control, resume=resume), events


def run_config(demo_file, subject_photos, class_photos, second: Path, **values):
    return lora_config(demo_file, images=str(subject_photos), reg_images=str(class_photos), class_images=0,
                       concepts=[{"token": "zwx", "class_word": "thing", "images": str(second)}], **values)


@pytest.fixture(scope="module")
def second_subject(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("second") / "zwx", 4, vertical=True, seed=50)


@pytest.mark.slow
def test_a_run_with_prior_and_two_subjects_writes_lora_files_and_previews(demo_file, subject_photos, class_photos,
                                                                          second_subject, tmp_path):
    """At lr 5e-3 (the loss of 100 steps at 1e-4 moves less than its noise): the loss falls, the step files and
    the final one are kohya LoRAs, the state holds the LoRA alone, previews show the live model with its LoRA."""
    cfg = run_config(demo_file, subject_photos, class_photos, second_subject, lora_learning_rate=5e-3, steps=40,
                     save_every=20, preview_every=20)
    with torch._dynamo.config.patch(disable=True):
        result, events = train(cfg, tmp_path / "joe")
    with open(tmp_path / "joe" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first, last = (sum(float(r["loss"]) for r in part) / len(part) for part in (rows[:10], rows[-10:]))
    assert last < 0.8 * first, (first, last)
    assert all(float(r["prior_loss"]) > 0 and float(r["lr"]) == 5e-3 for r in rows)
    assert result.model_file == tmp_path / "joe" / "joe-final.safetensors"
    step20 = tmp_path / "joe" / "checkpoints" / "joe-step00020.safetensors"
    attention = {layer.name for layer in lora_layers(load_model(demo_file)[0]) if layer.group.value == "attention"}
    for path in (step20, result.model_file):
        lora = read_lora(path)
        assert set(lora.modules) == attention and lora.metadata["concepts"] == '[["ohwx", "thing"], ["zwx", "thing"]]'
    state = torch.load(tmp_path / "joe" / "state" / "last.ckpt", weights_only=True)
    assert set(state["state_dict"]) == set(load_file(result.model_file))  # the LoRA alone, in kohya's layout
    [optimizer] = state["optimizer_states"]  # and its AdamW states: a down and an up per layer
    assert len(optimizer["state"]) == 2 * len(attention) == len(optimizer["param_groups"][0]["params"])
    previews = [e.data["preview"] for e in events if e.kind is EventKind.PREVIEW]
    assert sorted({p.step for p in previews}) == [0, 20, 40]
    first_image, last_image = (next(p.path for p in previews if p.step == s and p.prompt == "ohwx thing")
                               for s in (0, 40))
    assert first_image.read_bytes() != last_image.read_bytes()


@pytest.mark.slow
def test_stop_then_resume_equals_an_uninterrupted_lora_run(demo_file, subject_photos, class_photos, second_subject,
                                                          tmp_path):
    """4 steps + resume + 4 steps == 8 steps: the LoRA's factors (and so their AdamW states, data order and RNG)
    to the last bit."""
    cfg = run_config(demo_file, subject_photos, class_photos, second_subject, steps=8, lr_schedule="cosine",
                     warmup_steps=2, save_every=0, preview_every=0, save_half=False)
    with torch._dynamo.config.patch(disable=True):
        whole, _ = train(cfg, tmp_path / "whole")
        stopped, _ = train(cfg, tmp_path / "split", stop_at=4)
        assert (stopped.step, stopped.stopped) == (4, True)
        resumed, _ = train(cfg, tmp_path / "split", resume=True)
    assert (resumed.step, resumed.stopped) == (8, False)
    a, b = load_file(whole.model_file), load_file(resumed.model_file)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[k := next(k for k in a if k.endswith("lora_up.weight"))],
                           load_file(stopped.model_file)[k])  # the second half trained


# ---------------------------------------------------------------------------------------------------
# What method lora refuses, and the gate
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, words", [
    ({"train_text_encoder": True}, "set train_text_encoder to false"),
    ({"ema": True}, "set ema to false"),
    ({"precision": "bf16-true"}, "not bf16-true"),
    ({"save_format": "ckpt"}, "set save_format to safetensors"),
    ({"devices": 2}, "set devices to 1"),
    ({"lora_rank": 0}, "lora_rank must be between 1 and 1024"),
    ({"lora_alpha": 0}, "lora_alpha must be above 0"),
    ({"lora_learning_rate": 0.1}, "lora_learning_rate must be above 0 and at most 0.01"),
])
def test_what_method_lora_refuses_is_named(values, words, demo_file, subject_photos, tmp_path):
    from sdtrainer.config import check_config

    cfg = lora_config(demo_file, images=str(subject_photos), **values)
    with pytest.raises(ConfigError, match=words):
        check_config(cfg)


def test_the_gate_asks_for_a_loras_own_figure():
    lora = load_config(PRESET)
    assert required_free_gib(lora) == lora_vram_gib(lora) == PRESET_VRAM_GIB[PRESET] == 5.1
    on_24gb = load_config("24gb", values={"method": "lora", "cuda_graphs": False})
    assert required_free_gib(on_24gb) == min_total_gib(on_24gb) == 8.6  # no gradient checkpointing: 3.5 GiB more
    assert required_free_gib(load_config("24gb")) == 20.0  # method full keeps the preset's
    assert gate_report(on_24gb, FakeProbe(free=10.0, busy=False)).ok
    assert not gate_report(load_config("24gb"), FakeProbe(free=10.0, busy=False)).ok


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_training_tab_checks_the_gpu_for_and_starts_a_lora_run_whose_files_the_test_tab_applies(
        tmp_path, subject_photos, monkeypatch):
    blocks = build_app(tmp_path / "models", tmp_path / "outputs", lang=None)
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        client = Client(blocks.local_url, verbose=False)
        blocks.state.sessions.probe = FakeProbe(free=10.0, busy=False)
        with monkeypatch.context() as patched:
            patched.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with a GPU
            gpu_form = {"preset": "24gb", "precision": "bf16-mixed", "api_name": "/training_check_gpu"}
            lora = client.predict(method="lora", **gpu_form)
            full = client.predict(method="full", **gpu_form)
        blocks.state.sessions.probe = None
        assert "✔" in lora and "8.6 GiB" in lora and "✖" in full and "20 GiB" in full
        demo = blocks.state.outputs_dir / "demo" / "sdtrainer-demo-tiny.safetensors"
        client.predict(new_name="joe", api_name="/dataset_create")
        client.predict(name="joe", token="ohwx", class_word="thing", resolution=64, api_name="/dataset_save_settings")
        client.predict(name="joe", files=[handle_file(p) for p in sorted(subject_photos.iterdir())],
                       api_name="/dataset_add_photos")
        client.predict(name="joe", crop="center", api_name="/dataset_prepare")
        values = client.predict(preset=PRESET, api_name="/training_preset_values")
        settings = {**dict(zip([s.name for s in SETTINGS], values)), "steps": 4, "save_every": 2,
                    "preview_every": 0, "class_images": 0, "preview_steps": 3, "lora_rank": 4}
        assert settings["method"] == "lora" and settings["lora_learning_rate"] == 1e-4
        message, run, *_ = client.predict(project="joe", model=str(demo), preset=PRESET, run_name="joe-lora",
                                          resume_run=False, api_name="/training_start", **settings)
        assert "started" in message
        assert blocks.state.sessions.current.wait(120)
        text, *_ = client.predict(api_name="/training_state")
        assert "Finished" in text, text
        final = blocks.state.runs_dir / "joe-lora" / "joe-lora-final.safetensors"
        assert read_lora(final).modules["lora_unet_mid_block_attentions_0_proj_in"].rank == 4
        loras = [path for _, path in blocks.state.lora_choices()]
        assert str(final) in loras and str(final) not in [path for _, path in blocks.state.model_choices()]
        assert client.predict(lora=str(final), api_name="/test_lora_changed") == ("ohwx", "thing")
        _, info, _ = client.predict(model=str(demo), prompt="a photo of ohwx thing", batch_size=1, token="",
                                    class_word="", lora=str(final), lora_weight=1.0, negative_prompt="",
                                    sampler="euler", steps=2, cfg_scale=7, seed=5, width=64, height=64,
                                    api_name="/test_generate")
        assert "<lora:joe-lora-final:1" in info.splitlines()[0] and f"joe-lora-final: {lora_hash(final)}" in info
    finally:
        blocks.close()
