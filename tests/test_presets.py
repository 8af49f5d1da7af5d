"""The speed settings cost no quality (issue 5): on the tiny model, a few steps of each preset follow the
fp32 loss trajectory, and a compiled UNet keeps pause, stop + resume and previews working."""
import threading

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from ldm.model import TINY, StableDiffusion
from sdtrainer import trainer as trainer_module
from sdtrainer.config import load_config
from sdtrainer.trainer import CachedData, DreamBoothModule, EventKind, RunControl, build_trainer, run_training

STEPS = 6


def have_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


class LossRecorder(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def losses_of(preset: str, **values) -> list[float]:
    """STEPS steps of `preset` on the CPU with the tiny model and fixed synthetic latents."""
    cfg = load_config(preset, values={"model": "-", "images": "-", "token": "sks", "class_word": "dog", "device": "cpu",
                                      "resolution": 64, "steps": STEPS, "learning_rate": 1e-3, **values})
    g = torch.Generator().manual_seed(0)
    data = CachedData(torch.randn((3, 2, 4, 8, 8), generator=g), torch.randn((4, 2, 4, 8, 8), generator=g),
                      torch.zeros(3, dtype=torch.long), torch.ones(4, dtype=torch.long),
                      torch.randn((2, 77, TINY.text.width), generator=g))
    torch.manual_seed(0)
    model = StableDiffusion(TINY)
    recorder = LossRecorder()
    pl.seed_everything(0, verbose=False)
    build_trainer(cfg, [recorder]).fit(DreamBoothModule(cfg, model, data))
    return recorder.losses


@pytest.fixture(scope="module")
def fp32_losses() -> list[float]:
    return losses_of("24gb", precision="32", optimizer="adamw", gradient_checkpointing=False)


@pytest.mark.parametrize("preset", ["24gb", "12gb", "8gb"])
def test_each_preset_follows_the_fp32_loss_trajectory(preset, fp32_losses):
    # Without bitsandbytes (not a requirement) the 8-bit presets run with torch AdamW: precision and
    # gradient checkpointing are then what is compared.
    extra = {} if have_bitsandbytes() else {"optimizer": "adamw"}
    losses = losses_of(preset, **extra)
    assert len(losses) == STEPS
    assert fp32_losses[-1] < 0.9 * fp32_losses[0]  # the trajectory moves: training does something here
    for step, (got, want) in enumerate(zip(losses, fp32_losses)):
        assert abs(got - want) <= 0.02 * want, (preset, step, losses, fp32_losses)  # measured: <= 0.3%


def aot_eager_compile(cfg, unet):
    """The trainer's torch.compile hook, on the CPU and without code generation (seconds, not minutes)."""
    return torch.compile(unet.forward, backend="aot_eager", dynamic=False) if cfg.compile else None


@pytest.mark.slow
def test_compiled_unet_keeps_pause_stop_resume_and_previews(demo_file, subject_photos, class_photos, tmp_path,
                                                           monkeypatch):
    base = {"model": str(demo_file), "images": str(subject_photos), "reg_images": str(class_photos),
            "token": "ohwx", "class_word": "thing", "resolution": 64, "device": "cpu", "precision": "32",
            "learning_rate": 1e-3, "steps": 4, "save_every": 2, "preview_every": 2, "preview_steps": 2,
            "preview_prompts": ["{token} {class}"], "class_images": 0}
    run_training(load_config("24gb", values=base), tmp_path / "eager", lambda e: None, RunControl())

    monkeypatch.setattr(trainer_module, "compiled_unet_forward", aot_eager_compile)
    cfg = load_config("24gb", values={**base, "compile": True})
    control, events = RunControl(), []

    def emit(event):
        events.append(event)
        if event.kind is EventKind.PROGRESS and event.step == 1:
            control.pause()
            threading.Timer(0.3, control.resume).start()
        if event.kind is EventKind.PROGRESS and event.step == 2:
            control.stop()

    first = run_training(cfg, tmp_path / "compiled", emit, control)
    assert first.step == 2 and first.stopped
    assert any("Paused after step 1" in e.data.get("message", "") for e in events)
    second = run_training(cfg, tmp_path / "compiled", events.append, RunControl(), resume=True)
    assert second.step == 4 and not second.stopped
    assert sorted(p.name[:9] for p in (tmp_path / "compiled" / "samples").glob("*.png")) == [
        "step00000", "step00002", "step00004"]
    eager = load_file(tmp_path / "eager" / "eager-final.safetensors")
    compiled = load_file(tmp_path / "compiled" / "compiled-final.safetensors")
    for key in eager:
        torch.testing.assert_close(compiled[key].float(), eager[key].float(), atol=2e-3, rtol=0)
