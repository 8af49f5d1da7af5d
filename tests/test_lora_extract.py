"""sdtrainer.lora_extract on the tiny model: a full-rank LoRA gives back the trained model, a lower rank keeps the
energy it reports, the file carries kohya's metadata, and bad input is one line in English and French."""
import dataclasses
import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ldm.model import TINY, StableDiffusion
from sdtrainer.checkpoint import CheckpointError, load_model, normalize_state_dict, read_checkpoint, save_checkpoint
from sdtrainer.lora import DOWN, UP, LayerGroup, LoraError, lora_layers, read_lora, with_lora
from sdtrainer.lora_extract import ExtractSettings, extract_lora
from sdtrainer.messages import message_of, say_in

EVERYTHING = ExtractSettings(rank=1024, conv_rank=1024, text_encoder=True, half=False)


def differences(base, tuned) -> dict:
    """kohya name -> the layer's difference tuned - base, flattened to a matrix."""
    a, b = (normalize_state_dict(read_checkpoint(p)[0]) for p in (base, tuned))
    with torch.device("meta"):
        layers = lora_layers(StableDiffusion(TINY))
    return {layer.name: (b[layer.key] - a[layer.key]).flatten(1) for layer in layers}


def test_a_full_rank_lora_gives_back_the_trained_model(base_and_tuned, tmp_path):
    """Base + LoRA at full rank = the trained model. Tolerance 2e-5 on outputs of about 1: float32 SVD rebuilds each
    difference to about 1e-6 of its size; the trained model's outputs are about 1 away from the base's."""
    base, tuned = base_and_tuned
    report = extract_lora(base, tuned, tmp_path / "full.safetensors", EVERYTHING)
    assert len(report.layers) == len(lora_layers(load_model(base)[0])) and not report.unchanged
    assert all(layer.rank == layer.full_rank and layer.kept > 1 - 1e-6 for layer in report.layers)
    assert report.held == pytest.approx(1, abs=1e-6)  # training changed only what a LoRA can hold
    steps = report.rank_steps()
    assert [rank for rank, _ in steps] == [4, 8, 16, 32]  # below the largest full rank, min(out, in) = 64 in TINY
    assert report.kept_at(1) < report.kept_at(2) and all(kept > 0.99 for _, kept in steps)  # rank-2 changes
    base_model, trained = load_model(base)[0], load_model(tuned)[0]
    merged = with_lora(base_model, read_lora(report.path), 1.0)
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([5, 900]), torch.randn(2, 77, 32)
    ids = torch.randint(0, 49408, (1, 77), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (trained.unet(x, t, context) - base_model.unet(x, t, context)).abs().max() > 0.1
        torch.testing.assert_close(merged.unet(x, t, context), trained.unet(x, t, context), atol=2e-5, rtol=0)
        torch.testing.assert_close(merged.text_encoder(ids), trained.text_encoder(ids), atol=2e-5, rtol=0)


def test_a_lower_rank_keeps_the_energy_it_reports(base_and_tuned, tmp_path):
    """At rank 1 the report's share of each layer's energy is what the file's up @ down keeps of the difference,
    measured here from the file: 1 - |D - up down|^2 / |D|^2. The changes are rank 2, so rank 1 keeps part."""
    base, tuned = base_and_tuned
    report = extract_lora(base, tuned, tmp_path / "r1.safetensors", ExtractSettings(rank=1, half=False))
    diffs, lora = differences(base, tuned), read_lora(report.path)
    assert {layer.name for layer in report.layers} == set(lora.modules)
    assert all(layer.startswith("lora_unet_") and "resnets" not in layer for layer in lora.modules)  # kohya's default
    kept_energy = 0.0
    for layer in report.layers:
        d, module = diffs[layer.name], lora.modules[layer.name]
        assert module.rank == layer.rank == 1 and module.alpha == 1.0
        residual = (d - module.delta(d.shape)).square().sum()
        assert layer.energy == pytest.approx(float(d.square().sum()), rel=1e-5)
        assert abs(1 - residual / layer.energy - layer.kept) < 1e-4, layer
        assert 0.2 < layer.kept < 0.95, layer
        kept_energy += layer.energy - float(residual)
    assert report.kept == pytest.approx(kept_energy / sum(layer.energy for layer in report.layers), abs=1e-4)
    assert report.kept_at(1) == pytest.approx(report.kept) and report.kept_at(2) > 0.99
    # held: the attention layers' share of all the UNet's change (its ResBlocks changed too, but are left out here)
    a, b = (normalize_state_dict(read_checkpoint(p)[0]) for p in (base, tuned))
    unet = sum(float((b[k] - a[k]).square().sum()) for k in a if k.startswith("model.diffusion_model."))
    assert report.held == pytest.approx(sum(float(diffs[layer.name].square().sum()) for layer in report.layers) / unet,
                                        rel=1e-5)
    assert 0.2 < report.held < 0.9 and f"hold {report.held:.1%}" in report.summary
    assert "keep" in report.summary and f"{report.kept:.1%}" in report.summary
    two = extract_lora(base, tuned, tmp_path / "r2.safetensors", ExtractSettings(rank=2))
    assert two.kept > 0.99 > report.kept  # the rank-2 changes are caught whole (fp16 file, same report)


def test_an_energy_threshold_gives_each_layer_the_smallest_rank_that_keeps_it(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    report = extract_lora(base, tuned, tmp_path / "e.safetensors", ExtractSettings(rank=64, energy=0.6))
    diffs = differences(base, tuned)
    for layer in report.layers:
        s2 = torch.linalg.svdvals(diffs[layer.name]).square()
        share = s2.cumsum(0) / s2.sum()
        assert share[layer.rank - 1] >= 0.6 > (share[layer.rank - 2] if layer.rank > 1 else 0), layer
        assert layer.kept == pytest.approx(float(share[layer.rank - 1]), abs=1e-5)
    assert {layer.rank for layer in report.layers} == {1, 2}  # some layers need their second component, some not
    capped = extract_lora(base, tuned, tmp_path / "c.safetensors", ExtractSettings(rank=1, energy=0.999))
    assert {layer.rank for layer in capped.layers} == {1}  # the rank caps what the energy asks
    with safe_open(report.path, framework="pt") as f:
        assert f.metadata()["ss_network_dim"] == "Dynamic"


def test_the_file_has_kohyas_layout_and_metadata(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    report = extract_lora(base, tuned, tmp_path / "joe.safetensors", ExtractSettings(rank=4, conv_rank=2))
    with safe_open(report.path, framework="pt") as f:
        metadata, keys = f.metadata(), list(f.keys())
        conv = "lora_unet_down_blocks_0_resnets_0_conv1"
        assert f.get_tensor(conv + DOWN).shape == (2, 32, 3, 3) and f.get_tensor(conv + UP).shape == (32, 2, 1, 1)
        assert f.get_tensor(conv + ".alpha").item() == 2.0 and f.get_tensor(conv + UP).dtype == torch.float16
        emb = "lora_unet_down_blocks_0_resnets_0_time_emb_proj"  # a Linear of a ResBlock: the rank, not the conv rank
        assert f.get_tensor(emb + DOWN).shape == (4, 128)
    assert not any(k.startswith("lora_te_") for k in keys)  # the text encoder only when asked
    assert metadata["ss_network_module"] == "networks.lora" and metadata["ss_network_dim"] == "4"
    assert metadata["ss_network_alpha"] == "4.0" and json.loads(metadata["ss_network_args"]) == {
        "conv_dim": "2", "conv_alpha": "2.0"}
    data = base.read_bytes()
    assert metadata["ss_new_sd_model_hash"] == hashlib.sha256(data).hexdigest()
    assert metadata["ss_sd_model_hash"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert metadata["ss_sd_model_name"] == "base.safetensors" and metadata["ss_base_model_version"] == "sd_v1"
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert metadata["modelspec.trigger_phrase"] == "ohwx person" and metadata["token"] == "ohwx"
    assert metadata["class_word"] == "person" and metadata["concepts"] == '[["ohwx", "person"]]'
    assert float(metadata["energy_kept"]) == pytest.approx(report.kept, abs=1e-6)


def test_layers_training_left_alone_are_left_out(base_and_tuned, tmp_path):
    base, _ = base_and_tuned
    model = load_model(base)[0]
    sd = model.state_dict()
    text_layers = [layer for layer in lora_layers(model) if layer.group is LayerGroup.TEXT]
    q = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    sd[q] = sd[q] + 0.01
    tuned = save_checkpoint(sd, tmp_path / "one-layer.safetensors", dtype=None)
    report = extract_lora(base, tuned, tmp_path / "one.safetensors", ExtractSettings(rank=4, text_encoder=True))
    assert [layer.name for layer in report.layers] == ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_"
                                                       "attn1_to_q"]
    assert report.layers[0].rank == 4 and report.layers[0].kept > 0.9999  # a constant shift is rank 1: all kept
    attention = [layer for layer in lora_layers(model) if layer.group is LayerGroup.ATTENTION]
    assert len(report.unchanged) == len(attention) + len(text_layers) - 1


def test_bad_input_is_one_line_in_english_and_french(base_and_tuned, tmp_path):
    base, tuned = base_and_tuned
    lora = extract_lora(base, tuned, tmp_path / "a.safetensors", ExtractSettings(rank=2)).path
    other = dataclasses.replace(TINY, name="other", unet=dataclasses.replace(TINY.unet, num_res_blocks=2))
    other_file = save_checkpoint(StableDiffusion(other), tmp_path / "other.safetensors")
    not_sd = tmp_path / "weights.safetensors"
    save_file({"fc.weight": torch.ones(2, 2)}, not_sd)
    out = tmp_path / "out.safetensors"
    cases = [  # (base, tuned, out, settings, error type, English, French)
        (not_sd, tuned, out, {}, CheckpointError, "not a Stable Diffusion model", "pas un modèle Stable Diffusion"),
        (other_file, tuned, out, {}, LoraError, "are different architectures", "des architectures différentes"),
        (lora, tuned, out, {}, CheckpointError, "This is a LoRA/LyCORIS file", "C'est un fichier LoRA/LyCORIS"),
        (tmp_path / "gone.safetensors", tuned, out, {}, CheckpointError, "Checkpoint not found", "introuvable"),
        (base, base, out, {}, LoraError, "are the same file", "sont le même fichier"),
        (base, tuned, tmp_path / "a.ckpt", {}, LoraError, "name the file a.safetensors", "nommez le fichier"),
        (base, tuned, lora, {}, CheckpointError, "already exists", "existe déjà"),
        (base, tuned, tuned, {}, LoraError, "is one of the two models", "l'un des deux modèles"),
        (base, tuned, out, {"rank": 0}, LoraError, "The rank must be a whole number from 1", "Le rang doit être"),
        (base, tuned, out, {"energy": 1.5}, LoraError, "must be above 0 and at most 1", "au plus 1"),
    ]
    for a, b, o, settings, error, english, french in cases:
        with pytest.raises(error) as caught:
            extract_lora(a, b, o, ExtractSettings(**settings), overwrite=o == tuned)
        assert english in str(caught.value) and "\n" not in str(caught.value), english
        assert french in say_in(message_of(caught.value), "fr"), french
    assert not out.exists() and read_lora(lora).modules  # nothing written, nothing written over
    with pytest.raises(LoraError, match="has the same weights as") as caught:
        extract_lora(base, save_checkpoint(load_model(base)[0], tmp_path / "copy.safetensors", dtype=None), out)
    assert "a les mêmes poids que" in say_in(message_of(caught.value), "fr")
