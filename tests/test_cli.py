import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FakeProbe
from sdtrainer import preflight
from sdtrainer.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "demo.safetensors"
    assert main(["demo-model", "--out", str(path)]) == 0
    return path


def test_demo_model_is_a_few_megabytes_and_loads(demo_model):
    from sdtrainer.checkpoint import load_model

    assert 1 < demo_model.stat().st_size / 2**20 < 10
    model, info = load_model(demo_model)
    assert info.config.name == "tiny" or info.config.unet.model_channels == 32


def test_generate_writes_pngs_with_parameters_and_a_grid(demo_model, tmp_path, capsys):
    code = main(["generate", "--model", str(demo_model), "--prompt", "a photo of sks person", "--negative", "blurry",
                 "--sampler", "ddim", "--steps", "3", "--seed", "5", "--width", "64", "--height", "48",
                 "--batch", "2", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["00000-5.png", "00001-6.png", "grid-00000-5.png"]
    with Image.open(printed[1]) as img:
        assert img.size == (64, 48)
        assert img.info["parameters"].splitlines() == [
            "a photo of sks person", "Negative prompt: blurry",
            "Steps: 3, Sampler: DDIM, CFG scale: 7, Seed: 6, Size: 64x48, Model: demo"]


@pytest.mark.parametrize("args,words", [
    (["--model", "missing.safetensors"], "not found"),
    (["--width", "50"], "multiple of 16"),
    (["--eta", "-1"], "Eta must be between 0 and 1"),
    (["--seed", "99999999999999999999999"], "seed must be a whole number"),
])
def test_generate_errors_are_one_line_and_exit_non_zero(demo_model, tmp_path, capsys, args, words):
    base = ["generate", "--model", str(demo_model), "--prompt", "x", "--steps", "1", "--width", "64",
            "--height", "64", "--out", str(tmp_path)]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_unknown_sampler_is_refused_by_the_module_entry_point(demo_model, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sdtrainer", "generate", "--model", str(demo_model), "--prompt", "x",
                           "--sampler", "plms", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "invalid choice: 'plms'" in proc.stderr


def test_a_file_that_is_not_a_model_gives_one_line(tmp_path, capsys):
    bogus = tmp_path / "notes.safetensors"
    bogus.write_bytes(b"hello, not a checkpoint")
    assert main(["generate", "--model", str(bogus), "--prompt", "x", "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_train_then_resume_from_the_command_line(demo_file, subject_photos, class_photos, tmp_path, capsys):
    run = tmp_path / "joe"
    common = ["--set", "resolution=64", "--set", "precision=32", "--set", "preview_every=0",
              "--set", "preview_prompts=[]", "--set", "save_every=2"]
    code = main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--reg-images", str(class_photos), "--steps", "2", "--preset", "12gb",
                 "--set", "optimizer=adamw", "--device", "cpu", "--out", str(run), *common])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "step 2/2 [" in err and "it/s" in err and "Finished 2 steps" in err
    assert "\n\n" not in err  # a line each: the log's lines, the files, and the progress line rewritten in place
    assert (run / "joe-final.safetensors").is_file()
    assert "preset: 12gb" in (run / "config.yaml").read_text()  # the preset, kept for resume and the OOM advice
    # more steps on the same run: resume reads the run's config.yaml, --set changes the step count
    assert main(["train", "--resume", str(run), "--set", "steps=4"]) == 0
    assert "Finished 4 steps" in capsys.readouterr().err


@pytest.mark.parametrize("args,words", [
    (["--set", "stesp=3"], "did you mean 'steps'"),
    (["--token", ""], "Set token"),
    (["--preset", "huge"], "Unknown preset"),
    (["--set", "preview_seeds=[1, 2"], "Could not read the overrides"),
    (["--token", "two words"], "must be one word"),
    (["--out", "/proc/sdtrainer-run"], "Cannot create the run folder"),
])
def test_train_setting_errors_are_one_line(demo_file, subject_photos, tmp_path, capsys, args, words):
    base = ["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
            "--class-word", "thing", "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(base + args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_train_on_cuda_without_a_gpu_is_refused_with_the_gate_report(demo_file, subject_photos, tmp_path, capsys,
                                                                   no_gpu):
    code = main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--out", str(tmp_path / "run")])
    assert code == 1
    assert "Training cannot start" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_preflight_prints_the_report_and_fails_without_a_gpu(capsys, no_gpu):
    assert main(["preflight", "--preset", "12gb"]) == 1
    out = capsys.readouterr().out
    assert "Training cannot start" in out and "No CUDA GPU was found" in out


@pytest.mark.gpu
def test_preflight_reads_the_real_gpu(capsys):
    code = main(["preflight", "--preset", "8gb"])
    out = capsys.readouterr().out
    assert code == 0, out  # the GPU machine's card is free: the 8gb preset asks for 7.5 GiB
    assert torch.cuda.get_device_name(0) in out and "Training cannot start" not in out


@pytest.mark.gpu
def test_train_on_the_gpu_from_the_command_line(demo_file, subject_photos, tmp_path, capsys):
    run = tmp_path / "cuda-run"
    code = main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--steps", "2", "--class-images", "0", "--out", str(run),
                 "--set", "resolution=64", "--set", "preview_every=0", "--set", "save_every=0"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Finished 2 steps" in err and (run / "cuda-run-final.safetensors").is_file()
    assert "device: cuda" in (run / "config.yaml").read_text()


def test_prune_shrinks_a_training_file_and_never_touches_the_input(demo_file, tmp_path, capsys):
    from sdtrainer.checkpoint import read_state_dict, save_checkpoint

    big = tmp_path / "last.ckpt"
    weights = read_state_dict(demo_file)
    save_checkpoint({k: v.float() for k, v in weights.items()}, big, dtype=torch.float32)
    before = big.read_bytes()
    assert main(["prune", str(big), str(tmp_path / "small"), "--format", "ckpt"]) == 0
    assert "->" in capsys.readouterr().out
    small = tmp_path / "small.ckpt"
    assert small.stat().st_size < 0.6 * big.stat().st_size and big.read_bytes() == before
    assert main(["prune", str(big), str(small)]) == 2  # exists: refused without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_class_images_are_resumable(demo_file, tmp_path, capsys):
    args = ["class-images", "--model", str(demo_file), "--class-word", "dog", "--out", str(tmp_path),
            "--steps", "2", "--resolution", "64"]
    assert main(args + ["--count", "1"]) == 0
    first = (tmp_path / "class-00000.png").read_bytes()
    assert main(args + ["--count", "3"]) == 0
    printed = capsys.readouterr()
    assert "class images of dog 1/3 [" in printed.err  # the one already there counts from the start
    assert "class images of dog 3/3 [" in printed.err and "ETA 0:00:00" in printed.err
    assert "3 class images" in printed.out
    assert (tmp_path / "class-00000.png").read_bytes() == first  # kept, not redone


def test_train_shows_the_class_images_progress_before_the_steps(demo_file, subject_photos, tmp_path, capsys):
    code = main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--class-images", "3", "--steps", "1", "--device", "cpu",
                 "--out", str(tmp_path / "run"), "--set", "resolution=64", "--set", "preview_prompts=[]"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.index("class images of thing 0/3 [") < err.index("class images of thing 3/3 [") < err.index("step 1/1")
    assert len(list((tmp_path / "run" / "class_images").glob("class-*.png"))) == 3


@pytest.mark.parametrize("preset_value, expected", [(None, "expandable_segments:True"),
                                                    ("max_split_size_mb:128", "max_split_size_mb:128")])
def test_importing_sdtrainer_asks_for_expandable_cuda_segments_unless_set(preset_value, expected):
    """Set before torch touches CUDA (the graphed 8gb preset's peak depends on it); the user's own value is kept."""
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_CUDA_ALLOC_CONF"}
    if preset_value:
        env["PYTORCH_CUDA_ALLOC_CONF"] = preset_value
    out = subprocess.run([sys.executable, "-c", "import os, sdtrainer; print(os.environ['PYTORCH_CUDA_ALLOC_CONF'])"],
                         env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == expected


def test_a_run_folder_that_is_a_file_is_one_line(demo_file, subject_photos, tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--device", "cpu", "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file, not a folder" in err and len(err.splitlines()) == 1 and taken.read_text() == "mine"


@pytest.mark.parametrize("args", [["--count", "-1"], ["--count", "lots"], ["--steps", "0"]])
def test_class_image_counts_below_one_are_refused(demo_file, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(["class-images", "--model", str(demo_file), "--class-word", "thing", "--out", str(tmp_path / "reg"),
              *args])
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err and not (tmp_path / "reg").exists()


def test_a_folder_given_as_the_output_file_is_refused_not_written_beside(demo_file, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["demo-model", "--out", str(folder)]) == 2
    assert main(["prune", str(demo_file), str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("is a folder; give a file name") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any(folder.iterdir())


@pytest.mark.parametrize("damage", ["truncated", "malicious"])
def test_a_damaged_state_on_resume_is_one_line_without_torchs_advice(demo_file, subject_photos, tmp_path, capsys,
                                                                     damage):

    run = tmp_path / "joe"
    assert main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--device", "cpu", "--steps", "1", "--out", str(run),
                 "--set", "resolution=64", "--set", "precision=32", "--set", "preview_every=0",
                 "--set", "preview_prompts=[]", "--set", "prior_loss_weight=0", "--set", "class_images=0"]) == 0
    state = run / "state" / "last.ckpt"
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:5000])
    else:
        class Evil:
            def __reduce__(self):
                return os.system, ("touch " + str(tmp_path / "pwned"),)
        torch.save({"state_dict": {}, "evil": Evil()}, state)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "steps=2"]) == 1
    err = capsys.readouterr().err
    assert "Cannot resume from" in err and "weights_only" not in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_extract_lora_writes_the_file_and_prints_what_each_rank_keeps(base_and_tuned, tmp_path, capsys):
    from sdtrainer.lora import lora_layers, read_lora
    from sdtrainer.checkpoint import load_model

    base, tuned = base_and_tuned
    assert main(["extract-lora", str(base), str(tuned), str(tmp_path / "joe"), "--rank", "1", "--conv-rank", "1",
                 "--text-encoder"]) == 0
    out = capsys.readouterr().out
    n = len(lora_layers(load_model(base)[0]))
    assert f"joe.safetensors: {n} layers at rank 1 keep" in out and "layers that keep the least:" in out
    assert len(read_lora(tmp_path / "joe.safetensors").modules) == n
    for args, words in (([str(tmp_path / "joe.safetensors"), str(tuned), str(tmp_path / "x.safetensors")],
                         "This is a LoRA/LyCORIS file"),
                        ([str(base), str(tuned), str(tmp_path / "y.safetensors"), "--energy", "0"], "above 0"),
                        ([str(base), str(tuned), str(tmp_path / "joe.safetensors")], "already exists")):
        assert main(["extract-lora", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_generate_with_a_lora_records_it_and_changes_the_image(base_and_tuned, tmp_path, capsys):
    from sdtrainer.lora import lora_hash

    base, tuned = base_and_tuned
    lora = tmp_path / "joe.safetensors"
    assert main(["extract-lora", str(base), str(tuned), str(lora), "--rank", "2"]) == 0
    images = {}
    for name, extra in (("plain", []), ("lora", ["--lora", str(lora), "--lora-weight", "0.5"])):
        assert main(["generate", "--model", str(base), "--prompt", "ohwx person", "--steps", "2", "--seed", "3",
                     "--width", "64", "--height", "64", "--out", str(tmp_path / name), *extra]) == 0
        path = capsys.readouterr().out.split()[-1]
        with Image.open(path) as img:
            images[name] = (np.asarray(img, dtype=int), img.info["parameters"])
    assert np.abs(images["lora"][0] - images["plain"][0]).max() > 10
    assert images["lora"][1].startswith("ohwx person <lora:joe:0.5>\n")
    assert f'Lora hashes: "joe: {lora_hash(lora)}"' in images["lora"][1]
    assert main(["generate", "--model", str(base), "--prompt", "x", "--lora", str(base), "--out", str(tmp_path)]) == 2
    assert "is a model, not a LoRA" in capsys.readouterr().err

@pytest.mark.slow
def test_train_on_two_processes_then_resume_on_one(demo_file, subject_photos, class_photos, tmp_path, capsys):
    """--devices 2 on the CPU: two gloo processes, as two GPUs would be; --resume --devices 1 goes on in this one."""
    run = tmp_path / "joe"
    code = main(["train", "--model", str(demo_file), "--images", str(subject_photos), "--token", "ohwx",
                 "--class-word", "thing", "--reg-images", str(class_photos), "--steps", "2", "--device", "cpu",
                 "--devices", "2", "--set", "resolution=64", "--set", "preview_prompts=[]", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Starting 2 processes" in err and "All 2 processes ended with the same weights." in err
    assert "step 2/2 [" in err and "Finished 2 steps" in err and (run / "joe-final.safetensors").is_file()
    assert main(["train", "--resume", str(run), "--devices", "1", "--set", "steps=3"]) == 0
    err = capsys.readouterr().err
    assert "saved on 2 process(es), and it continues on 1" in err and "Finished 3 steps" in err


def test_preflight_checks_as_many_gpus_as_asked(capsys, monkeypatch):
    monkeypatch.setattr(preflight, "NvmlProbe", lambda: FakeProbe(free=23.0, busy=False))  # one free RTX 3090
    assert main(["preflight", "--devices", "1"]) == 0
    assert main(["preflight", "--devices", "2"]) == 1
    assert "devices is 2, but the driver sees 1 GPU(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["preflight", "--devices", "0"])
    assert "--devices: must be 1 or more, got 0" in capsys.readouterr().err
