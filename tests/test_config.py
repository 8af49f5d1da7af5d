"""sdtrainer.config: presets, precedence, type checks that name the key, and the resolved config file."""
import pytest

from sdtrainer.config import (PRESET_VRAM_GIB, ConfigError, Device, OptimizerName, Precision, check_config,
                              load_config, lower_preset, preset_names, preview_prompts, required_free_gib,
                              save_config, uses_prior)

RUN = {"model": "m.safetensors", "images": "photos", "token": "ohwx", "class_word": "person"}


def test_every_preset_loads_and_has_a_vram_figure():
    assert preset_names() == ["12gb", "24gb", "8gb", "classic"]
    for name in preset_names():
        cfg = load_config(name)
        assert cfg.preset == name and name in PRESET_VRAM_GIB


def test_presets_say_what_they_are():
    default, small, tiny, classic = load_config(), load_config("12gb"), load_config("8gb"), load_config("classic")
    assert default.preset == "24gb" and default.precision is Precision.BF16_MIXED
    assert default.optimizer is OptimizerName.ADAMW and not default.gradient_checkpointing
    assert small.optimizer is OptimizerName.ADAMW8BIT and small.gradient_checkpointing
    assert tiny.precision is Precision.BF16_TRUE
    # the old repos' recipe: UNet and text encoder unfrozen, fp32, lr 1e-6, batch 1, prior weight 1, ~2000 steps
    assert (classic.train_text_encoder, classic.precision, classic.learning_rate, classic.batch_size,
            classic.prior_loss_weight, classic.steps) == (True, Precision.FP32, 1e-6, 1, 1.0, 2000)


def test_precedence_preset_then_yaml_then_values_then_overrides(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("steps: 300\nlearning_rate: 5.0e-6\nrepeats: 3\n")
    cfg = load_config("12gb", user, ["steps=400", "ema=true"], values={"steps": 350, "repeats": 4, **RUN})
    assert (cfg.steps, cfg.learning_rate, cfg.repeats, cfg.ema) == (400, 5e-6, 4, True)
    assert cfg.optimizer is OptimizerName.ADAMW8BIT  # from the preset, untouched


@pytest.mark.parametrize("overrides,words", [
    (["stesp=10"], ["unknown setting 'stesp'", "did you mean 'steps'"]),
    (["steps=many"], ["'steps'"]),
    (["precision=fp8"], ["'precision'", "bf16-mixed"]),
    (["steps"], ["key=value"]),
    (["preview_seeds=[1, 2"], ["Could not read the overrides", "preview_seeds=[1, 2"]),
])
def test_a_wrong_key_or_type_fails_at_load_naming_it(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 1\n")
    with pytest.raises(ConfigError, match="bad.yaml.*'learning_rat'.*'learning_rate'"):
        load_config(yaml_path=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(yaml_path=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="Unknown preset 'huge'"):
        load_config("huge")


def test_the_resolved_config_reloads_unchanged(tmp_path):
    cfg = load_config("8gb", overrides=["steps=123", "preview_seeds=[1,2]"], values=RUN)
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert "precision: bf16-true" in path.read_text()
    assert load_config(yaml_path=path) == cfg  # its own preset is read back from the file


@pytest.mark.parametrize("change,words", [
    ({"token": ""}, "Set token"),
    ({"token": "two words"}, "must be one word"),
    ({"resolution": 500}, "multiple of 64"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"ema_decay": 1.5}, "ema_decay"),
    ({"cache_latents": False}, "cache_latents"),
])
def test_check_config_says_what_to_set(change, words):
    with pytest.raises(ConfigError, match=words):
        check_config(load_config(values={**RUN, **change}))


def test_what_follows_from_the_config():
    cfg = load_config(values={**RUN, "ema": True})
    assert required_free_gib(cfg) > PRESET_VRAM_GIB["24gb"]  # the EMA copy needs room
    assert required_free_gib(load_config(overrides=["required_free_gib=9.5"])) == 9.5
    assert preview_prompts(cfg) == ["ohwx person", "a portrait of ohwx person, oil painting", "person"]
    assert uses_prior(cfg) and not uses_prior(load_config(values={**RUN, "prior_loss_weight": 0.0}))
    assert [lower_preset(p) for p in ("24gb", "12gb", "8gb")] == ["12gb", "8gb", None]
    assert load_config(values={"device": "cpu"}).device is Device.CPU
