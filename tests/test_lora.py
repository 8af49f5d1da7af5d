"""sdtrainer.lora: kohya's names for our layers (checked against diffusers' own modules and converter), reading
LoRA files, merging them into a model, and the hashes AUTOMATIC1111 writes."""
import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from bench.reference import SD_V1_DIFFUSERS, TINY_DIFFUSERS
from ldm.model import SD_V1, StableDiffusion
from sdtrainer.checkpoint import CheckpointError
from sdtrainer.lora import (ALPHA, DOWN, UP, LayerGroup, Lora, LoraError, LoraModule, is_lora_file, lora_hash,
                            lora_layers, read_lora, with_lora)
from sdtrainer.messages import message_of, say_in

# diffusers (and peft, for its LoRA loader) are test dependencies (requirements-dev.txt); with CI=true a skip fails
needs_diffusers = pytest.mark.skipif(importlib.util.find_spec("diffusers") is None or
                                     importlib.util.find_spec("peft") is None, reason="diffusers and peft are test "
                                                                                      "dependencies")

# kohya's rule (networks/lora.py): which diffusers modules a LoRA looks into, and which of their children it adapts
KOHYA_UNET = {"Transformer2DModel": LayerGroup.ATTENTION, "ResnetBlock2D": LayerGroup.CONV,
              "Downsample2D": LayerGroup.CONV, "Upsample2D": LayerGroup.CONV}


def kohya_names(root: torch.nn.Module, prefix: str, parents: dict) -> dict[str, tuple]:
    """kohya name -> (group, weight shape) of every Linear/Conv2d under a module whose class is in `parents`."""
    found = {}
    for name, module in root.named_modules():
        group = parents.get(type(module).__name__)
        for child_name, child in module.named_modules() if group else ():
            if type(child).__name__ in ("Linear", "Conv2d"):
                found[f"{prefix}{name}.{child_name}".replace(".", "_")] = (group, tuple(child.weight.shape))
    return found


@needs_diffusers
def test_every_layer_kohya_adapts_in_sd_v1_gets_its_name_once():
    """On the full SD v1 architecture (meta device): our names are exactly the ones kohya's rule gives on diffusers'
    UNet and on transformers' CLIP (whose text_model level transformers 5 no longer has: kohya's names keep it)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        ours = lora_layers(StableDiffusion(SD_V1))
        unet = UNet2DConditionModel(**SD_V1_DIFFUSERS.unet)
        text = CLIPTextModel(CLIPTextConfig(**SD_V1_DIFFUSERS.text))
    expected = kohya_names(unet, "lora_unet_", KOHYA_UNET)
    expected |= kohya_names(text, "lora_te_text_model.", {"CLIPAttention": LayerGroup.TEXT,
                                                          "CLIPMLP": LayerGroup.TEXT})
    assert len({layer.name for layer in ours}) == len(ours) == 350
    assert len({layer.key for layer in ours}) == len(ours)
    assert {layer.name: (layer.group, layer.shape) for layer in ours} == expected
    groups = [layer.group for layer in ours]
    # kohya's counts for SD v1: 192 UNet modules, 278 with a conv dim, 72 in the text encoder
    assert (groups.count(LayerGroup.ATTENTION), groups.count(LayerGroup.CONV), groups.count(LayerGroup.TEXT)) == \
        (192, 86, 72)
    with torch.device("meta"):
        keys = StableDiffusion(SD_V1).state_dict()
    assert all(tuple(keys[layer.key].shape) == layer.shape for layer in ours)


@needs_diffusers
def test_each_name_adapts_the_weight_diffusers_converter_puts_there(tiny_model):
    """diffusers' own CompVis -> diffusers converter moves each of our weights to a module path; kohya's name of that
    path (dots made underscores) must be the name we give the weight."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    sd = tiny_model.state_dict()
    converted = convert_ldm_unet_checkpoint(sd, dict(TINY_DIFFUSERS.unet))
    by_tensor = {t.data_ptr(): k for k, t in converted.items()}
    unet_layers = [layer for layer in lora_layers(tiny_model) if layer.group is not LayerGroup.TEXT]
    assert unet_layers
    for layer in unet_layers:
        path = by_tensor[sd[layer.key].data_ptr()].removesuffix(".weight")
        assert layer.name == "lora_unet_" + path.replace(".", "_"), layer


def lora_file(path: Path, modules: dict[str, tuple[torch.Tensor, torch.Tensor, float]], **extra) -> Path:
    tensors = {}
    for name, (down, up, alpha) in modules.items():
        tensors |= {name + DOWN: down, name + UP: up, name + ALPHA: torch.tensor(alpha)}
    save_file(tensors | extra, path)
    return path


Q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"  # a [32, 32] Linear of TINY
CONV = "lora_unet_down_blocks_0_resnets_0_conv1"  # a [32, 32, 3, 3] Conv2d of TINY


def test_a_merged_weight_is_w_plus_weight_times_alpha_over_rank_up_down(tiny_model, tmp_path):
    torch.manual_seed(1)
    down, up = torch.randn(4, 32), torch.randn(32, 4)
    conv_down, conv_up = torch.randn(2, 32, 3, 3), torch.randn(32, 2, 1, 1)
    lora = read_lora(lora_file(tmp_path / "a.safetensors", {Q: (down, up, 2.0), CONV: (conv_down, conv_up, 2.0)}))
    layers = {layer.name: layer for layer in lora_layers(tiny_model)}
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    merged = with_lora(tiny_model, lora, 0.8).state_dict()
    q, conv = layers[Q].key, layers[CONV].key
    torch.testing.assert_close(merged[q], before[q] + 0.8 * 2.0 / 4 * up @ down)
    by_conv = torch.nn.functional.conv2d(conv_down.permute(1, 0, 2, 3), conv_up).permute(1, 0, 2, 3)  # kohya's way
    torch.testing.assert_close(merged[conv], before[conv] + 0.8 * 2.0 / 2 * by_conv)
    # the model itself is unchanged, and the merged one shares every tensor the LoRA does not touch
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    untouched = [k for k in merged if k not in (q, conv)]
    assert all(merged[k].data_ptr() == tiny_model.state_dict()[k].data_ptr() for k in untouched)
    assert torch.equal(with_lora(tiny_model, lora, 0.0).state_dict()[q], before[q])


def test_alpha_defaults_to_the_rank(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({Q + DOWN: torch.ones(3, 32), Q + UP: torch.ones(32, 3)}, path)
    assert read_lora(path).modules[Q].alpha == 3.0


def test_bad_lora_files_and_weights_give_one_line_in_english_and_french(tiny_model, demo_file, tmp_path):
    cases = {
        "missing": (tmp_path / "nope.safetensors", "LoRA file not found", "Fichier LoRA introuvable"),
        "a model": (demo_file, "is a model, not a LoRA", "est un modèle, pas un LoRA"),
        "LyCORIS": (lora_file(tmp_path / "loha.safetensors", {}, **{Q + ".hada_w1_a": torch.ones(2, 2)}),
                    "not a LoRA in kohya's layout", "n'est pas un LoRA au format de kohya"),
        "no up": (lora_file(tmp_path / "half.safetensors", {}, **{Q + DOWN: torch.ones(2, 32)}),
                  "lacks its lora_down or lora_up", "n'a pas son poids lora_down ou lora_up"),
    }
    for what, (path, english, french) in cases.items():
        with pytest.raises(LoraError) as caught:
            read_lora(path)
        assert english in str(caught.value) and "\n" not in str(caught.value), what
        assert french in say_in(message_of(caught.value), "fr"), what
    sdxl = read_lora(lora_file(tmp_path / "sdxl.safetensors", {"lora_unet_input_blocks_4_1_proj_in": (
        torch.ones(2, 640, 1, 1), torch.ones(640, 2, 1, 1), 2.0), "lora_te1_text_model_encoder_layers_0_mlp_fc1": (
        torch.ones(2, 768), torch.ones(3072, 2), 2.0)}))
    with pytest.raises(LoraError, match="adapts 2 layers this SD v1 model does not have") as caught:
        with_lora(tiny_model, sdxl, 1.0)
    assert "une autre architecture" in say_in(message_of(caught.value), "fr")
    wide = Lora(tmp_path / "wide.safetensors", {Q: LoraModule(torch.ones(2, 64), torch.ones(32, 2), 2.0)}, {})
    with pytest.raises(LoraError, match="does not fit this model"):
        with_lora(tiny_model, wide, 1.0)
    for weight in (-0.1, 1.6, float("nan")):
        with pytest.raises(LoraError, match="between 0 and 1.5"):
            with_lora(tiny_model, wide, weight)
    with pytest.raises(CheckpointError, match="not a readable .safetensors"):
        read_lora((tmp_path / "junk.safetensors").write_bytes(b"junk") and tmp_path / "junk.safetensors")


def test_lora_files_are_told_from_models(demo_file, tmp_path):
    lora = lora_file(tmp_path / "a.safetensors", {Q: (torch.ones(2, 32), torch.ones(32, 2), 2.0)})
    assert is_lora_file(lora) and not is_lora_file(demo_file) and not is_lora_file(tmp_path / "gone.safetensors")


def test_lora_hash_is_a1111s_sha256_of_the_tensor_data(tmp_path):
    """AUTOMATIC1111 (and kohya) hash a .safetensors LoRA after its header: metadata edits keep the hash."""
    tensors = {Q + DOWN: torch.ones(2, 32), Q + UP: torch.ones(32, 2), Q + ALPHA: torch.tensor(2.0)}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(tensors, a, metadata={"ss_output_name": "a"})
    save_file(tensors, b, metadata={"ss_output_name": "a much longer name that moves the data"})
    data = a.read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert lora_hash(a) == hashlib.sha256(data[8 + header:]).hexdigest()[:12] == lora_hash(b)
    pickled = tmp_path / "c.pt"
    torch.save(tensors, pickled)
    assert lora_hash(pickled) == hashlib.sha256(pickled.read_bytes()).hexdigest()[:12]


@needs_diffusers
def test_diffusers_kohya_loader_reads_our_file_and_computes_what_we_compute(tiny_model, tmp_path):
    """A kohya LoRA of every layer it can adapt (3x3 convs and text encoder included), loaded by diffusers' own loader
    (load_lora_weights, through peft) onto its UNet and transformers' CLIP built from TINY's configs with our weights:
    their outputs are ours after with_lora. float32 throughout; the tolerance (2e-5 on outputs of about 1, where the
    LoRA moves them by more than 0.05) covers two implementations summing in different orders."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    from bench.reference import ddpm_scheduler

    torch.manual_seed(2)
    modules = {}
    for layer in lora_layers(tiny_model):
        rank = 3
        down = torch.randn(rank, *layer.shape[1:]) * 0.05
        up = torch.randn(layer.shape[0], rank, *[1] * (len(layer.shape) - 2)) * 0.05
        modules[layer.name] = (down, up, 1.5)
    path = lora_file(tmp_path / "joe.safetensors", modules)
    sd = tiny_model.state_dict()
    unet = UNet2DConditionModel(**TINY_DIFFUSERS.unet)
    unet.load_state_dict(convert_ldm_unet_checkpoint(sd, dict(TINY_DIFFUSERS.unet)))
    text = CLIPTextModel(CLIPTextConfig(**TINY_DIFFUSERS.text))
    prefix = "cond_stage_model.transformer.text_model."
    text.load_state_dict({k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)})
    pipe = StableDiffusionPipeline(vae=None, text_encoder=text, tokenizer=None, unet=unet, scheduler=ddpm_scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(path), adapter_name="joe")
    pipe.set_adapters(["joe"], adapter_weights=[0.7])
    merged = with_lora(tiny_model, read_lora(path), 0.7)
    x, t, context = torch.randn(2, 4, 8, 8), torch.tensor([10, 600]), torch.randn(2, 77, 32)
    ids = torch.randint(0, 49408, (2, 77), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pairs = {"unet": (merged.unet(x, t, context), pipe.unet(x, t, context).sample, tiny_model.unet(x, t, context)),
                 "text": (merged.text_encoder(ids), pipe.text_encoder(ids).last_hidden_state,
                          tiny_model.text_encoder(ids))}
    for part, (ours, theirs, base) in pairs.items():
        assert (ours - base).abs().max() > 0.05, part  # the LoRA changes the output far more than the tolerance
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0, msg=part)
