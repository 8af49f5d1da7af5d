"""Pruning a real Lightning training checkpoint of the tiny model (optimizer states, EMA, callbacks)."""
import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from ldm.model import TINY, StableDiffusion
from ldm.schedule import ddpm_buffers
from sdtrainer import pruning
from sdtrainer.checkpoint import CheckpointError, load_model, read_state_dict
from sdtrainer.pruning import PruneReport, prune_checkpoint

UNET = "model.diffusion_model."


class LitEma(nn.Module):
    """CompVis' EMA holder: one buffer per UNet parameter, named without dots, plus its counters."""

    def __init__(self, unet: nn.Module, offset: float):
        super().__init__()
        self.register_buffer("decay", torch.tensor(0.9999))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.int))
        for name, p in unet.named_parameters():
            self.register_buffer("diffusion_model" + name.replace(".", ""), p.detach() + offset)


def lightning_module(offset: float):
    import pytorch_lightning as pl
    from omegaconf import OmegaConf

    class LatentDiffusion(pl.LightningModule):
        """Holds the parts under the names CompVis' LatentDiffusion gives them."""

        def __init__(self):
            super().__init__()
            self.save_hyperparameters(OmegaConf.create({"base_learning_rate": 1e-6, "unet": {"ch": 32}}))
            sd = StableDiffusion(TINY)
            self.model, self.first_stage_model = sd.model, sd.first_stage_model
            self.cond_stage_model = sd.cond_stage_model
            for name, value in ddpm_buffers().items():
                self.register_buffer(name, value)
            self.model_ema = LitEma(sd.unet, offset)

        def training_step(self, batch, _):
            x = batch[0]
            return self.model.diffusion_model(x, torch.tensor([500]), torch.zeros(1, 77, 32)).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    return LatentDiffusion()


@pytest.fixture(scope="module")
def training_ckpt(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A last.ckpt written by Lightning after one step, and the weights it holds."""
    import pytorch_lightning as pl

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    module = lightning_module(offset=0.25)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=folder,
                         callbacks=[pl.callbacks.ModelCheckpoint(dirpath=folder, save_last=True)])
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(1, 4, 8, 8)), batch_size=1)
    trainer.fit(module, data)
    path = folder / "last.ckpt"
    raw = torch.load(path, weights_only=False)
    assert raw["optimizer_states"] and "callbacks" in raw  # what makes it a training checkpoint
    return path, {k: v.clone() for k, v in raw["state_dict"].items()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_weights(trained: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in trained.items() if not k.startswith("model_ema.")}


def assert_weights(model: StableDiffusion, expected: dict[str, torch.Tensor]):
    got = model.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v.to(got[k].dtype)), k


def test_prune_drops_training_state_and_loads(tmp_path, training_ckpt):
    src, trained = training_ckpt
    before = digest(src)
    report = prune_checkpoint(src, tmp_path / "pruned.safetensors")
    assert isinstance(report, PruneReport) and report.dst_path == tmp_path / "pruned.safetensors"
    assert report.dst_bytes == report.dst_path.stat().st_size < report.src_bytes / 4  # fp32 + Adam + EMA -> fp16
    assert digest(src) == before
    raw = read_state_dict(report.dst_path)
    assert not any(k.startswith("model_ema.") for k in raw)
    assert raw[UNET + "out.2.weight"].dtype == torch.float16
    assert set(report.kept_keys) == set(raw) and len(raw) == len(model_weights(trained))
    assert all(k.startswith("model_ema.") for k in report.dropped_keys) and len(report.dropped_keys) > 100
    model, info = load_model(report.dst_path, dtype=torch.float16)
    assert_weights(model, {k: v.half() if k not in ddpm_buffers() else v for k, v in model_weights(trained).items()})
    assert info.config == TINY and not info.has_ema
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.safetensors"]


def test_prune_use_ema_puts_ema_in_the_unet(tmp_path, training_ckpt):
    src, trained = training_ckpt
    report = prune_checkpoint(src, tmp_path / "ema.ckpt", half=False, ema="use")
    model, info = load_model(report.dst_path)
    ema = {k: trained["model_ema.diffusion_model" + k[len(UNET):].replace(".", "")]
           for k in trained if k.startswith(UNET)}
    assert all(not torch.equal(ema[k], trained[k]) for k in ema)  # the EMA really differs
    assert_weights(model, {**model_weights(trained), **ema})
    assert info.format == "ckpt" and info.dtype == torch.float32 and not info.has_ema


def test_prune_keep_ema_writes_model_ema(tmp_path, training_ckpt):
    src, trained = training_ckpt
    report = prune_checkpoint(src, tmp_path / "keep.safetensors", ema="keep")
    raw = read_state_dict(report.dst_path)
    key = "model_ema.diffusion_modelout2weight"
    assert torch.equal(raw[key], trained[key].half())
    assert raw["model_ema.decay"].dtype == torch.float32
    assert load_model(report.dst_path, use_ema=True)[1].has_ema


def test_prune_refuses_to_overwrite(tmp_path, training_ckpt):
    src, _ = training_ckpt
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"keep me")
    with pytest.raises(CheckpointError, match="already exists"):
        prune_checkpoint(src, dst)
    assert dst.read_bytes() == b"keep me"
    with pytest.raises(CheckpointError, match="the file being pruned"):
        prune_checkpoint(src, src, overwrite=True)
    assert prune_checkpoint(src, dst, overwrite=True).dst_bytes > 1000
    assert load_model(dst)[1].config == TINY


def test_prune_deletes_output_that_does_not_load(tmp_path, training_ckpt, monkeypatch):
    src, _ = training_ckpt
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"older output")

    def broken_load(path, **kwargs):
        raise CheckpointError("simulated: missing keys")

    monkeypatch.setattr(pruning, "load_model", broken_load)
    with pytest.raises(CheckpointError, match="did not load back.*simulated"):
        prune_checkpoint(src, dst, overwrite=True)
    assert dst.read_bytes() == b"older output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]


def test_prune_rejects_bad_requests(tmp_path, training_ckpt):
    src, _ = training_ckpt
    with pytest.raises(CheckpointError, match="ema must be one of"):
        prune_checkpoint(src, tmp_path / "a.safetensors", ema="average")
    with pytest.raises(CheckpointError, match="not found"):
        prune_checkpoint(tmp_path / "nope.ckpt", tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="no EMA"):
        plain = prune_checkpoint(src, tmp_path / "plain.safetensors").dst_path
        prune_checkpoint(plain, tmp_path / "b.safetensors", ema="use")
    assert not (tmp_path / "b.safetensors").exists()
