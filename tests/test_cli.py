import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

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
