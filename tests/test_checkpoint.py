"""Checkpoint reading, detection and writing, on the tiny model and on hand-made bad files."""
import dataclasses
import errno
import json
import os
import pickle
import random
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ldm.model import SD_V1, TINY, SDConfig, StableDiffusion
from ldm.schedule import ddpm_buffers
from ldm.text_encoder import TextEncoderConfig
from ldm.unet import UNetConfig
from sdtrainer import checkpoint
from sdtrainer.checkpoint import (CheckpointError, detect_config, load_model, normalize_state_dict, read_metadata,
                                  read_state_dict, save_checkpoint)

UNET = "model.diffusion_model."
SCHEDULE = set(ddpm_buffers())
FORMATS = [".safetensors", ".ckpt"]


def ema_key(unet_key: str) -> str:
    """CompVis LitEma naming, written out independently of the code under test."""
    return "model_ema.diffusion_model" + unet_key[len(UNET):].replace(".", "")


@pytest.fixture(scope="module")
def tiny_sd(tiny_model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tiny_model.state_dict().items()}


def write_raw(path: Path, sd: dict, wrap: dict | None = None) -> Path:
    """A file as other programs write it (not through save_checkpoint)."""
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:
        torch.save({"state_dict": sd, **(wrap or {})}, path)
    return path


def assert_same_weights(model: StableDiffusion, expected: dict[str, torch.Tensor], cast=None):
    got = model.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        want = v.to(cast) if cast is not None and v.is_floating_point() and k not in SCHEDULE else v
        assert got[k].dtype == want.dtype, k
        assert torch.equal(got[k], want), k


# --- round trips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", FORMATS)
def test_fp32_round_trip_is_bit_exact(tmp_path, tiny_model, tiny_sd, suffix):
    path = save_checkpoint(tiny_model, tmp_path / f"m{suffix}", dtype=torch.float32)
    model, info = load_model(path)
    assert_same_weights(model, tiny_sd)
    assert (info.config, info.format, info.dtype, info.has_ema) == (TINY, suffix[1:], torch.float32, False)
    assert info.file_size == path.stat().st_size
    ids = model.text_encoder.transformer.text_model.embeddings.position_ids
    assert torch.equal(ids, torch.arange(77)[None])  # the one buffer no file holds
    x, t, c = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 77, 32)
    assert torch.equal(model.unet(x, t, c), tiny_model.unet(x, t, c))


@pytest.mark.parametrize("suffix", FORMATS)
def test_fp16_save_casts_weights_and_keeps_schedule_fp32(tmp_path, tiny_model, tiny_sd, suffix):
    path = save_checkpoint(tiny_model, tmp_path / f"m{suffix}")
    raw = read_state_dict(path)
    assert {k: v.dtype for k, v in raw.items() if k in SCHEDULE} == {k: torch.float32 for k in SCHEDULE}
    assert {v.dtype for k, v in raw.items() if k not in SCHEDULE} == {torch.float16}
    half, info = load_model(path, dtype=torch.float16)
    assert info.dtype == torch.float16
    assert_same_weights(half, tiny_sd, cast=torch.float16)
    upcast, _ = load_model(path)  # CPU default: fp32
    expected = {k: v if k in SCHEDULE else v.half().float() for k, v in tiny_sd.items()}
    assert_same_weights(upcast, expected)


@pytest.mark.parametrize("suffix", FORMATS)
def test_metadata_round_trip(tmp_path, tiny_model, suffix):
    meta = {"instance_prompt": "a photo of sks dog", "steps": "800"}
    path = save_checkpoint(tiny_model, tmp_path / f"m{suffix}", metadata=meta)
    got = read_metadata(path)
    assert {k: got[k] for k in meta} == meta and got["format"] == "sd-v1"
    assert json.loads(got["sdtrainer_config"]) == json.loads(json.dumps(dataclasses.asdict(TINY)))
    assert load_model(path)[1].metadata == got


def test_save_refuses_non_string_metadata_and_bad_names(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="strings"):
        save_checkpoint(tiny_model, tmp_path / "m.safetensors", metadata={"steps": 800})
    with pytest.raises(CheckpointError, match=".safetensors"):
        save_checkpoint(tiny_model, tmp_path / "m.bin")
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tiny_model, tmp_path / "nope" / "m.safetensors")
    assert save_checkpoint(tiny_model, tmp_path / "plain") == tmp_path / "plain.safetensors"


def test_save_handles_views_and_shared_tensors(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    big = torch.randn(4, *sd[UNET + "time_embed.0.weight"].shape)
    sd[UNET + "time_embed.0.weight"] = big[1]  # a view into a larger storage
    norm = "first_stage_model.encoder.norm_out."
    sd[norm + "bias"] = sd[norm + "weight"]  # two keys, one tensor
    sd[UNET + "out.2.weight"] = sd[UNET + "out.2.weight"].transpose(2, 3)  # not contiguous
    path = save_checkpoint(sd, tmp_path / "m.safetensors", dtype=torch.float32)
    assert_same_weights(load_model(path)[0], {k: v.contiguous() for k, v in sd.items()})


def test_include_ema_is_written_as_model_ema_and_read_back(tmp_path, tiny_model):
    ema = {k: v + 1 for k, v in tiny_model.unet.state_dict().items()}  # keyed like the UNet module
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", dtype=torch.float32, include_ema=ema)
    raw = read_state_dict(path)
    assert torch.equal(raw["model_ema.diffusion_modelinput_blocks10in_layers0weight"],
                       ema["input_blocks.1.0.in_layers.0.weight"])
    model, info = load_model(path, use_ema=True)
    assert info.has_ema
    assert all(torch.equal(model.unet.state_dict()[k], v) for k, v in ema.items())


# --- files other programs write ----------------------------------------------------------------------

def test_file_without_text_model_infix_loads_and_is_rewritten_with_it(tmp_path, tiny_sd):
    legacy = {k.replace("transformer.text_model.", "transformer."): v for k, v in tiny_sd.items()}
    assert "cond_stage_model.transformer.embeddings.token_embedding.weight" in legacy
    model, _ = load_model(write_raw(tmp_path / "old.safetensors", legacy))
    assert_same_weights(model, tiny_sd)
    resaved = read_state_dict(save_checkpoint(legacy, tmp_path / "new.safetensors", dtype=None))
    assert set(resaved) == set(tiny_sd)


def test_lightning_wrapper_with_training_extras_loads(tmp_path, tiny_sd):
    from pytorch_lightning.callbacks.model_checkpoint import ModelCheckpoint

    sd = {k: (torch.zeros_like(v) if k in SCHEDULE else v) for k, v in tiny_sd.items()}  # wrong schedule
    del sd["betas"]  # and one buffer missing: readers recompute them
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    sd["first_stage_model.loss.logvar"] = torch.zeros(())
    sd.update({ema_key(k): v * 2 for k, v in tiny_sd.items() if k.startswith(UNET)})
    sd["model_ema.decay"], sd["model_ema.num_updates"] = torch.tensor(0.9999), torch.tensor(7, dtype=torch.int)
    extras = {"global_step": 7, "epoch": 0, "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3)}}}],
              "callbacks": {ModelCheckpoint: {"best_model_path": "x"}}, "pytorch-lightning_version": "1.4.2"}
    path = write_raw(tmp_path / "train.ckpt", sd, extras)
    model, info = load_model(path)
    assert info.has_ema and info.format == "ckpt" and info.metadata == {} == read_metadata(path)
    assert_same_weights(model, tiny_sd)  # schedule buffers recomputed, extras dropped


def test_real_lightning_checkpoint_is_read(tmp_path):
    """What Lightning 2 pickles (callbacks state, OmegaConf hparams, LR schedulers) passes the allow-list."""
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    class Lit(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters(OmegaConf.create({"lr": 1e-3, "stages": [1, 2]}))
            self.layer = torch.nn.Linear(2, 2)

        def training_step(self, batch, _):
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters())
            return [opt], [torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)]

    callback = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[callback], default_root_dir=tmp_path)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer.fit(Lit(), data)
    sd = read_state_dict(tmp_path / "last.ckpt")
    assert set(sd) == {"layer.weight", "layer.bias"}
    with pytest.raises(CheckpointError, match="not a Stable Diffusion model"):
        load_model(tmp_path / "last.ckpt")


def test_use_ema_swaps_only_the_unet_weights(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    sd.update({ema_key(k): v + 0.5 for k, v in tiny_sd.items() if k.startswith(UNET)})
    path = write_raw(tmp_path / "ema.safetensors", sd)
    ema_model, _ = load_model(path, use_ema=True)
    assert_same_weights(ema_model, {k: v + 0.5 if k.startswith(UNET) else v for k, v in tiny_sd.items()})
    plain_model, _ = load_model(path)
    assert_same_weights(plain_model, tiny_sd)
    with pytest.raises(CheckpointError, match="no EMA"):
        normalize_state_dict(tiny_sd, use_ema=True)


def test_normalize_example_keys(tiny_sd):
    sd = {"cond_stage_model.transformer.embeddings.position_ids": torch.arange(77)[None],
          "cond_stage_model.transformer.embeddings.token_embedding.weight": torch.ones(2),
          "model_ema.decay": torch.tensor(0.9), "first_stage_model.loss.w": torch.ones(1)}
    out = normalize_state_dict(sd)
    assert set(out) == {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"} | SCHEDULE
    assert all(torch.equal(out[k], v) for k, v in ddpm_buffers().items())


# --- architecture detection ----------------------------------------------------------------------------

def test_detect_full_size_v1_on_meta():
    with torch.device("meta"):
        sd = StableDiffusion(SD_V1).state_dict()
    cfg = detect_config(sd)
    assert cfg == SD_V1 and cfg.name == "sd-v1"


def test_detect_tiny_without_metadata(tiny_sd):
    assert detect_config(tiny_sd) == TINY


def test_detect_infers_every_field_of_another_config():
    cfg = SDConfig(name="custom",
                   unet=UNetConfig(model_channels=64, channel_mult=(1, 2, 3), num_res_blocks=2,
                                   attention_resolutions=(4, 2), num_heads=4, context_dim=128),
                   vae=dataclasses.replace(TINY.vae, ch=64, ch_mult=(1, 2), num_res_blocks=3, z_channels=8),
                   text=TextEncoderConfig(width=128, layers=3, heads=2, mlp_width=256))
    with torch.device("meta"):
        sd = StableDiffusion(cfg).state_dict()
    assert detect_config(sd) == cfg  # heads: 64 // 16 and 128 // 64


def test_stored_config_supplies_heads_but_shapes_win(tmp_path):
    cfg = dataclasses.replace(TINY, name="tiny-1head", unet=dataclasses.replace(TINY.unet, num_heads=1),
                              text=dataclasses.replace(TINY.text, heads=1))
    path = save_checkpoint(StableDiffusion(cfg), tmp_path / "m.safetensors")
    assert load_model(path)[1].config == cfg
    assert detect_config(read_state_dict(path)) == TINY  # without metadata: the rule
    wrong = {"sdtrainer_config": json.dumps(dataclasses.asdict(SD_V1))}
    assert detect_config(read_state_dict(path), wrong) == TINY


# --- bad files -------------------------------------------------------------------------------------------

def small(*shape):
    return torch.zeros(shape)


def tiny_variant(tiny_sd, **changes):
    sd = dict(tiny_sd)
    sd.update(changes)
    return sd


BAD_STATE_DICTS = {
    "sdxl": (lambda sd: {"conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": small(768),
                         "model.diffusion_model.input_blocks.0.0.weight": small(320, 4, 3, 3)}, "SDXL"),
    "sd2-openclip": (lambda sd: {**{k: v for k, v in sd.items() if not k.startswith("cond_stage")},
                                 "cond_stage_model.model.ln_final.weight": small(1024)}, "2.x"),
    "sd2-context": (lambda sd: tiny_variant(sd, **{
        UNET + "middle_block.1.transformer_blocks.0.attn2.to_k.weight": small(64, 1024)}), "2.x"),
    "lora": (lambda sd: {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": small(4, 320),
                         "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": small(320, 4)}, "LoRA"),
    "vae-only": (lambda sd: {k[len("first_stage_model."):]: v for k, v in sd.items()
                             if k.startswith("first_stage_model.")}, "VAE alone"),
    "vae-prefixed-only": (lambda sd: {k: v for k, v in sd.items() if k.startswith("first_stage_model.")}, "VAE"),
    "inpainting": (lambda sd: tiny_variant(sd, **{UNET + "input_blocks.0.0.weight": small(32, 9, 3, 3)}),
                   "inpainting"),
    "embedding": (lambda sd: {"emb_params": small(2, 768)}, "embedding"),
    "diffusers": (lambda sd: {"down_blocks.0.resnets.0.conv1.weight": small(320, 320, 3, 3),
                              "conv_in.weight": small(320, 4, 3, 3)}, "diffusers-format"),
    "other": (lambda sd: {"fc.weight": small(2, 2)}, "not a Stable Diffusion model"),
}


@pytest.mark.parametrize("name", BAD_STATE_DICTS)
def test_other_kinds_of_files_are_named(tmp_path, tiny_sd, name):
    make, words = BAD_STATE_DICTS[name]
    path = write_raw(tmp_path / "model.safetensors", make(tiny_sd))  # a name that gives nothing away
    with pytest.raises(CheckpointError, match=words) as e:
        load_model(path)
    assert "v1-5-pruned-emaonly.safetensors" in str(e.value) and "\n" not in str(e.value)


def test_textual_inversion_pt_is_named(tmp_path):
    path = tmp_path / "model.pt"  # A1111's format: nested dicts and plain values around one tensor
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": small(2, 768)}, "name": "x", "step": 9}, path)
    with pytest.raises(CheckpointError, match="textual-inversion embedding.*v1-5-pruned-emaonly"):
        load_model(path)


def test_key_mismatch_lists_missing_and_unexpected_with_shapes(tmp_path, tiny_sd):
    sd = dict(tiny_sd)
    del sd[UNET + "out.2.bias"]
    sd[UNET + "extra.weight"] = small(3, 5)
    with pytest.raises(CheckpointError) as e:
        load_model(write_raw(tmp_path / "m.safetensors", sd))
    msg = str(e.value)
    assert "1 missing: model.diffusion_model.out.2.bias [4]" in msg
    assert "1 unexpected: model.diffusion_model.extra.weight [3, 5]" in msg


def malicious_zip(path: Path, marker: Path):
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"state_dict": {"a": torch.ones(1)}, "x": Evil()}, path)


def malicious_raw(path: Path, marker: Path):
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path.write_bytes(pickle.dumps({"state_dict": Evil()}, protocol=2))


@pytest.mark.parametrize("write", [malicious_zip, malicious_raw])
def test_malicious_pickle_is_refused_without_running(tmp_path, write):
    marker = tmp_path / "pwned"
    write(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="tries to run code.*system") as e:
        load_model(tmp_path / "evil.ckpt")
    assert "refused" in str(e.value)
    assert not marker.exists()


def truncated(path: Path, good: Path):
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CORRUPT = {  # case: (file suffix, how to write it from a good file of that suffix, words of the error)
    "truncated-safetensors": (".safetensors", truncated, "truncated or corrupt"),
    "truncated-ckpt": (".ckpt", truncated, "truncated or corrupt"),
    "random-safetensors": (".safetensors", lambda p, g: p.write_bytes(random.Random(0).randbytes(4096)),
                           "not a readable .safetensors"),
    "random-ckpt": (".ckpt", lambda p, g: p.write_bytes(random.Random(0).randbytes(4096)), "not a readable PyTorch"),
    "empty": (".safetensors", lambda p, g: p.write_bytes(b""), "is empty"),
    "folder": (".ckpt", lambda p, g: p.mkdir(), "is a folder"),
    "missing": (".ckpt", lambda p, g: None, "not found"),
    "bin": (".bin", lambda p, g: p.write_bytes(b"x"), "unsupported file type"),
    "renamed": (".safetensors", lambda p, g: p.write_bytes(g.with_suffix(".ckpt").read_bytes()), "rename it to .ckpt"),
    "pickled-list": (".ckpt", lambda p, g: torch.save([1, 2], p), "not a model's weights"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_unreadable_files_give_one_line_errors(tmp_path, tiny_model, case):
    suffix, write, words = CORRUPT[case]
    save_checkpoint(tiny_model, tmp_path / "good.safetensors")
    save_checkpoint(tiny_model, tmp_path / "good.ckpt")
    path = tmp_path / f"model{suffix}"
    write(path, tmp_path / ("good.ckpt" if suffix == ".ckpt" else "good.safetensors"))
    with pytest.raises(CheckpointError, match=words) as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_numpy_scalars_in_a_ckpt_are_allowed(tmp_path, tiny_sd):
    import numpy as np

    path = write_raw(tmp_path / "np.ckpt", tiny_sd, {"best_score": np.float64(0.5), "hist": np.arange(3)})
    assert set(read_state_dict(path)) == set(tiny_sd)


# --- atomic writes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix,writer", [(".safetensors", "_write_safetensors"), (".ckpt", "_write_pickle")])
def test_failed_save_leaves_existing_file_intact(tmp_path, tiny_model, monkeypatch, suffix, writer):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(b"previous model")

    def fail_midway(tensors, tmp, metadata):
        tmp.write_bytes(b"half a file")
        raise RuntimeError("writer crashed")

    monkeypatch.setattr(checkpoint, writer, fail_midway)
    with pytest.raises(RuntimeError, match="writer crashed"):
        save_checkpoint(tiny_model, path)
    assert path.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_disk_full_says_how_much_space_is_needed(tmp_path, tiny_model, monkeypatch):
    def no_space(tensors, tmp, metadata):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_safetensors", no_space)
    with pytest.raises(CheckpointError, match=r"Not enough disk space.*needs about 0\.0\d GB"):
        save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_of_crashed_saves_are_removed_and_those_of_running_saves_kept(tmp_path):
    import subprocess
    import sys

    from sdtrainer.checkpoint import remove_stale_temp_files, temp_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    run = tmp_path / "runs" / "joe"
    (run / "state").mkdir(parents=True)
    ours = temp_path(run / "checkpoints.safetensors")
    crashed = [run / "state" / f".last.ckpt.{dead_pid}-0123abcd.tmp.ckpt",
               tmp_path / f".joe.safetensors.{dead_pid}-89abcdef.tmp.safetensors",
               run / "state" / ".last.ckpt.tmp",  # the names older versions used
               tmp_path / ".joe.safetensors.0123abcd.tmp", tmp_path / ".joe.pruning.safetensors",
               tmp_path / ".joe.replacing.ckpt"]
    kept = [ours, tmp_path / ".hidden-notes.txt", tmp_path / "joe.safetensors", run / "state" / "last.ckpt"]
    for path in crashed + kept:
        path.write_bytes(b"x")

    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(crashed)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in crashed)
    assert ours.name.startswith(".checkpoints.safetensors.") and ours.suffix == ".safetensors"


def test_a_deeply_nested_ckpt_is_one_message_not_a_recursion_error(tmp_path):
    nested = inner = {}
    for _ in range(5000):
        inner["x"] = {}
        inner = inner["x"]
    inner["w"] = torch.zeros(1)
    path = tmp_path / "deep.ckpt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # torch.save recurses to write it; readers must not
    try:
        torch.save({"state_dict": nested}, path)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert "RecursionError" not in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_model_files_get_the_usual_permissions_not_private_ones(tmp_path, tiny_model):
    probe = tmp_path / "probe.txt"
    probe.write_text("")
    for suffix in (".safetensors", ".ckpt"):
        saved = save_checkpoint(tiny_model, tmp_path / f"m{suffix}")
        assert saved.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777, suffix
