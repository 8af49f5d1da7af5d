"""The web app end to end through gradio_client: build_app on tmp folders with the demo model, launched
on 127.0.0.1 with a free port; each tab's main action, a short CPU training, and bad input.

Every event has an api_name, so each test calls what a button would. Messages come back as the
AppError of a gr.Error (in the language of the request: the `sdtrainer_lang` cookie).
"""
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from sdtrainer.checkpoint import load_model
from sdtrainer.ui.app import build_app
from sdtrainer.ui.dataset_tab import DatasetTab  # noqa: F401 - importable on its own
from sdtrainer.ui.i18n import LANGUAGES, STRINGS
from sdtrainer.ui.training_tab import SETTINGS

TRAIN_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo(path: Path, seed: int, size=(160, 200)) -> Path:
    """A sharp, distinct colour photo (random texture with a coloured block)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[0], size[1], 3)) * 255).astype("uint8")
    pixels[40:120, 60:140] = [200, 40 * seed % 255, 80]
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    blocks = build_app(root / "models", root / "outputs", lang=None)
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield blocks
    blocks.close()


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.local_url, verbose=False)


@pytest.fixture(scope="module")
def french(app) -> Client:
    return Client(app.local_url, verbose=False, headers={"Cookie": "sdtrainer_lang=fr"})


@pytest.fixture(scope="module")
def demo_model(app) -> str:
    path = app.state.outputs_dir / "demo" / "sdtrainer-demo-tiny.safetensors"
    assert path.is_file()
    return str(path)


@pytest.fixture(scope="module")
def project(client, tmp_path_factory) -> str:
    """A project 'joe' with 5 prepared photos, token ohwx, class person, 64 px."""
    src = tmp_path_factory.mktemp("photos")
    files = [photo(src / f"joe{i}.png", i) for i in range(5)]
    (src / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (src / "notes.txt").write_text("not a photo")
    client.predict(new_name="joe", api_name="/dataset_create")
    client.predict(name="joe", token="ohwx", class_word="person", resolution=64, api_name="/dataset_save_settings")
    _, added = client.predict(name="joe", files=[handle_file(p) for p in files + [src / "broken.jpg",
                                                                                 src / "notes.txt"]],
                              api_name="/dataset_add_photos")
    assert "6 photos" in added  # the .txt is skipped, the broken .jpg is caught when preparing
    return "joe"


def settings(client: Client, **overrides) -> dict:
    values = client.predict(preset="24gb", api_name="/training_preset_values")
    return {**dict(zip([s.name for s in SETTINGS], values)), **overrides}


def test_every_message_exists_in_english_and_french():
    code = "\n".join(p.read_text() for p in Path("sdtrainer/ui").glob("*.py"))
    used = set(re.findall(r'(?:T|say|UIError)\(\s*"([a-z0-9_]+)"', code))
    used |= {f"cfg_{s.name}" for s in SETTINGS} | {f"cfg_{s.name}_info" for s in SETTINGS}
    used |= {f"issue_{c}" for c in ("unreadable", "too_small", "low_resolution", "cmyk", "alpha", "exif_rotated",
                                    "grayscale", "blurry", "near_duplicate")}
    used |= {f"status_{s}" for s in ("idle", "preparing", "running", "paused", "stopping", "finished", "failed")}
    assert not used - set(STRINGS), "keys used but not defined"
    assert all(set(entry) == set(LANGUAGES) for entry in STRINGS.values())


def test_demo_model_and_banner(app, demo_model):
    assert not any(app.state.models_dir.iterdir())  # no checkpoint: the demo model is made and announced
    banners = [c for c in app.config["components"] if "sdt-banner" in (c["props"].get("elem_classes") or [])]
    assert banners and banners[0]["props"]["visible"] is True
    assert app.state.default_model() == demo_model


def test_dataset_prepare_caption_remove(client, project):
    gallery, report, status = client.predict(name=project, crop="center", api_name="/dataset_prepare")
    assert len(gallery) == 5 and all(Path(item["image"]).suffix == ".png" for item in gallery)
    assert "broken.jpg" in report and "5 of 6 images prepared" in status
    gallery, message = client.predict(name=project, image="joe0.png", caption="ohwx person at the beach",
                                      api_name="/dataset_save_caption")
    assert "saved" in message and "at the beach" in " ".join(item["caption"] for item in gallery)
    gallery, *_, message = client.predict(name=project, image="joe4.png", api_name="/dataset_remove")
    assert len(gallery) == 4 and "removed" in message
    gallery, *_ = client.predict(name=project, crop="face", api_name="/dataset_prepare")
    assert len(gallery) == 4  # the removed photo stays out; the caption survives preparing again
    assert any("at the beach" in item["caption"] for item in gallery)


def test_class_images_resume(client, project, demo_model):
    gallery, text = client.predict(name=project, model=demo_model, count=2, api_name="/dataset_generate_class_images")
    assert len(gallery) == 2 and "2 class images" in text
    gallery, text = client.predict(name=project, model=demo_model, count=3, api_name="/dataset_generate_class_images")
    assert len(gallery) == 3  # the two made before are kept, one more is drawn


def test_generate_writes_png_with_parameters(app, client, demo_model):
    gallery, info, status = client.predict(model=demo_model, prompt="a photo of ohwx person", batch_size=2,
                                           token="ohwx", class_word="person", negative_prompt="blurry",
                                           sampler="euler_a", steps=6, cfg_scale=7, seed=7, width=64, height=64,
                                           api_name="/test_generate")
    assert len(gallery) == 2 and "Seed: 7" in info
    returned = Image.open(gallery[0]["image"])
    assert "Negative prompt: blurry" in returned.info["parameters"]
    written = sorted((app.state.outputs_dir / "txt2img").glob("*.png"))
    assert written and "Seed: 7" in Image.open(written[0]).info["parameters"]


def test_comparison_grid(client, demo_model):
    image, status = client.predict(models=[demo_model, demo_model], prompts="ohwx person\na person", token="ohwx",
                                   class_word="person", negative_prompt="", sampler="euler", steps=3, cfg_scale=7,
                                   seed=3, width=64, height=64, api_name="/test_compare")
    grid = Image.open(image)
    assert grid.width > 2 * 192 and grid.height > 2 * 192 and "seed 3" in status


def test_prune_demo_model_to_fp16(app, client, demo_model):
    text, _ = client.predict(source=demo_model, upload=None, half=True, ema="drop", fmt=".safetensors",
                             out_name="demo-small", overwrite=False, api_name="/prune")
    out = Path(demo_model).with_name("demo-small.safetensors")
    assert "loads correctly" in text and out.is_file()
    _, info = load_model(out)
    assert str(info.dtype) == "torch.float16"
    with pytest.raises(AppError, match="already exists"):
        client.predict(source=demo_model, upload=None, half=True, ema="drop", fmt=".safetensors",
                       out_name="demo-small", overwrite=False, api_name="/prune")


def test_short_cpu_training_shows_previews(client, project, demo_model):
    params = settings(client, steps=4, save_every=2, preview_every=2, preview_steps=3, learning_rate=1e-4,
                      class_images=0)
    message, run = client.predict(project=project, model=demo_model, preset="24gb", run_name="", resume_run=False,
                                  api_name="/training_start", **params)
    assert "started" in message
    client.predict(api_name="/training_pause")  # held in preparation: a second Start must be refused
    with pytest.raises(AppError, match="already running"):
        client.predict(project=project, model=demo_model, preset="24gb", run_name="other", resume_run=False,
                       api_name="/training_start", **params)
    client.predict(api_name="/training_resume")
    previews, deadline = [], time.time() + TRAIN_TIMEOUT_S
    while time.time() < deadline:
        text, _, _, gallery, log = client.predict(api_name="/training_state")
        if isinstance(gallery, dict) and gallery.get("value"):
            previews = gallery["value"]
        if "Finished" in text or "Failed" in text:
            break
        time.sleep(0.5)
    assert "Finished" in text, log
    assert {p["caption"].split(" · ")[0] for p in previews} >= {"step 0", "step 2", "step 4"}
    assert client.predict(api_name="/training_stop") == "No training is running."


def test_bad_input_gives_messages_and_the_app_keeps_working(client, french, demo_model, tmp_path):
    cases = [
        (dict(model=demo_model, prompt="  ", batch_size=1, token="", class_word="", negative_prompt="",
              sampler="euler_a", steps=5, cfg_scale=7, seed=1, width=64, height=64, api_name="/test_generate"),
         "Write a prompt first", "Écrivez d'abord un prompt"),
        (dict(model=demo_model, prompt="x", batch_size=1, token="", class_word="", negative_prompt="",
              sampler="euler_a", steps=5, cfg_scale=7, seed=1, width=72, height=64, api_name="/test_generate"),
         "use a multiple of 16", "utilisez un multiple de 16"),
        (dict(model=str(tmp_path / "gone.safetensors"), prompt="x", batch_size=1, token="", class_word="",
              negative_prompt="", sampler="euler_a", steps=5, cfg_scale=7, seed=1, width=64, height=64,
              api_name="/test_generate"), "is gone", "a disparu"),
        (dict(new_name="../evil", api_name="/dataset_create"), "cannot be a project name", "ne peut pas"),
        (dict(name=None, files=None, api_name="/dataset_add_photos"), "Pick or create a project", "Choisissez"),
        (dict(source=None, upload=None, half=True, ema="drop", fmt=".safetensors", out_name="", overwrite=False,
              api_name="/prune"), "Choose a checkpoint", "Choisissez un modèle"),
    ]
    for kwargs, english, french_text in cases:
        with pytest.raises(AppError, match=re.escape(english)):
            client.predict(**kwargs)
        with pytest.raises(AppError, match=re.escape(french_text)):
            french.predict(**kwargs)
    with pytest.raises(AppError, match="greater than maximum"):  # Gradio's own range check (English only)
        client.predict(model=demo_model, prompt="x", batch_size=1, token="", class_word="", negative_prompt="",
                       sampler="euler_a", steps=500, cfg_scale=7, seed=1, width=64, height=64, api_name="/test_generate")
    fake = tmp_path / "notes.ckpt"
    fake.write_text("this is not a checkpoint")
    with pytest.raises(AppError, match="notes.ckpt"):
        client.predict(source=None, upload=handle_file(fake), half=True, ema="drop", fmt=".safetensors", out_name="",
                       overwrite=False, api_name="/prune")
    assert french.predict(api_name="/test_stop") == "Rien n'est en cours."
    gallery, _, _ = client.predict(model=demo_model, prompt="ohwx person", batch_size=1, token="", class_word="",
                                   negative_prompt="", sampler="euler_a", steps=3, cfg_scale=7, seed=1, width=64,
                                   height=64, api_name="/test_generate")
    assert len(gallery) == 1
