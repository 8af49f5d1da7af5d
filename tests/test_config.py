"""sdtrainer.config: presets, precedence, type checks that name the key, and the resolved config file."""
import dataclasses
import re
import typing

import pytest

from sdtrainer.config import (PRESET_VRAM_GIB, Concept, ConfigError, Device, OptimizerName, Precision, Range,
                              TrainConfig, check_config, defaults_for, field_range, load_config, lower_preset,
                              preset_names, preview_prompts, process_count, required_free_gib, save_config,
                              uses_prior)
from sdtrainer.sampling import MAX_STEPS

RUN = {"model": "m.safetensors", "images": "photos", "token": "ohwx", "class_word": "person"}


def test_every_preset_loads_and_has_a_vram_figure():
    assert preset_names() == ["12gb", "24gb", "8gb", "classic", "lora-8gb"]
    for name in preset_names():
        cfg = load_config(name)
        assert cfg.preset == name and name in PRESET_VRAM_GIB


def test_presets_say_what_they_are():
    default, small, tiny, classic = load_config(), load_config("12gb"), load_config("8gb"), load_config("classic")
    assert default.preset == "24gb" and default.precision is Precision.BF16_MIXED
    assert default.optimizer is OptimizerName.ADAMW and not default.gradient_checkpointing
    # 12gb: bf16 weights (stochastically rounded updates), 8-bit states, graphed; 8gb adds checkpointing
    assert (small.precision, small.optimizer, small.cuda_graphs, small.gradient_checkpointing) == (
        Precision.BF16_TRUE, OptimizerName.ADAMW8BIT, True, False)
    assert (tiny.precision, tiny.optimizer, tiny.cuda_graphs, tiny.gradient_checkpointing) == (
        Precision.BF16_TRUE, OptimizerName.ADAMW8BIT, True, True)
    assert default.learning_rate == small.learning_rate == tiny.learning_rate == 1e-6
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
    ({"steps": 0}, "steps must be between 1 and 100000"),
    ({"ema_decay": 1.5}, "ema_decay"),
    ({"cache_latents": False}, "cache_latents"),
])
def test_check_config_says_what_to_set(change, words):
    with pytest.raises(ConfigError, match=words):
        check_config(load_config(values={**RUN, **change}))


RANGED = [(cls, f.name, f.metadata["range"], int in (f.type, *typing.get_args(f.type)))
          for cls in (TrainConfig, Concept) for f in dataclasses.fields(cls) if "range" in f.metadata]


def config_with(cls: type, name: str, value) -> TrainConfig:
    if cls is Concept:
        return load_config(values={**RUN, "concepts": [{"token": "effy", "class_word": "dog", "images": "e",
                                                        name: value}]})
    return load_config(values={**RUN, name: value})


@pytest.mark.parametrize("cls, name, accepted, whole", RANGED, ids=[f"{c.__name__}.{n}" for c, n, *_ in RANGED])
def test_check_config_enforces_each_declared_range(cls, name, accepted, whole):
    step = 1 if whole else (accepted.high - accepted.low) * 1e-3
    for value in (accepted.low - step, accepted.low, accepted.low + step, accepted.high - step, accepted.high,
                  accepted.high + step):
        cfg = config_with(cls, name, value)
        if value in accepted:
            check_config(cfg)
        else:
            with pytest.raises(ConfigError, match=re.escape(f"{name} must be {accepted.described()}")):
                check_config(cfg)


def test_ranges_that_the_ui_and_the_command_line_used_to_disagree_on():
    assert field_range("learning_rate") == Range(0, 1e-2, low_open=True)
    assert field_range("steps") == Range(1, 100_000)
    with pytest.raises(ConfigError, match=r"learning_rate must be above 0 and at most 0\.01, got 0\.02"):
        check_config(load_config(values={**RUN, "learning_rate": 0.02}))
    with pytest.raises(ConfigError, match="steps must be between 1 and 100000, got 200000"):
        check_config(load_config(values={**RUN, "steps": 200_000}))
    assert field_range("preview_steps").high == MAX_STEPS and field_range("resolution") is None


def test_what_follows_from_the_config():
    cfg = load_config(values={**RUN, "ema": True})
    assert required_free_gib(cfg) > PRESET_VRAM_GIB["24gb"]  # the EMA copy needs room
    assert required_free_gib(load_config(overrides=["required_free_gib=9.5"])) == 9.5
    assert preview_prompts(cfg) == ["ohwx person", "a portrait of ohwx person, oil painting", "person"]
    assert uses_prior(cfg) and not uses_prior(load_config(values={**RUN, "prior_loss_weight": 0.0}))
    # the out-of-memory advice keeps the method: no LoRA offered for a whole UNet's run
    assert [lower_preset(p) for p in ("24gb", "12gb", "8gb", "lora-8gb")] == ["12gb", "8gb", None, None]
    assert load_config(values={"device": "cpu"}).device is Device.CPU


@pytest.mark.parametrize("preset", preset_names())
def test_the_cpu_gets_a_short_run_in_every_preset_and_the_gpu_the_recipe(preset):
    gpu, cpu = load_config(preset), load_config(preset, device_defaults=defaults_for(Device.CPU))
    assert defaults_for(Device.CUDA) == {}
    assert cpu.device is Device.CPU and cpu.precision is Precision.FP32 and not cpu.cuda_graphs
    assert cpu.steps * 10 <= gpu.steps and cpu.class_images * 10 <= gpu.class_images
    assert cpu.class_image_steps < gpu.class_image_steps and cpu.preview_steps < gpu.preview_steps
    assert cpu.preview_every < cpu.steps and cpu.resolution == 64
    assert cpu.optimizer is gpu.optimizer and cpu.learning_rate == gpu.learning_rate  # the rest is the preset's


def test_the_users_settings_win_over_the_cpu_defaults(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("steps: 7\n")
    cpu = defaults_for(Device.CPU)
    cfg = load_config("24gb", user, ["preview_every=3"], values={"class_images": 2}, device_defaults=cpu)
    assert (cfg.steps, cfg.preview_every, cfg.class_images, cfg.save_every) == (7, 3, 2, cpu["save_every"])


@pytest.mark.parametrize("override, expected", [("devices=2", 2), ("devices=all", "all"), ("devices=1", 1)])
def test_devices_is_a_number_of_gpus_or_all(override, expected, tmp_path):
    cfg = load_config(values=RUN, overrides=[override, "cuda_graphs=false"])
    check_config(cfg)
    assert cfg.devices == expected and load_config(yaml_path=save_config(cfg, tmp_path / "c.yaml")) == cfg
    assert process_count(cfg, 4) == (4 if expected == "all" else expected)


@pytest.mark.parametrize("values, words", [
    ({"devices": 0}, "devices must be a whole number from 1 (the GPUs to train on) or all, got 0."),
    ({"devices": "two"}, "devices must be a whole number from 1 (the GPUs to train on) or all, got 'two'."),
    ({"devices": 2, "cuda_graphs": True}, "cuda_graphs works on one GPU only: set cuda_graphs to false to train on "
                                          "2 GPUs"),
    ({"devices": "all", "device": "cpu"}, "devices all means every GPU; on the CPU, give a number of processes"),
])
def test_devices_that_cannot_train_are_refused_saying_what_to_set(values, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        check_config(load_config(values={**RUN, **values}))


def test_the_presets_that_replay_cuda_graphs_train_on_several_gpus_without_them():
    for preset in ("24gb", "12gb", "8gb"):
        with pytest.raises(ConfigError, match="cuda_graphs works on one GPU only"):
            check_config(load_config(preset, values={**RUN, "devices": 2}))
        check_config(load_config(preset, values={**RUN, "devices": 2, "cuda_graphs": False}))
    check_config(load_config("classic", values={**RUN, "devices": "all"}))
    with pytest.raises(ConfigError, match="bad value for 'devices'"):
        load_config(overrides=["devices=1.5"])
