"""The DreamBooth trainer on the CPU with the tiny model: files, previews, exact resume, stop, bad input."""
import csv
import dataclasses
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ldm.tokenizer import get_tokenizer
from sdtrainer import meter
from sdtrainer.checkpoint import load_model, read_metadata, read_state_dict
from sdtrainer.config import ConfigError, LRSchedule, load_config
from sdtrainer.dataset import instance_set
from sdtrainer.images import DatasetError, to_tensor
from sdtrainer.messages import say_in
from ldm.schedule import alphas_cumprod
from sdtrainer.trainer import (BatchPlan, EventKind, OptimizerUnavailable, RunControl, batch_for, encode_images,
                               lr_factor, min_snr_weights, run_training)


def config(demo_file, photos, reg=None, **values):
    base = {"model": str(demo_file), "images": str(photos), "reg_images": str(reg) if reg else None,
            "token": "ohwx", "class_word": "thing", "resolution": 64, "device": "cpu", "precision": "32",
            "learning_rate": 1e-3, "preview_steps": 3, "preview_sampler": "euler", "class_images": 0}
    return load_config("24gb", values={**base, **values})


class Recorder:
    """Collects the trainer's events; `stop_at` / `pause_at` act on the control like a user would."""

    def __init__(self, control: RunControl | None = None, stop_at: int | None = None):
        self.events, self.control, self.stop_at = [], control, stop_at

    def __call__(self, event) -> None:
        self.events.append(event)
        if event.kind is EventKind.PROGRESS and event.step == self.stop_at:
            self.control.stop()

    def of(self, kind: EventKind) -> list:
        return [e for e in self.events if e.kind is kind]


def train(cfg, run_dir: Path, resume=False, stop_at=None):
    control = RunControl()
    events = Recorder(control, stop_at)
    result = run_training(cfg, run_dir, events, control, resume=resume)
    return result, events


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run(demo_file, subject_photos, class_photos, tmp_path_factory):
    """40 steps with prior preservation, a model file every 20 steps, previews every 20."""
    cfg = config(demo_file, subject_photos, class_photos, steps=40, save_every=20, preview_every=20)
    run_dir = tmp_path_factory.mktemp("runs") / "joe"
    result, events = train(cfg, run_dir)
    return cfg, run_dir, result, events


def test_loss_falls(run):
    _, run_dir, _, _ = run
    rows = metrics(run_dir)
    assert [int(r["step"]) for r in rows] == list(range(1, 41))
    first, last = (sum(float(r["loss"]) for r in part) / len(part) for part in (rows[:8], rows[-8:]))
    assert last < 0.6 * first, (first, last)
    assert all(float(r["prior_loss"]) > 0 for r in rows)  # the class images took part in every step
    assert all(float(r["it_per_s"]) > 0 and float(r["lr"]) == 1e-3 for r in rows)


def test_files_of_a_run(run):
    cfg, run_dir, result, events = run
    assert result.step == 40 and not result.stopped
    assert result.model_file == run_dir / "joe-final.safetensors"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["joe-step00020.safetensors"]
    assert sorted(p.name for p in (run_dir / "state").iterdir()) == ["last.ckpt"]  # latest state only
    assert load_config(yaml_path=run_dir / "config.yaml") == cfg
    saved = [(e.step, e.data["kind"]) for e in events.of(EventKind.CHECKPOINT)]
    assert saved == [(20, "model"), (20, "state"), (40, "model"), (40, "state")]


def test_model_files_are_small_fp16_sd_checkpoints_that_load(run, demo_file):
    _, run_dir, result, _ = run
    weights = read_state_dict(result.model_file)
    assert {v.dtype for k, v in weights.items() if k.startswith("model.diffusion_model.")} == {torch.float16}
    assert not any(k.startswith(("optimizer", "model_ema")) for k in weights)
    assert result.model_file.stat().st_size < 1.2 * demo_file.stat().st_size  # weights only, like the base
    meta = read_metadata(result.model_file)
    assert (meta["token"], meta["class_word"], meta["steps"], meta["base_model"]) == ("ohwx", "thing", "40",
                                                                                      "demo.safetensors")
    trained, _ = load_model(result.model_file)
    base, _ = load_model(demo_file)
    changed = lambda key: not torch.equal(trained.state_dict()[key], base.state_dict()[key])  # noqa: E731
    assert changed("model.diffusion_model.out.2.weight")
    assert not changed("first_stage_model.decoder.conv_out.weight")  # the VAE stays frozen
    assert not changed("cond_stage_model.transformer.text_model.final_layer_norm.weight")  # and so the text encoder


def test_previews_at_start_every_m_steps_and_end(run):
    cfg, run_dir, _, events = run
    previews = [e.data["preview"] for e in events.of(EventKind.PREVIEW)]
    assert [(p.step, p.prompt) for p in previews] == [
        (step, prompt) for step in (0, 20, 40)
        for prompt in ("ohwx thing", "a portrait of ohwx thing, oil painting", "thing")]
    for p in previews:
        with Image.open(p.path) as image:
            assert image.size == (64, 64)
            assert f"Seed: {p.seed}" in image.info["parameters"] and p.prompt in image.info["parameters"]
    before, after = Image.open(previews[0].path), Image.open(previews[-3].path)
    assert before.tobytes() != after.tobytes()  # training changed what the same seed gives


def test_the_step0_preview_is_the_base_models_picture(run, demo_file, subject_photos, class_photos, tmp_path):
    """Same seed, same settings -> the same before-picture: previews compare across steps and runs."""
    _, run_dir, _, _ = run
    cfg = config(demo_file, subject_photos, class_photos, steps=1, preview_every=0, save_every=0)
    train(cfg, tmp_path / "again")
    first = sorted((run_dir / "samples").glob("step00000-*.png"))
    again = sorted((tmp_path / "again" / "samples").glob("step00000-*.png"))
    assert [Image.open(a).tobytes() for a in first] == [Image.open(b).tobytes() for b in again]


def unet_weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in read_state_dict(path).items() if k.startswith(("model.diffusion_model.", "model_ema."))}


def test_stop_then_resume_equals_an_uninterrupted_run(demo_file, subject_photos, class_photos, tmp_path):
    """N steps + resume + N steps == 2N steps: weights, EMA, LR schedule, accumulation and data order."""
    cfg = config(demo_file, subject_photos, class_photos, steps=8, grad_accum=2, lr_schedule="cosine",
                 warmup_steps=2, ema=True, noise_offset=0.05, save_every=0, preview_every=0, save_half=False)
    whole, _ = train(cfg, tmp_path / "whole")
    stopped, events = train(cfg, tmp_path / "split", stop_at=4)
    assert (stopped.step, stopped.stopped) == (4, True)
    assert stopped.model_file == tmp_path / "split" / "checkpoints" / "split-step00004.safetensors"
    assert any("Stopping after step 4" in e.data["message"] for e in events.of(EventKind.LOG))
    resumed, _ = train(cfg, tmp_path / "split", resume=True)
    assert (resumed.step, resumed.stopped) == (8, False)
    a, b = unet_weights(whole.model_file), unet_weights(resumed.model_file)
    assert a.keys() == b.keys() and any(k.startswith("model_ema.") for k in a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    assert [r["step"] for r in metrics(tmp_path / "split")] == [str(s) for s in range(1, 9)]
    whole_lr = [r["lr"] for r in metrics(tmp_path / "whole")]
    assert [r["lr"] for r in metrics(tmp_path / "split")] == whole_lr and len(set(whole_lr)) > 3


def test_the_state_file_prunes_to_the_ema_weights(demo_file, subject_photos, tmp_path):
    from sdtrainer.cli import main

    cfg = config(demo_file, subject_photos, steps=3, ema=True, save_every=0, preview_every=0, save_half=False,
                 prior_loss_weight=0.0)
    result, _ = train(cfg, tmp_path / "ema")
    state = tmp_path / "ema" / "state" / "last.ckpt"
    assert main(["prune", str(state), str(tmp_path / "emaonly.safetensors"), "--ema", "--no-half"]) == 0
    pruned, final = read_state_dict(tmp_path / "emaonly.safetensors"), read_state_dict(result.model_file)
    key = "model.diffusion_model.out.2.weight"
    torch.testing.assert_close(pruned[key], final["model_ema.diffusion_modelout2weight"])
    assert not torch.equal(pruned[key], final[key])


def test_run_folders_are_never_overwritten(run, demo_file, subject_photos, tmp_path):
    cfg, run_dir, _, _ = run
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, run_dir)
    with pytest.raises(ConfigError, match="Nothing to resume"):
        train(cfg, tmp_path / "new", resume=True)


def test_bad_images_are_reported_and_skipped_never_a_crash(demo_file, subject_photos, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(subject_photos, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    Image.new("RGB", (20, 20), "red").save(photos / "tiny.png")
    result, events = train(config(demo_file, photos, steps=2, save_every=0, preview_every=0,
                                  prior_loss_weight=0.0), tmp_path / "run")
    assert result.step == 2
    log = [e.data["message"] for e in events.of(EventKind.LOG)]
    assert "broken.jpg" in "\n".join(log) and "tiny.png" in "\n".join(log)
    french = "\n".join(say_in(line, "fr") for line in log)
    assert "Erreurs (ces images sont écartées) :\n  - broken.jpg : " in french and "tiny.png : " in french


def test_a_folder_without_usable_photos_fails_before_anything_is_loaded(demo_file, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "notes.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match="notes.jpg"):
        train(config(demo_file, photos, steps=2), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_class_images_are_generated_when_there_is_no_folder(demo_file, subject_photos, tmp_path):
    cfg = config(demo_file, subject_photos, steps=2, class_images=3, class_image_steps=2, save_every=0,
                 preview_every=0)
    train(cfg, tmp_path / "run")
    made = sorted(p.name for p in (tmp_path / "run" / "class_images").iterdir())
    assert made == ["class-00000.png", "class-00001.png", "class-00002.png"]
    assert all(float(r["prior_loss"]) > 0 for r in metrics(tmp_path / "run"))


@pytest.mark.parametrize("setting", [{"optimizer": "adamw8bit"}, {"precision": "bf16-true"}])
def test_without_bitsandbytes_the_run_says_how_to_install_it(setting, demo_file, subject_photos, tmp_path,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # a requirement, so absent only on a broken install
    with pytest.raises(OptimizerUnavailable, match="pip install bitsandbytes"):
        train(config(demo_file, subject_photos, **setting), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_batches_are_a_pure_function_of_seed_and_index():
    plan = BatchPlan(instance_counts=(5,), class_counts=(7,), repeats=(3,), batch_size=2, flip_p=0.5,
                     latent_shape=(4, 8, 8), noise_offset=0.1, seed=3)
    a, b = batch_for(plan, 11), batch_for(plan, 11)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["noise"], batch_for(plan, 12)["noise"])
    # over 15 picks (3 shuffle epochs of 5 images) every instance image comes exactly 3 times
    picks = torch.cat([batch_for(plan, k)["instance"] for k in range(15)])
    assert torch.bincount(picks[:15], minlength=5).tolist() == [3] * 5


def test_flips_are_drawn_per_micro_batch_and_reproduce():
    plan = BatchPlan(instance_counts=(5,), class_counts=(7,), repeats=(1,), batch_size=4, flip_p=0.5,
                     latent_shape=(4, 8, 8), noise_offset=0.0, seed=3)
    flips = torch.cat([batch_for(plan, k)["flip"] for k in range(50)])  # 400 rows: instance and class
    assert torch.equal(flips, torch.cat([batch_for(plan, k)["flip"] for k in range(50)]))
    assert 0.4 < flips.float().mean() < 0.6
    never = dataclasses.replace(plan, flip_p=0.0)
    assert not any(batch_for(never, k)["flip"].any() for k in range(50))


def test_each_image_is_cached_plain_and_mirrored(tiny_model, subject_photos):
    """A drawn flip picks the mirrored latent: the encoding of the mirrored square, not of the square."""
    images = instance_set(subject_photos, "ohwx", "thing", 64)
    latents = encode_images(tiny_model, images)
    assert latents.shape[:2] == (len(images.paths), 2)
    pixels = to_tensor(images.square(0))[None]
    with torch.no_grad():
        plain, mirrored = tiny_model.encode_images(pixels)[0], tiny_model.encode_images(pixels.flip(-1))[0]
    torch.testing.assert_close(latents[0, 0], plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(latents[0, 1], mirrored, atol=1e-5, rtol=1e-5)
    assert (plain - mirrored).abs().max() > 0.1


def test_the_events_the_run_folder_the_data_plan_and_the_meter_import_without_lightning():
    """What the session, the UI and tools read of a run is plain Python; Lightning comes with run_training."""
    code = ("import sys\n"
            "from sdtrainer.trainer import BatchPlan, CachedData, Event, EventKind, RunPaths, TrainResult, batch_for\n"
            "from sdtrainer.meter import MeterRow, measure_run, read_rows, recommend, score\n"
            "print(sorted(m for m in sys.modules if 'lightning' in m))\n"
            "from sdtrainer.trainer import DreamBoothModule, run_training\n"
            "print(run_training.__module__, 'pytorch_lightning' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert shown[:2] == ["[]", "sdtrainer.trainer.run True"]



def test_each_lightning_side_name_is_found_where_the_package_says():
    import sdtrainer.trainer as package

    for name, section in package.LIGHTNING_SIDE.items():
        assert getattr(package, name) is getattr(importlib.import_module(f"sdtrainer.trainer.{section}"), name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        package.nothing_here  # noqa: B018


def test_learning_rate_schedules():
    assert [lr_factor(LRSchedule.WARMUP, 4, 10, s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    cosine = [lr_factor(LRSchedule.COSINE, 2, 10, s) for s in range(10)]
    assert cosine[:2] == [0.5, 1.0] and cosine[-1] < 0.05 and cosine == sorted(cosine[:2]) + sorted(cosine[2:])[::-1]
    assert lr_factor(LRSchedule.CONSTANT, 0, 10, 7) == 1.0


def test_min_snr_weights_cap_the_easy_timesteps():
    acp = alphas_cumprod().float()[torch.tensor([0, 500, 999])]
    w = min_snr_weights(acp, 5.0)
    assert w[0] < 0.01 and w[2] == 1.0  # low noise (SNR huge) down-weighted; high noise untouched


def latents_of(model, folder: Path) -> torch.Tensor:
    from sdtrainer.images import list_images, load_image

    return model.encode_images(torch.stack([to_tensor(load_image(p, 64)) for p in list_images(folder)]))


@torch.no_grad()
def denoising_error(model, latents: torch.Tensor, prompt: str) -> float:
    """sdtrainer.meter's denoising error (fixed noise at fixed timesteps) of the images' latents under one prompt."""
    return meter.denoising_error(model, latents, get_tokenizer()([prompt] * len(latents)))


@pytest.mark.slow
def test_training_learns_the_subject_and_prior_preservation_keeps_the_class(demo_file, subject_photos, class_photos,
                                                                              tmp_path):
    """The subject (vertical stripes) is learnt; with class images (horizontal stripes, lambda = 1) the model
    keeps the class measurably better than the same run without them (lambda = 0): the prior drift the old
    repos' users saw, and its remedy."""
    base, _ = load_model(demo_file)
    subject, kind = latents_of(base, subject_photos), latents_of(base, class_photos)
    models = {}
    for weight in (0.0, 1.0):
        cfg = config(demo_file, subject_photos, class_photos if weight else None, steps=100, save_every=0,
                     preview_every=0, save_half=False, prior_loss_weight=weight)
        result, _ = train(cfg, tmp_path / f"prior{weight:g}")
        models[weight], _ = load_model(result.model_file)
    before = denoising_error(base, subject, "ohwx thing")
    assert denoising_error(models[0.0], subject, "ohwx thing") < 0.2 * before
    without_prior = denoising_error(models[0.0], kind, "thing")
    with_prior = denoising_error(models[1.0], kind, "thing")
    assert with_prior < 0.85 * without_prior, (with_prior, without_prior)


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def test_the_state_is_streamed_into_the_run_folder_not_through_memory_or_the_temp_folder(
        demo_file, subject_photos, tmp_path, monkeypatch):
    import tempfile
    import tracemalloc

    from sdtrainer.trainer import ModelSaver

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-folder"))  # TMPDIR on a missing disk
    peaks, write_state = [], ModelSaver.write_state

    def measured(self, trainer, step):
        tracemalloc.start()
        try:
            write_state(self, trainer, step)
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    monkeypatch.setattr(ModelSaver, "write_state", measured)
    cfg = config(demo_file, subject_photos, steps=2, save_every=0, preview_every=0, prior_loss_weight=0.0)
    result, _ = train(cfg, tmp_path / "run")
    state = tmp_path / "run" / "state" / "last.ckpt"
    assert result.step == 2 and state.stat().st_size > 1_000_000
    assert peaks and max(peaks) < state.stat().st_size / 4  # never a copy of the whole state in memory
    assert hidden_files(tmp_path / "run") == []


@pytest.mark.parametrize("failure", ["free-space check", "disk full while writing"])
def test_a_full_disk_during_a_state_save_is_one_message_and_leaves_the_last_state_resumable(
        demo_file, subject_photos, tmp_path, monkeypatch, failure):
    import errno

    from sdtrainer import checkpoint
    from sdtrainer.checkpoint import CheckpointError

    cfg = config(demo_file, subject_photos, steps=2, save_every=0, preview_every=0, prior_loss_weight=0.0)
    run_dir = tmp_path / "run"
    train(cfg, run_dir)
    state = run_dir / "state" / "last.ckpt"
    before = state.read_bytes()
    if failure == "free-space check":
        real = checkpoint.free_bytes
        monkeypatch.setattr(checkpoint, "free_bytes", lambda folder: 1000 if folder.name == "state" else real(folder))
    else:
        def fill_the_disk(obj, f, *args, **kwargs):
            Path(f).write_bytes(b"\0" * 100_000)
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(torch, "save", fill_the_disk)

    longer = config(demo_file, subject_photos, steps=4, save_every=0, preview_every=0, prior_loss_weight=0.0)
    with pytest.raises(CheckpointError, match="Not enough disk space to save last.ckpt"):
        train(longer, run_dir, resume=True)
    assert state.read_bytes() == before and hidden_files(run_dir) == []
    monkeypatch.undo()
    resumed, _ = train(longer, run_dir, resume=True)
    assert resumed.step == 4


def test_ema_warms_its_decay_up_and_swaps_back_and_forth():
    """CompVis LitEma's average: after n updates the decay is min(decay, (1 + n) / (10 + n)); swap exchanges the live
    weights and the average, and a second swap puts both back (the world's pretraining checks the average so)."""
    from sdtrainer.trainer.optim import EMA

    params = {"w": torch.zeros(3), "b": torch.ones(2)}
    ema = EMA(params, decay=0.999)
    params["w"] += 1.0
    ema.update(params)  # decay 2/11: the average moves 9/11 of the way
    assert torch.allclose(ema.shadow["w"], torch.full((3,), 9 / 11)) and torch.equal(ema.shadow["b"], torch.ones(2))
    ema.swap(params)
    assert torch.allclose(params["w"], torch.full((3,), 9 / 11)) and torch.equal(ema.shadow["w"], torch.ones(3))
    ema.swap(params)
    assert torch.equal(params["w"], torch.ones(3)) and torch.allclose(ema.shadow["w"], torch.full((3,), 9 / 11))


def test_a_run_whose_loss_is_no_number_stops_with_why_and_keeps_earlier_files(demo_file, subject_photos, tmp_path,
                                                                                monkeypatch):
    """A diverged run (the quality world's lora-8gb at 50x its learning rate went NaN between steps 200 and 400 on
    the GPU) must not go on writing NaN files. The config caps learning rates at 1e-2, where the tiny model does not
    diverge on the CPU, so the loss of step 3 is made NaN, as after a bad update: its backward makes the weights NaN
    too. Steps 1-2 train and the file of step 2 is written; the run stops at step 3 with the reason, before saving."""
    from sdtrainer.trainer import TrainingDiverged
    from sdtrainer.trainer.module import DreamBoothModule

    step = DreamBoothModule.training_step

    def diverging(self, batch, batch_idx):
        out = step(self, batch, batch_idx)
        if self.trainer.global_step >= 2:
            out = {k: v * float("nan") for k, v in out.items()}
        return out

    monkeypatch.setattr(DreamBoothModule, "training_step", diverging)
    cfg = config(demo_file, subject_photos, steps=6, save_every=2, preview_every=0)
    run_dir = tmp_path / "nan"
    with pytest.raises(TrainingDiverged) as caught:
        train(cfg, run_dir)
    message = caught.value.args[0]
    assert message.key == "train_diverged" and message.fields["step"] == 3, message
    assert "lower learning rate (this one had 0.001)" in message and "au pas 3" in say_in(message, "fr")
    assert [int(r["step"]) for r in metrics(run_dir)] == [1, 2, 3] and metrics(run_dir)[-1]["loss"] == "nan"
    files = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert files == ["nan-step00002.safetensors"], files
    weights = read_state_dict(run_dir / "checkpoints" / files[0])
    assert all(torch.isfinite(w).all() for w in weights.values())
