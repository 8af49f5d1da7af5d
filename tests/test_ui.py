"""The web app end to end through gradio_client: build_app on tmp folders with the demo model, launched
on 127.0.0.1 with a free port; each tab's main action, a short CPU training, and bad input.

Every event has an api_name, so each test calls what a button would. Messages come back as the
AppError of a gr.Error (in the language of the request: the `sdtrainer_lang` cookie).
"""
import ast
import dataclasses
import hashlib
import itertools
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from safetensors.torch import load_file, save_file
import torch

from conftest import FakeProbe, free_port
from ldm.model import TINY, StableDiffusion
from sdtrainer.checkpoint import CheckpointError, load_model, read_metadata, save_checkpoint
from sdtrainer.concepts import run_subjects
from sdtrainer.config import Concept, ConfigError, check_config, load_config
from sdtrainer.captions import caption_for
from sdtrainer.messages import Message
from sdtrainer.preflight import check_gpu
from sdtrainer.session import oom_message
from sdtrainer.trainer import RunPaths
from sdtrainer.ui.app import SESSIONS_KEPT, build_app
from sdtrainer.ui.dataset_tab import DatasetTab  # noqa: F401 - importable on its own
from sdtrainer.session import SessionState, Status
from sdtrainer.ui.common import model_choices, parse_concepts
from sdtrainer.ui.i18n import LANGUAGES, STRINGS, SaidError, Say, UIError
from sdtrainer.ui.projects import Project
from sdtrainer.ui.test_tab import concept_pairs
from sdtrainer.ui.training_tab import SETTING, SETTINGS, TrainingTab, gate_text, parsed, shown

TRAIN_TIMEOUT_S = 120


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
    client.predict(name="joe", crop="center", api_name="/dataset_prepare")
    return "joe"


PROJECT_NUMBERS = itertools.count()


def new_project(client: Client, folder: Path, stem: str, token="ohwx", class_word="person", photos=3) -> str:
    """A new project (a name no other test uses) with `photos` prepared 64 px photos of `token class_word`."""
    name = f"{stem}{next(PROJECT_NUMBERS)}"
    folder = folder / f"{name}-photos"
    folder.mkdir()
    client.predict(new_name=name, api_name="/dataset_create")
    client.predict(name=name, token=token, class_word=class_word, resolution=64, api_name="/dataset_save_settings")
    client.predict(name=name, files=[handle_file(photo(folder / f"{name}-{i}.png", i)) for i in range(photos)],
                   api_name="/dataset_add_photos")
    client.predict(name=name, crop="center", api_name="/dataset_prepare")
    return name


def on_backdrop(path: Path, seed: int) -> Path:
    """A different sharp subject on the same plain grey backdrop each time (a studio series)."""
    image = Image.new("RGB", (128, 128), (225, 225, 220))
    rng = np.random.default_rng(seed)
    image.paste(Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")), (32, 32))
    image.save(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def captions(gallery: list[dict]) -> dict[str, str]:
    """{image name: its card's caption} from a returned gallery (captions end with the name)."""
    return {Path(item["image"]).name: item["caption"] or "" for item in gallery}


def settings(client: Client, **overrides) -> dict:
    values = client.predict(preset="24gb", api_name="/training_preset_values")
    return {**dict(zip([s.name for s in SETTINGS], values)), **overrides}


def test_every_message_exists_in_english_and_french():
    code = "\n".join(p.read_text() for p in Path("sdtrainer/ui").glob("*.py"))
    used = set(re.findall(r'(?:T|say|UIError)\(\s*"([a-z0-9_]+)"', code))
    used |= {f"cfg_{s.name}" for s in SETTINGS} | {f"cfg_{s.name}_info" for s in SETTINGS}
    codes = ("unreadable", "too_small", "low_resolution", "cmyk", "alpha", "exif_rotated", "grayscale", "blurry",
             "near_duplicate", "no_face", "same_background")
    used |= {f"issue_{c}" for c in codes} | {f"issue_short_{c}" for c in codes}
    used |= {f"status_{s.value}" for s in Status}
    used |= {f"ds_caption_from_{rule}" for rule in ("txt", "template", "file_name", "default")}
    assert not used - set(STRINGS), "keys used but not defined"
    for key, entry in STRINGS.items():
        assert set(entry) == set(LANGUAGES) and all(entry.values()), f"{key} lacks a language"
        fields = [set(re.findall(r"{(\w+)}", entry[lang])) for lang in LANGUAGES]
        assert fields[0] == fields[1], f"{key}: the languages fill different fields"


# Keyword arguments that put words on the screen, and components whose first argument is shown as text.
SHOWN_KEYWORDS = {"label", "info", "placeholder", "title", "x_title", "y_title"}
SHOWN_FIRST_ARG = {"Button", "Markdown", "Warning", "Error", "Info", "Tab", "Accordion"}


def literal_words(node: ast.AST) -> str:
    """The letters of a string literal or f-string's literal parts ('' when it is not one)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return ""


def test_no_english_is_hard_coded_in_the_ui():
    """Every word shown goes through T(...) or say(...): no string literal as a label, help, title or message."""
    found = []
    for path in Path("sdtrainer/ui").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "gr"):
                continue
            shown = [k.value for k in node.keywords if k.arg in SHOWN_KEYWORDS]
            if node.func.attr in SHOWN_FIRST_ARG and node.args:
                shown.append(node.args[0])
            found += [f"{path.name}:{node.lineno} gr.{node.func.attr}({literal_words(v)!r})" for v in shown
                      if re.search(r"[A-Za-z]{2}", literal_words(v))]
    assert not found, "hard-coded text:\n" + "\n".join(found)


def test_the_old_readme_tips_are_in_the_help_in_both_languages():
    tips = {  # key: words that must be there, (English, French)
        "te_intro": (("token class", "never the token alone"), ("jeton classe", "jamais le jeton seul")),
        "ds_intro": (("vary backgrounds, clothes, light",), ("variez les fonds, les vêtements, la lumière",)),
        "tr_intro": (("Too few steps", "too many"), ("Trop peu", "trop")),
        "cfg_steps_info": (("Too few", "too many: copies the photos"), ("Trop peu", "recopie les photos")),
        "ds_reg_help": (("prior preservation", "drifts"), ("préservation de l'a priori", "ressembler")),
        "adv_celebrity": (("celebrity",), ("célébrité",)),
    }
    for key, (english, french) in tips.items():
        for lang, words in (("en", english), ("fr", french)):
            for word in words:
                assert word.lower() in STRINGS[key][lang].lower(), (key, lang, word)


def test_demo_model_and_banner(app, demo_model):
    assert not any(app.state.models_dir.iterdir())  # no checkpoint: the demo model is made and announced
    banners = [c for c in app.config["components"] if "sdt-banner" in (c["props"].get("elem_classes") or [])]
    assert banners and banners[0]["props"]["visible"] is True
    assert app.state.default_model() == demo_model
    shown = [str(c["props"].get("value")) for c in app.config["components"] if c["type"] == "markdown"]
    assert '"demo_banner"' in " ".join(shown) and f"`{app.state.models_dir}`" in shown  # where to put a model
    for lang in LANGUAGES:
        assert "v1-5-pruned-emaonly.safetensors" in STRINGS["demo_banner"][lang]


def test_dataset_prepare_caption_remove(client, project):
    gallery, report, status = client.predict(name=project, crop="center", api_name="/dataset_prepare")
    assert len(gallery) == 5 and all(Path(item["image"]).suffix == ".png" for item in gallery)
    assert "broken.jpg" in report and "5 of 6 images prepared" in status
    assert all("no face" in caption for caption in captions(gallery).values())  # class "person", noise photos
    gallery, caption, note, message = client.predict(name=project, image="joe0.png",
                                                     caption="ohwx person at the beach",
                                                     api_name="/dataset_save_caption")
    assert "saved" in message and "at the beach" in " ".join(item["caption"] for item in gallery)
    assert caption == "ohwx person at the beach" and "From its .txt file" in note
    gallery, *_, message = client.predict(name=project, image="joe4.png", api_name="/dataset_remove")
    assert len(gallery) == 4 and "removed" in message
    gallery, *_ = client.predict(name=project, crop="face", api_name="/dataset_prepare")
    assert len(gallery) == 4  # the removed photo stays out; the caption survives preparing again
    assert any("at the beach" in item["caption"] for item in gallery)


def test_cards_warn_when_every_photo_has_the_same_background(client, tmp_path):
    files = [on_backdrop(tmp_path / f"rex{i}.png", i) for i in range(4)]
    client.predict(new_name="rex", api_name="/dataset_create")
    client.predict(name="rex", token="zwx", class_word="dog", resolution=64, api_name="/dataset_save_settings")
    client.predict(name="rex", files=[handle_file(f) for f in files], api_name="/dataset_add_photos")
    gallery, report, _ = client.predict(name="rex", crop="center", api_name="/dataset_prepare")
    cards = captions(gallery)
    assert len(cards) == 4 and all("same background" in c and "no face" not in c for c in cards.values())
    assert "Vary backgrounds" in report
    _, french_report, _ = Client(client.src, verbose=False, headers={"Cookie": "sdtrainer_lang=fr"}).predict(
        name="rex", crop="center", api_name="/dataset_prepare")
    assert "Même fond" in french_report


def test_recrop_one_image_and_keep_it_when_preparing_again(app, client, project):
    prepared = app.state.projects_dir / project / "prepared" / "joe1.png"
    centred = np.asarray(Image.open(prepared))
    gallery, warnings, status = client.predict(name=project, image="joe1.png", where="start",
                                               api_name="/dataset_recrop")
    left = np.asarray(Image.open(prepared))
    assert "cropped again" in status and "No face found" in warnings and not np.array_equal(centred, left)
    source = Image.open(app.state.projects_dir / project / "instance" / "joe1.png")  # 200 x 160: the left 160
    expected = np.asarray(source.crop((0, 0, 160, 160)).resize((64, 64), Image.Resampling.LANCZOS))
    assert np.abs(left.astype(int) - expected).mean() < 3
    client.predict(name=project, crop="center", api_name="/dataset_prepare")
    assert np.array_equal(np.asarray(Image.open(prepared)), left)  # the hand-made crop survives
    _, _, status = client.predict(name=project, image="joe1.png", where="face", api_name="/dataset_recrop")
    assert "No face found in joe1.png" in status
    with pytest.raises(AppError, match="Click an image"):
        client.predict(name=project, image="", where="start", api_name="/dataset_recrop")
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio's own check
        client.predict(name=project, image="joe1.png", where="diagonal", api_name="/dataset_recrop")


def test_token_advice(client, french):
    advice = client.predict(token="ohwx", class_word="person", api_name="/dataset_advice_token")
    assert "single CLIP token" in advice and "`a photo of ohwx person`" in advice and "celebrity" in advice
    assert "common word" not in advice
    assert "common word" in client.predict(token="dog", class_word="dog", api_name="/dataset_advice_token")
    assert "takes 5 CLIP tokens" in client.predict(token="zwxqkjvb", class_word="person",
                                                   api_name="/dataset_advice_class_word")
    assert "jetons CLIP" in french.predict(token="zwxqkjvb", class_word="person", api_name="/dataset_advice_token")


def test_class_images_resume(client, demo_model, tmp_path):
    project = new_project(client, tmp_path, "resume")
    gallery, text = client.predict(name=project, model=demo_model, count=2, api_name="/dataset_generate_class_images")
    assert len(gallery) == 2 and "2 class images" in text
    gallery, text = client.predict(name=project, model=demo_model, count=3, api_name="/dataset_generate_class_images")
    assert len(gallery) == 3  # the two made before are kept, one more is drawn


def test_class_images_stop_keeps_what_was_made_and_continues(app, client, demo_model, tmp_path):
    project = new_project(client, tmp_path, "stop")
    reg = app.state.projects_dir / project / "reg"
    before = len(list(reg.glob("class-*.png")))
    job = client.submit(name=project, model=demo_model, count=before + 400, api_name="/dataset_generate_class_images")
    deadline = time.time() + 60
    while len(list(reg.glob("class-*.png"))) < before + 2 and time.time() < deadline:
        time.sleep(0.05)
    assert client.predict(api_name="/dataset_stop") == "Stopping…"
    _, text = job.result(timeout=60)
    made = len(list(reg.glob("class-*.png")))
    assert "Stopped; what was made is kept" in text and before + 2 <= made < before + 400
    _, text = client.predict(name=project, model=demo_model, count=made + 1, api_name="/dataset_generate_class_images")
    assert len(list(reg.glob("class-*.png"))) == made + 1 and f"{made + 1} generated class images ready" in text
    assert client.predict(api_name="/dataset_stop") == "Nothing is running."


def test_class_images_from_a_folder(app, client, demo_model, tmp_path):
    project = new_project(client, tmp_path, "import")
    client.predict(name=project, model=demo_model, count=3, api_name="/dataset_generate_class_images")
    reg = app.state.projects_dir / project / "reg"
    generated = {p.name: digest(p) for p in reg.glob("class-*.png")}
    assert sorted(generated) == ["class-00000.png", "class-00001.png", "class-00002.png"]
    folder = app.state.outputs_dir / "people"
    folder.mkdir()
    for i in range(3):
        photo(folder / f"class-0000{i}.png", 20 + i)  # the generated images' names: they must not be overwritten
    (folder / "readme.txt").write_text("not an image")
    _, text = client.predict(name=project, folder=str(folder), api_name="/dataset_import_class_folder")
    assert "3 class images imported" in text
    assert {p.name: digest(p) for p in reg.glob("class-*.png") if p.name in generated} == generated
    assert len(list(reg.glob("class-0000?-*.png"))) == 3
    elsewhere = tmp_path / "private"
    elsewhere.mkdir()
    photo(elsewhere / "secret.png", 30)
    for bad, message in ((str(app.state.outputs_dir / "nowhere"), "is not a folder"), ("", "is not a folder"),
                         (str(app.state.outputs_dir / "demo"), "No images"),
                         (str(elsewhere), "outside the app's folders"),
                         (str(app.state.outputs_dir / ".." / ".."), "outside the app's folders")):
        with pytest.raises(AppError, match=message):
            client.predict(name=project, folder=bad, api_name="/dataset_import_class_folder")


def test_generate_writes_png_with_parameters(app, client, demo_model):
    before = set((app.state.outputs_dir / "txt2img").glob("*.png"))
    gallery, info, status = client.predict(model=demo_model, prompt="a photo of ohwx person", batch_size=2,
                                           token="ohwx", class_word="person", negative_prompt="blurry",
                                           sampler="euler_a", steps=6, cfg_scale=7, seed=7, width=64, height=64,
                                           api_name="/test_generate")
    assert len(gallery) == 2 and "Seed: 7" in info
    returned = Image.open(gallery[0]["image"])
    assert "Negative prompt: blurry" in returned.info["parameters"]
    written = sorted(set((app.state.outputs_dir / "txt2img").glob("*.png")) - before)
    assert [p.name.split("-")[-1] for p in written] == ["7.png", "8.png", "7.png"]  # two images and their grid
    assert "Seed: 7" in Image.open(written[0]).info["parameters"]


def test_prompt_lint_warns_and_fixes(client, french):
    warning = client.predict(prompt="a photo of ohwx, smiling", token="ohwx", class_word="person",
                             api_name="/test_lint_0")
    assert "not `ohwx` alone" in warning and "Suggested: `a photo of ohwx person, smiling`" in warning
    assert client.predict(prompt="a photo of ohwx, smiling", token="ohwx", class_word="person",
                          api_name="/test_fix_prompt") == "a photo of ohwx person, smiling"
    assert client.predict(prompt="a photo of ohwx person", token="ohwx", class_word="person",
                          api_name="/test_lint_0") == ""
    assert "Proposition" in french.predict(prompt="ohwx", token="ohwx", class_word="person", api_name="/test_lint_1")


def test_seed_minus_one_draws_a_random_seed(client, demo_model):
    seeds = []
    for _ in range(2):
        _, info, _ = client.predict(model=demo_model, prompt="a person", batch_size=1, token="", class_word="",
                                    negative_prompt="", sampler="euler", steps=2, cfg_scale=7, seed=-1, width=64,
                                    height=64, api_name="/test_generate")
        seeds.append(int(re.search(r"Seed: (\d+)", info).group(1)))
    assert seeds[0] != seeds[1]


def test_comparison_grid(client, demo_model):
    image, status = client.predict(models=[demo_model, demo_model], prompts="ohwx person\na person", token="ohwx",
                                   class_word="person", negative_prompt="", sampler="euler", steps=3, cfg_scale=7,
                                   seed=3, width=64, height=64, api_name="/test_compare")
    grid = Image.open(image)
    assert grid.width > 2 * 192 and grid.height > 2 * 192 and "seed 3" in status


def test_prune_demo_model_to_fp16(app, client, demo_model):
    text, *_ = client.predict(source=demo_model, upload=None, half=True, ema="drop", fmt=".safetensors",
                              out_name="demo-small", overwrite=False, api_name="/prune")
    out = Path(demo_model).with_name("demo-small.safetensors")
    assert "loads correctly" in text and out.is_file()
    _, info = load_model(out)
    assert str(info.dtype) == "torch.float16"
    with pytest.raises(AppError, match="already exists"):
        client.predict(source=demo_model, upload=None, half=True, ema="drop", fmt=".safetensors",
                       out_name="demo-small", overwrite=False, api_name="/prune")


def test_the_api_reads_and_writes_only_in_the_apps_folders(app, client, demo_model, tmp_path):
    """The dropdowns accept typed values and the API any text: a path elsewhere is refused, never pruned over."""
    unrelated = tmp_path / "unrelated.safetensors"
    shutil.copyfile(demo_model, unrelated)
    before = digest(unrelated)
    sneaky = str(app.state.models_dir / ".." / ".." / unrelated.relative_to(unrelated.parents[1]))
    for source in (str(unrelated), sneaky):
        with pytest.raises(AppError, match="outside the app's folders"):
            client.predict(source=source, upload=None, half=True, ema="drop", fmt=".safetensors",
                           out_name=unrelated.name, overwrite=True, api_name="/prune")
    assert digest(unrelated) == before and sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name]
    with pytest.raises(AppError, match="outside the app's folders"):
        client.predict(model=str(unrelated), prompt="x", batch_size=1, token="", class_word="", negative_prompt="",
                       sampler="euler_a", steps=3, cfg_scale=7, seed=1, width=64, height=64,
                       api_name="/test_generate")


def test_said_errors_keep_the_key_of_their_message():
    """What Say.errors raises says the message in the page's language and keeps its key (what with_notes reads):
    a UIError's, a core Message's; a library's plain text has none."""
    cases = [(UIError("err_run_name", name="a/b"), "« a/b » ne peut pas", "err_run_name"),
             (CheckpointError(Message("ckpt_not_found", path="x.ckpt")), "Modèle introuvable : x.ckpt",
              "ckpt_not_found"),
             (CheckpointError("bad magic"), "bad magic", None)]
    for error, text, key in cases:
        with pytest.raises(SaidError) as caught, Say("fr").errors(CheckpointError):
            raise error
        assert text in caught.value.message and caught.value.key == key


def test_an_error_about_a_field_is_said_under_it_and_the_outputs_stay(client, french, demo_model):
    """The error still fails the event (the toast; an AppError here), and just before it the event's outputs are
    left as they are (skipped) while the note under the field it is about says it, in the page's language; the
    other notes are emptied, and so are all of them by a success."""
    skipped = {"__type__": "update"}
    prune = dict(upload=None, half=True, ema="drop", fmt=".safetensors", overwrite=False, api_name="/prune")
    job = french.submit(source=None, out_name="", **prune)
    with pytest.raises(AppError, match="Choisissez un modèle"):
        job.result()
    result, source, source_note, name_note = job.outputs()[-1]
    assert (result, source) == (skipped, skipped)
    assert source_note.startswith("Choisissez un modèle dans la liste") and name_note == ""
    job = client.submit(source=demo_model, out_name="dir/x", **prune)
    with pytest.raises(AppError, match="give a file name only"):
        job.result()
    assert job.outputs()[-1][2:] == ("", "“dir/x”: give a file name only, without folders (e.g. "
                                         "joe-pruned.safetensors).")
    text, _, source_note, name_note = client.predict(source=demo_model, out_name="noted", **prune)
    assert "loads correctly" in text and source_note == name_note == ""
    job = client.submit(source=demo_model, out_name="", **{**prune, "ema": "use"})
    with pytest.raises(AppError, match="has no EMA weights"):  # about the file, no field's: no note changes
        job.result()
    assert not job.outputs()


def test_prune_replaces_the_original_only_when_asked(app, client, demo_model):
    original = app.state.outputs_dir / "demo" / "mine.safetensors"
    shutil.copyfile(demo_model, original)
    before = digest(original)
    kwargs = dict(source=str(original), upload=None, half=True, ema="drop", fmt=".safetensors",
                  out_name="mine.safetensors", api_name="/prune")
    with pytest.raises(AppError, match="is the original itself"):
        client.predict(overwrite=False, **kwargs)
    assert digest(original) == before
    text, *_ = client.predict(overwrite=True, **kwargs)
    assert "replaced by its pruned version" in text and "loads correctly" in text
    _, info = load_model(original)
    assert info.metadata["pruned_from"] == "mine.safetensors" and digest(original) != before
    assert not [p for p in original.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_training_settings_show_vram_and_help(app):
    components = {c["id"]: c for c in app.config["components"]}
    dropdowns = [c["props"] for c in components.values() if c["type"] == "dropdown"]
    preset = next(d for d in dropdowns if d.get("value") == "24gb")
    assert all(re.search(r"\d+ GiB VRAM", label) for label, _ in preset["choices"])
    labels = {str(c["props"].get("label")): c["props"] for c in components.values()}
    for setting in SETTINGS:
        shown = next(props for label, props in labels.items() if f'"cfg_{setting.name}"' in label)
        assert f'"cfg_{setting.name}_info"' in str(shown.get("info")), f"{setting.name} has no tooltip"


def test_check_gpu_shows_the_gate_report(app, client, french, monkeypatch):
    app.state.sessions.probe = FakeProbe(free=23.0, busy=False)
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with a GPU
        ready = client.predict(preset="24gb", ema=False, api_name="/training_check_gpu")
        two = client.predict(preset="24gb", ema=False, devices="2", api_name="/training_check_gpu")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only PyTorch, on any machine
        app.state.sessions.probe = FakeProbe(cuda=False)
        no_gpu = client.predict(preset="24gb", ema=True, api_name="/training_check_gpu")
        french_no_gpu = french.predict(preset="8gb", ema=False, api_name="/training_check_gpu")
    finally:
        app.state.sessions.probe = None
    assert ready.count("```") == 2 and "✔" in ready and "✖" not in ready and "RTX 3090" in ready
    assert "trains on the CPU" not in ready
    assert "✖" in two and "devices is 2, but the driver sees 1 GPU(s)" in two  # this machine has one
    assert "trains on the CPU" in no_gpu
    assert "would fail" not in no_gpu and "--device" not in no_gpu  # one verdict, no command-line flag
    assert "entraîne donc sur le processeur" in french_no_gpu
    with_gpu = gate_text(check_gpu(20, "24gb", {}, probe=FakeProbe(free=23.0)), Say("en"))
    assert "RTX 3090" in with_gpu  # with a GPU: the gate's report
    with pytest.raises(AppError, match="no-such-preset is not in the list of choices"):  # Gradio's own check
        client.predict(preset="no-such-preset", ema=False, api_name="/training_check_gpu")


@pytest.mark.gpu
def test_check_gpu_reads_the_real_card(client):
    report = client.predict(preset="8gb", ema=False, api_name="/training_check_gpu")
    assert "✔" in report and torch.cuda.get_device_name(0) in report and "Without a GPU" not in report


def test_check_gpu_in_french_with_each_refusal(app, client, french):
    app.state.sessions.probe = FakeProbe(free=5.0)
    try:
        text = french.predict(preset="24gb", ema=False, api_name="/training_check_gpu")
        english = client.predict(preset="24gb", ema=False, api_name="/training_check_gpu")
        app.state.sessions.probe = FakeProbe(cuda=False)
        no_cuda = french.predict(preset="24gb", ema=False, api_name="/training_check_gpu")
    finally:
        app.state.sessions.probe = None
    for part in ("✖ L'entraînement sur cette carte échouerait", "mémoire : 5.0 Gio libres sur 24.0 Gio",
                 "pilote : 550.54", "Seulement 5.0 Gio libres sur 24.0 Gio", "Fermez les programmes listés",
                 "pour libérer au moins 15.0 Gio de plus",
                 "Un autre programme calcule sur cette carte : pid 4242 python (3000 Mio)",
                 "L'entraînement ne peut pas commencer :"):
        assert part in text, part
    assert "Only 5.0 GiB free of 24.0 GiB" in english and "Another program is computing" in english
    assert "Aucune carte NVIDIA n'est utilisable ici (ce PyTorch est une version pour processeur seul" in no_cuda
    assert "--device" not in no_cuda


def test_a_refused_start_and_a_failure_show_in_french():
    report = check_gpu(20, "24gb", {"12gb": 11, "8gb": 7.5}, probe=FakeProbe(free=14.0))
    snap = SessionState(status=Status.FAILED, step=0, total_steps=10, run_dir=Path("outputs/runs/joe"),
                        gate=report, message=report.format())
    text = TrainingTab.progress_text(None, snap, Say("fr"))
    assert "Seulement 14.0 Gio libres" in text and "préréglage 12gb" in text and "Only" not in text
    oom = oom_message(load_config("24gb"), 3, RunPaths(Path("nowhere")))
    snap = SessionState(status=Status.FAILED, step=3, total_steps=10, run_dir=Path("outputs/runs/joe"), message=oom)
    assert "⚠ Mémoire de la carte épuisée à l'étape 3" in TrainingTab.progress_text(None, snap, Say("fr"))
    assert "⚠ Out of GPU memory at step 3" in TrainingTab.progress_text(None, snap, Say("en"))


def test_core_errors_come_back_in_french(app, client, french, demo_model, tmp_path):
    lora = app.state.outputs_dir / "lora" / "my-lora.safetensors"  # in the app's folders, not models/ (demo mode)
    lora.parent.mkdir(exist_ok=True)
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    generate = dict(model=str(lora), prompt="x", batch_size=1, token="", class_word="", negative_prompt="",
                    sampler="euler_a", steps=3, cfg_scale=7, seed=1, width=64, height=64, api_name="/test_generate")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    fake = tmp_path / "notes.ckpt"
    fake.write_text("this is not a checkpoint")
    prune = dict(source=None, half=True, ema="drop", fmt=".safetensors", out_name="", overwrite=False,
                 api_name="/prune")
    cases = [
        (generate, "This is a LoRA/LyCORIS file", "C'est un fichier LoRA/LyCORIS (un complément pour un modèle"),
        ({**prune, "upload": handle_file(empty)}, "is empty (0 bytes)", "est vide (0 octet)"),
        ({**prune, "upload": handle_file(fake)}, "is not a readable PyTorch checkpoint",
         "n'est pas un modèle PyTorch lisible"),
        ({**prune, "source": demo_model, "upload": None, "ema": "use"}, "has no EMA weights", "n'a pas de poids EMA"),
    ]
    for kwargs, english, french_text in cases:
        with pytest.raises(AppError, match=re.escape(english)):
            client.predict(**kwargs)
        with pytest.raises(AppError) as caught:
            french.predict(**kwargs)
        assert french_text in str(caught.value) and "Impossible" not in str(caught.value)


def test_progress_line_has_step_speed_eta_and_loss():
    snap = SessionState(status=Status.RUNNING, step=5, total_steps=10, loss=0.1234, it_per_s=2.5, eta_s=65,
                        elapsed_s=3, run_dir=Path("outputs/runs/joe"), checkpoints=[Path("joe-step00004.safetensors")])
    text = TrainingTab.progress_text(None, snap, Say("en"))
    for part in ("`" + "█" * 12 + "░" * 12 + "` 50%", "**Training**", "step 5 / 10", "2.50 it/s", "1:05 left",
                 "loss 0.1234", "joe-step00004"):
        assert part in text
    assert "étape 5 / 10" in TrainingTab.progress_text(None, snap, Say("fr"))


def test_short_cpu_training_shows_previews(app, client, project, demo_model):
    params = settings(client, steps=4, save_every=2, preview_every=2, preview_steps=3, learning_rate=1e-4,
                      class_images=0)
    message, run, *_ = client.predict(project=project, model=demo_model, preset="24gb", run_name="",
                                      resume_run=False, api_name="/training_start", **params)
    assert "started" in message
    client.predict(api_name="/training_pause")  # held in preparation: a second Start must be refused
    assert TrainingTab(app.state).start_enabled()["interactive"] is False  # Start is greyed out while it runs
    with pytest.raises(AppError, match="already running"):
        client.predict(project=project, model=demo_model, preset="24gb", run_name="other", resume_run=False,
                       api_name="/training_start", **params)
    client.predict(api_name="/training_resume")
    previews, deadline = [], time.time() + TRAIN_TIMEOUT_S
    while time.time() < deadline:
        text, _, _, _, gallery, log = client.predict(api_name="/training_state")
        if isinstance(gallery, dict) and gallery.get("value"):
            previews = gallery["value"]
        if "Finished" in text or "Failed" in text:
            break
        time.sleep(0.5)
    assert "Finished" in text, log
    assert {p["caption"].split(" · ")[0] for p in previews} >= {"step 0", "step 2", "step 4"}
    assert client.predict(api_name="/training_stop") == "No training is running."
    assert TrainingTab(app.state).start_enabled()["interactive"] is True
    french_text, *_ = Client(client.src, verbose=False, headers={"Cookie": "sdtrainer_lang=fr"}).predict(
        api_name="/training_state")
    assert "✔ 4 étapes terminées" in french_text and "Terminé" in french_text
    # a page opened afterwards (a new browser session) shows the same run, its previews and its log tail
    text, _, _, _, gallery, log = Client(client.src, verbose=False).predict(api_name="/training_state")
    assert "Finished" in text and run in text and len(gallery["value"]) == len(previews) and "Finished" in log
    # each run's step checkpoints are offered in the Test tab's model list
    labels = [label.removesuffix(" ★") for label, _ in app.state.model_choices()]  # ★: the meter's pick
    assert f"{run} › step00002.safetensors" in labels


def test_a_used_run_name_is_refused_before_anything_starts(app, client, french, project, demo_model):
    used = app.state.runs_dir / "used-name" / "state"
    used.mkdir(parents=True)
    (used / "last.ckpt").write_bytes(b"")
    start = dict(project=project, model=demo_model, preset="24gb", api_name="/training_start",
                 **settings(client, steps=1, class_images=0))
    with pytest.raises(AppError, match="already holds a run: tick “Continue this run”"):
        client.predict(run_name="used-name", resume_run=False, **start)
    with pytest.raises(AppError, match="cochez « Reprendre cet entraînement »"):
        french.predict(run_name="used-name", resume_run=False, **start)
    with pytest.raises(AppError, match="Nothing to resume"):
        client.predict(run_name="never-ran", resume_run=True, **start)
    assert not (app.state.runs_dir / "never-ran").exists()
    current = app.state.sessions.current
    assert current is None or current.run_dir.name not in ("used-name", "never-ran")


def test_a_stop_before_step_1_says_no_model_is_written_and_writes_none(app, client, project, demo_model):
    message, run, *_ = client.predict(project=project, model=demo_model, preset="12gb", run_name="",
                                      resume_run=False, api_name="/training_start",
                                      **settings(client, steps=50, class_images=0))
    client.predict(api_name="/training_pause")  # held before step 1
    assert [u["interactive"] for u in TrainingTab(app.state).controls()] == [False, False, True, True]
    # a page loaded now (a reload) shows the run's settings, not the form's defaults
    restored = client.predict(api_name="/training_restore_form")
    assert restored[:5] == (project, demo_model, "12gb", run, False)
    assert dict(zip([s.name for s in SETTINGS], restored[5:]))["steps"] == 50
    assert "nothing is trained yet, so no model file is written" in client.predict(api_name="/training_stop")
    assert app.state.sessions.current.wait(TRAIN_TIMEOUT_S)
    text, *_ = client.predict(api_name="/training_state")
    assert "**Stopped**" in text and "Finished" not in text
    assert not list((app.state.runs_dir / run).rglob("*.safetensors"))
    assert [u["interactive"] for u in TrainingTab(app.state).controls()] == [True, False, False, False]
    idle = client.predict(api_name="/training_restore_form")
    assert all(v == {"__type__": "update"} for v in idle)  # idle: the form is left as it is (skipped)


def test_model_lists_are_grouped_with_short_names(tmp_path):
    models, outputs = tmp_path / "models", tmp_path / "outputs"
    files = [outputs / "pruned" / "joe-final-pruned.safetensors", outputs / "runs" / "joe" / "state" / "last.ckpt",
             outputs / "runs" / "joe" / "checkpoints" / "joe-step00400.safetensors", models / "v1-5.safetensors",
             outputs / "demo" / "sdtrainer-demo-tiny.safetensors", outputs / "runs" / "joe" / "joe-final.safetensors",
             outputs / "runs" / "joe" / "checkpoints" / ".joe-step00500.tmp.safetensors"]
    expected = ["v1-5.safetensors", "joe › step00400.safetensors", "joe › final.safetensors",
                "pruned › joe-final-pruned.safetensors", "demo › sdtrainer-demo-tiny.safetensors"]
    assert [label for label, _ in model_choices(files, models, outputs)] == expected
    with_states = model_choices(files, models, outputs, states=True)
    assert with_states[-1] == ("joe › state/last.ckpt", str(files[1]))  # only Pruning offers training states


def test_stopped_runs_and_class_images_read_as_what_they_are():
    root = Path("outputs/runs/joe")
    stopping = SessionState(status=Status.STOPPING, step=0, total_steps=10, run_dir=root)
    assert "nothing trained yet: no model file" in TrainingTab.progress_text(None, stopping, Say("en"))
    stopped = SessionState(status=Status.STOPPED, step=3, total_steps=10, run_dir=root, history=[(3, 0.1, 0.1)],
                           message=Message("run_stopped_saved", step=3, total=10, path="joe-step00003.safetensors"))
    assert "**Stopped**" in TrainingTab.progress_text(None, stopped, Say("en"))
    assert "**Arrêté**" in TrainingTab.progress_text(None, stopped, Say("fr"))
    making = SessionState(status=Status.PREPARING, total_steps=100, run_dir=root, class_word="person", class_done=12,
                          class_total=48, class_eta_s=40)
    text = TrainingTab.progress_text(None, making, Say("en"))
    assert "`" + "█" * 6 + "░" * 18 + "` 25%" in text
    assert "Class images of “person”: 12 / 48 · 0:40 left" in text
    assert text.index("Class images") < text.index("step 0 / 100")
    making.status, making.history = Status.RUNNING, [(1, 0.1, 0.1)]
    assert "Class images" not in TrainingTab.progress_text(None, making, Say("en"))


def test_bad_input_gives_messages_and_the_app_keeps_working(app, client, french, project, demo_model, tmp_path,
                                                            capfd):
    cases = [
        (dict(model=demo_model, prompt="  ", batch_size=1, token="", class_word="", negative_prompt="",
              sampler="euler_a", steps=5, cfg_scale=7, seed=1, width=64, height=64, api_name="/test_generate"),
         "Write a prompt first", "Écrivez d'abord un prompt"),
        (dict(model=demo_model, prompt="x", batch_size=1, token="", class_word="", negative_prompt="",
              sampler="euler_a", steps=5, cfg_scale=7, seed=1, width=72, height=64, api_name="/test_generate"),
         "use a multiple of 16", "utilisez un multiple de 16"),
        (dict(model=str(app.state.models_dir / "gone.safetensors"), prompt="x", batch_size=1, token="", class_word="",
              negative_prompt="", sampler="euler_a", steps=5, cfg_scale=7, seed=1, width=64, height=64,
              api_name="/test_generate"), "is gone", "a disparu"),
        (dict(new_name="../evil", api_name="/dataset_create"), "cannot be a project name", "ne peut pas"),
        (dict(name=None, files=None, api_name="/dataset_add_photos"), "Pick or create a project", "Choisissez"),
        (dict(name="nobody", api_name="/dataset_open"), "The project “nobody” is gone", "Le projet « nobody »"),
        (dict(source=None, upload=None, half=True, ema="drop", fmt=".safetensors", out_name="", overwrite=False,
              api_name="/prune"), "Choose a checkpoint", "Choisissez un modèle"),
    ]
    capfd.readouterr()
    for kwargs, english, french_text in cases:
        with pytest.raises(AppError, match=re.escape(english)):
            client.predict(**kwargs)
        with pytest.raises(AppError, match=re.escape(french_text)):
            french.predict(**kwargs)
    assert "Traceback" not in capfd.readouterr().err  # a user's mistake is a message, not a crash in the console
    with pytest.raises(AppError, match="greater than maximum"):  # Gradio's own range check (English only)
        client.predict(model=demo_model, prompt="x", batch_size=1, token="", class_word="", negative_prompt="",
                       sampler="euler_a", steps=500, cfg_scale=7, seed=1, width=64, height=64,
                       api_name="/test_generate")
    fake = tmp_path / "notes.ckpt"
    fake.write_text("this is not a checkpoint")
    with pytest.raises(AppError, match="notes.ckpt"):
        client.predict(source=None, upload=handle_file(fake), half=True, ema="drop", fmt=".safetensors", out_name="",
                       overwrite=False, api_name="/prune")
    assert french.predict(api_name="/test_stop") == "Rien n'est en cours."
    training_cases = [(dict(learning_rate=-1), "Learning rate must be between 0 and 0.01, not -1"),
                      (dict(steps=0), "Steps must be between 1 and 100000, not 0"),
                      (dict(preview_seeds="1, two"), "Preview seeds: write whole numbers separated by commas"),
                      (dict(run_name="../escape"), "cannot be a run name"),
                      (dict(model=""), "Choose a model first"),
                      (dict(project=None), "Pick or create a project")]
    params = settings(client)
    for change, message in training_cases:
        kwargs = {"project": project, "model": demo_model, "preset": "24gb", "run_name": "", "resume_run": False,
                  **params, **change}
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(api_name="/training_start", **kwargs)
    saved = dict(name=project, token="ohwx", class_word="person", api_name="/dataset_save_settings")
    for change, message in ((dict(resolution=100), "multiple of 64"), (dict(token="oh wx", resolution=64),
                                                                       "one word")):
        with pytest.raises(AppError, match=message):
            client.predict(**{**saved, "resolution": 64, **change})
    token, *_ = client.predict(project, api_name="/dataset_open")
    assert token == "ohwx"  # a refused change loses nothing that was saved
    with pytest.raises(AppError, match="between 1 and 5000"):
        client.predict(name=project, model=demo_model, count=0, api_name="/dataset_generate_class_images")
    gallery, _, _ = client.predict(model=demo_model, prompt="ohwx person", batch_size=1, token="", class_word="",
                                   negative_prompt="", sampler="euler_a", steps=3, cfg_scale=7, seed=1, width=64,
                                   height=64, api_name="/test_generate")
    assert len(gallery) == 1


# ------------------------------------------------------------------ several subjects in one project (issue 6)

@pytest.fixture
def pair(client, tmp_path) -> str:
    """A new project whose first subject is ohwx person (3 prepared photos)."""
    return new_project(client, tmp_path, "pair")


EFFY_PHOTOS = ["e0@S_asleep_on_the_C_bed.png", "e1.png", "e2.png"]


@pytest.fixture
def pair_with_effy(client, pair, demo_model, tmp_path) -> str:
    """`pair` with a second subject, effy dog: 3 prepared photos (e1 captioned by its .txt), 2 class images."""
    client.predict(name=pair, token="effy", class_word="dog", api_name="/dataset_add_subject")
    files = [photo(tmp_path / name, 10 + i) for i, name in enumerate(EFFY_PHOTOS)]
    (tmp_path / "e1.txt").write_text("effy dog in the snow")
    client.predict(name=pair, subject="effy", files=[handle_file(f) for f in files + [tmp_path / "e1.txt"]],
                   api_name="/dataset_add_photos")
    client.predict(name=pair, subject="effy", crop="center", api_name="/dataset_prepare")
    client.predict(name=pair, subject="effy", model=demo_model, count=2, api_name="/dataset_generate_class_images")
    return pair


def test_an_added_subject_has_its_own_photos_captions_and_class_images(app, client, french, pair, demo_model,
                                                                      tmp_path):
    root = app.state.projects_dir / pair
    choices, new_token, new_class, status, *shown = client.predict(name=pair, token=" effy ", class_word="dog",
                                                                  api_name="/dataset_add_subject")
    assert choices["choices"] == [["ohwx person", "ohwx"], ["effy dog", "effy"]] and choices["value"] == "effy"
    assert (new_token, new_class) == ("", "") and "“effy dog” added (2 subjects" in status
    assert shown[:2] == ["effy", "dog"] and shown[3] == []  # the new subject is shown: no photos yet
    names = EFFY_PHOTOS
    files = [photo(tmp_path / name, 10 + i) for i, name in enumerate(names)]
    (tmp_path / "e1.txt").write_text("effy dog in the snow")
    client.predict(name=pair, subject="effy", files=[handle_file(f) for f in files + [tmp_path / "e1.txt"]],
                   api_name="/dataset_add_photos")
    gallery, _, status = client.predict(name=pair, subject="effy", crop="center", api_name="/dataset_prepare")
    prepared = root / "subjects" / "effy" / "prepared"
    assert "3 of 3 images prepared" in status and sorted(p.name for p in prepared.glob("*.png")) == sorted(names)
    assert len(list((root / "prepared").glob("*.png"))) == 3  # the first subject's squares are its own
    cards = captions(gallery)  # each card ends with the caption training reads (.txt, @ template, default)
    assert cards["e0@S_asleep_on_the_C_bed.png"].endswith("“effy asleep on the dog bed”")
    assert cards["e1.png"].endswith("“effy dog in the snow”") and cards["e2.png"].endswith("“effy dog”")
    assert all(cards[p.name].endswith(f"“{caption_for(p, 'effy', 'dog')}”") for p in prepared.glob("*.png"))
    _, caption, note, message = client.predict(name=pair, subject="effy", image="e2.png", caption="effy dog  on a sofa",
                                               api_name="/dataset_save_caption")
    assert caption == "effy dog on a sofa" == caption_for(prepared / "e2.png", "effy", "dog") and ".txt" in note
    _, caption, note, message = client.predict(name=pair, subject="effy", image="e1.png", caption="",
                                               api_name="/dataset_save_caption")
    assert caption == "effy dog" and "The default" in note and "it will use “effy dog”" in message
    _, caption, note, _ = french.predict(name=pair, subject="effy", image=names[0], caption="",
                                         api_name="/dataset_save_caption")
    assert caption == "effy asleep on the dog bed" and "modèle @" in note
    _, _, status = client.predict(name=pair, subject="effy", image="e2.png", where="start", api_name="/dataset_recrop")
    saved = json.loads((root / "project.json").read_text())
    assert "cropped again" in status and [s["crops"] for s in saved["subjects"]] == [{}, {"e2.png": "start"}]
    gallery, text = client.predict(name=pair, subject="effy", model=demo_model, count=2,
                                   api_name="/dataset_generate_class_images")
    assert len(gallery) == 2 and "2 class images of “dog”" in text
    assert len(list((root / "reg" / "dog").glob("*.png"))) == 2 and not list((root / "reg").glob("*.png"))
    token, class_word, *_ = client.predict(name=pair, subject="ohwx", api_name="/dataset_open_subject")
    assert (token, class_word) == ("ohwx", "person")
    *_, subject_list, _, _ = client.predict(pair, api_name="/dataset_open")
    assert subject_list["value"] == "ohwx" and len(subject_list["choices"]) == 2


def test_subject_mistakes_are_refused_clearly_and_lose_nothing(app, client, french, pair_with_effy):
    pair = pair_with_effy
    root = app.state.projects_dir / pair
    before = (root / "project.json").read_text()
    folders = sorted(str(p) for p in root.rglob("*"))
    add = {"api_name": "/dataset_add_subject"}
    cases = [
        (dict(name=pair, token="", class_word="dog", **add), "Enter a token", "Saisissez un jeton"),
        (dict(name=pair, token="EFFY", class_word="cat", **add), "“EFFY” is already a subject", "déjà un sujet"),
        (dict(name=pair, token="big rex", class_word="dog", **add), "one word, without spaces", "un seul mot"),
        (dict(name=pair, token="../rex", class_word="dog", **add), "cannot be a subject's token", "ne peut pas être"),
        (dict(name=pair, token="rex", class_word="", **add), "Enter a class word", "Saisissez un mot de classe"),
        (dict(name=pair, token="rex", class_word="dog/cat", **add), "cannot be a class word", "mot de classe"),
        (dict(name=None, token="rex", class_word="dog", **add), "Pick or create a project", "Choisissez ou créez"),
        (dict(name=pair, subject="effy", token="ohwx", class_word="dog", resolution=64,
              api_name="/dataset_save_settings"), "“ohwx” is already a subject", "déjà un sujet"),
        (dict(name=pair, subject="ohwx", api_name="/dataset_remove_subject"), "first subject cannot be removed",
         "premier sujet"),
        (dict(name=pair, subject="nobody", crop="center", api_name="/dataset_prepare"), "no subject “nobody”",
         "pas de sujet « nobody »"),
        (dict(name=None, subject="effy", crop="center", api_name="/dataset_prepare"), "Pick or create a project",
         "Choisissez"),
    ]
    for kwargs, english, french_text in cases:
        with pytest.raises(AppError, match=re.escape(english)):
            client.predict(**kwargs)
        with pytest.raises(AppError, match=re.escape(french_text)):
            french.predict(**kwargs)
    assert (root / "project.json").read_text() == before and sorted(str(p) for p in root.rglob("*")) == folders
    client.predict(new_name="blank", api_name="/dataset_create")
    with pytest.raises(AppError, match="Save the project's token and class first"):
        client.predict(name="blank", token="rex", class_word="dog", api_name="/dataset_add_subject")


def test_a_project_json_from_before_several_subjects_opens(app, client, demo_model):
    root = app.state.projects_dir / "legacy"
    for folder in ("instance", "prepared", "reg"):
        (root / folder).mkdir(parents=True)
    photo(root / "prepared" / "a.png", 1)
    (root / "project.json").write_text(json.dumps({"token": "zwx", "class_word": "cat", "resolution": 64,
                                                   "crop": "center", "warnings": {}, "crops": {}}))
    token, class_word, *_, subject_list, _, _ = client.predict("legacy", api_name="/dataset_open")
    assert (token, class_word) == ("zwx", "cat") and subject_list["choices"] == [["zwx cat", "zwx"]]
    assert "Trains `zwx cat` on 1 prepared photos" in client.predict("legacy", api_name="/training_project_summary")
    tab = TrainingTab(app.state)
    cfg = tab.config(Project.open(root), Path(demo_model), "24gb", dict(zip([s.name for s in SETTINGS],
                                                                          tab.preset_values("24gb"))), Say("en"))
    assert cfg.concepts == [] and cfg.images == str(root / "prepared") and cfg.token == "zwx"


def test_training_config_has_a_concept_for_each_added_subject(app, client, pair_with_effy, demo_model):
    pair = pair_with_effy
    root = app.state.projects_dir / pair
    tab = TrainingTab(app.state)
    values = dict(zip([s.name for s in SETTINGS], tab.preset_values("24gb")), repeats=2, devices="2")
    cfg = tab.config(Project.open(root), Path(demo_model), "24gb", values, Say("en"))
    assert (cfg.images, cfg.token, cfg.class_word, cfg.devices) == (str(root / "prepared"), "ohwx", "person", 2)
    assert cfg.concepts == [Concept(token="effy", class_word="dog", images=str(root / "subjects" / "effy" / "prepared"),
                                    reg_images=str(root / "reg" / "dog"), class_images=None, repeats=2)]
    assert cfg.reg_images is None and cfg.class_images_dir == str(root / "reg")  # no person images: generated there
    assert [(s.token, s.class_word, s.reg_images, len(s.paths), s.repeats) for s in run_subjects(cfg)] == [
        ("ohwx", "person", None, 3, 2), ("effy", "dog", root / "reg" / "dog", 3, 2)]
    summary = client.predict(pair, api_name="/training_project_summary")
    assert "Trains 2 subjects together, at 64 px" in summary
    assert "`ohwx person`: 3 prepared photos, 0 class images" in summary
    assert "`effy dog`: 3 prepared photos, 2 class images" in summary


def test_two_subjects_train_in_one_run(app, client, pair_with_effy, demo_model):
    pair = pair_with_effy
    root = app.state.projects_dir / pair
    client.predict(name=pair, token="rex", class_word="cat", api_name="/dataset_add_subject")
    params = settings(client, steps=2, save_every=0, preview_every=0, preview_steps=2, class_images=1)
    start = dict(project=pair, model=demo_model, preset="24gb", run_name="pair-run", resume_run=False,
                 api_name="/training_start", **params)
    with pytest.raises(AppError, match="“rex cat” has no prepared images"):
        client.predict(**start)
    choices, status, *_ = client.predict(name=pair, subject="rex", api_name="/dataset_remove_subject")
    assert "“rex cat” removed from the project" in status and [v for _, v in choices["choices"]] == ["ohwx", "effy"]
    assert not (root / "subjects" / "rex").exists()
    kept = [p for p in (root / "removed").iterdir() if p.name.startswith("rex-")]  # moved aside, not deleted
    assert len(kept) == 1 and str(kept[0]) in status and (kept[0] / "instance").is_dir()
    client.predict(**start)
    deadline = time.time() + TRAIN_TIMEOUT_S
    while time.time() < deadline:
        text, _, _, _, gallery, log = client.predict(api_name="/training_state")
        if "Finished" in text or "Failed" in text:
            break
        time.sleep(0.3)
    assert "Finished" in text, log
    final = app.state.runs_dir / "pair-run" / "pair-run-final.safetensors"
    assert json.loads(read_metadata(final)["concepts"]) == [["ohwx", "person"], ["effy", "dog"]]
    assert {p["caption"].split(" · ")[1] for p in gallery["value"]} >= {"ohwx person", "effy dog", "person", "dog"}
    assert (root / "reg" / "person" / "class-00000.png").is_file()  # made for the run, where the next one finds it
    assert "`ohwx person`: 3 prepared photos, 1 class images" in client.predict(pair,
                                                                                api_name="/training_project_summary")


def test_renaming_an_added_subject_moves_its_photos(app, client, pair_with_effy):
    pair = pair_with_effy
    root = app.state.projects_dir / pair
    status, _, choices, *_ = client.predict(name=pair, subject="effy", token="effie", class_word="puppy", resolution=64,
                                        api_name="/dataset_save_settings")
    assert "saved" in status and choices["value"] == "effie" and ["effie puppy", "effie"] in choices["choices"]
    assert len(list((root / "subjects" / "effie" / "prepared").glob("*.png"))) == 3
    assert not (root / "subjects" / "effy").exists()
    token, class_word, *_, class_count, _, _ = client.predict(name=pair, subject="effie",
                                                              api_name="/dataset_open_subject")  # then 2 notes
    assert (token, class_word) == ("effie", "puppy") and "0 class images of “puppy”" in class_count  # reg/puppy/


def model_with_concepts(demo_model: str, path: Path, pairs: list[list[str]]) -> str:
    """The demo model saved again with a trained model's `concepts` metadata."""
    metadata = {**read_metadata(Path(demo_model)), "token": pairs[0][0], "class_word": pairs[0][1],
                "concepts": json.dumps(pairs)}
    save_file(load_file(demo_model), str(path), metadata=metadata)
    return str(path)


def test_prompt_lint_per_concept(app, client, french, demo_model):
    model = model_with_concepts(demo_model, app.state.outputs_dir / "pair.safetensors",  # the app reads its folders
                                [["ohwx", "person"], ["effy", "dog"]])
    token, class_word, _, _, note = client.predict(model=model, width=64, height=64, api_name="/test_model_changed")
    assert (token, class_word) == ("ohwx", "person") and "trained on: `ohwx person`, `effy dog`" in note
    lint = dict(token="ohwx", class_word="person", model=model, api_name="/test_lint_0")
    warning = client.predict(prompt="ohwx and effy on a sofa", **lint)
    assert "`ohwx person`, `effy dog`" in warning and "Suggested: `ohwx person and effy dog on a sofa`" in warning
    assert client.predict(prompt="ohwx and effy on a sofa", token="ohwx", class_word="person", model=model,
                          api_name="/test_fix_prompt") == "ohwx person and effy dog on a sofa"
    warning = client.predict(prompt="ohwx person and effy", **lint)
    assert "not `effy` alone" in warning and "ohwx` alone" not in warning
    assert client.predict(prompt="ohwx person and effy dog", **lint) == ""
    typed = client.predict(prompt="zwx next to ohwx person and effy dog", **{**lint, "token": "zwx",
                                                                            "class_word": "cat"})
    assert "Write `zwx cat`" in typed  # what the user types is checked too
    assert "Écrivez chaque jeton" in french.predict(prompt="ohwx and effy", **lint)


def test_concept_pairs_from_metadata_and_typing(demo_model, tmp_path):
    model = model_with_concepts(demo_model, tmp_path / "m.safetensors", [["ohwx", "person"], ["effy", "dog"]])
    assert concept_pairs("OHWX", "man", [model, None]) == [("OHWX", "man"), ("effy", "dog")]  # typed words win
    assert concept_pairs("", "", [demo_model]) == []
    assert parse_concepts('[["a", "b"], ["c"], [1, 2], "x"]') == [("a", "b")]
    assert parse_concepts("not json") == [] and parse_concepts('{"a": "b"}') == []


def test_refresh_lists_picks_up_a_real_model_and_drops_the_demo(app, client, project, demo_model):
    """It puts a checkpoint into models/ (the app leaves demo mode) and takes it out again. A list whose value is
    still valid gets its choices only: the page may have set another value since it asked (a reload's restored
    Training form did, and a refresh asked at the tab click then cleared its project)."""
    def refresh(*values) -> list:
        out = client.predict(*values, api_name="/refresh_lists")
        return [r.get("value", sent) if isinstance(r, dict) else r for r, sent in zip(out, values)]

    kept = client.predict(demo_model, demo_model, demo_model, [demo_model], None, None, None, project, None, "",
                          api_name="/refresh_lists")
    assert all("value" not in r for r in kept), kept

    real = app.state.models_dir / "v1-5-pruned-emaonly.safetensors"
    shutil.copyfile(demo_model, real)
    # 7 model lists (after the first three: the comparison's, the LoRA extraction's two and Pruning's), then 2 project
    # lists and the LoRA list ("": none)
    try:
        assert refresh(demo_model, demo_model, demo_model, [demo_model], None, None, None, project, None, "") == [
            str(real), str(real), str(real), [demo_model], None, None, None, project, None, ""]
        assert app.state.has_real_model()
    finally:
        real.unlink()
    assert refresh(str(real), str(real), str(real), [str(real)], None, None, None, "gone", None, "gone.safetensors") \
        == [demo_model, demo_model, demo_model, [], None, None, None, None, None, ""]


NUMBER_SETTINGS = [s for s in SETTINGS if s.kind in ("int", "float", "optional_float")]
REFUSED = object()


def config_accepts(name: str, value) -> bool:
    values = {"model": "m.safetensors", "images": "photos", "token": "ohwx", "class_word": "person", name: value}
    try:
        check_config(load_config(values=values))
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("setting", NUMBER_SETTINGS, ids=[s.name for s in NUMBER_SETTINGS])
def test_the_training_tab_accepts_exactly_what_the_config_accepts(setting):
    """Both read the Range declared on the TrainConfig field: a value the tab lets through is a valid setting,
    and a value it refuses is refused by check_config (the command line's check) too."""
    accepted = setting.range
    assert accepted is not None, f"{setting.name}: declare its Range on the TrainConfig field"
    step = 1 if setting.kind == "int" else (accepted.high - accepted.low) * 1e-3
    for value in (accepted.low - step, accepted.low, accepted.low + step, accepted.high, accepted.high + step):
        try:
            ui_value = parsed(setting, value, Say("en"))
        except UIError as e:
            ui_value = REFUSED
            assert e.key == "err_setting_range"
        assert (ui_value is not REFUSED) == config_accepts(setting.name, value if ui_value is REFUSED else ui_value), \
            (setting.name, value)


def test_plots_keep_numeric_axes_before_the_first_step():
    import gradio as gr

    from sdtrainer.ui.training_tab import plot_frame

    plot = gr.LinePlot(x="step", y="value", color="series")
    assert plot_frame([]) is None  # an empty frame would leave the plot without lines once data comes
    rows = [{"step": 1, "value": 0.5, "series": "loss"}, {"step": 2, "value": 0.25, "series": "loss"}]
    assert plot.postprocess(plot_frame(rows)).datatypes["value"] == "quantitative"


def test_an_unsavable_caption_is_refused_and_the_old_one_kept(tmp_path):
    from sdtrainer.ui.i18n import UIError

    project = Project.create(tmp_path, "joe")
    subject = project.subject()
    photo(subject.instance_dir / "a.png", 1)
    photo(subject.prepared_dir / "a.png", 1)
    subject.set_caption("a.png", "ohwx person smiling")
    with pytest.raises(UIError) as caught:
        subject.set_caption("a.png", "ohwx person \ud800")
    assert caught.value.key == "err_caption_chars"
    assert (subject.prepared_dir / "a.txt").read_text(encoding="utf-8") == "ohwx person smiling\n"
    assert (subject.instance_dir / "a.txt").read_text(encoding="utf-8") == "ohwx person smiling\n"


def test_a_text_file_dropped_as_a_photo_is_said(app, tmp_path, monkeypatch):
    from sdtrainer.ui import dataset_tab

    Project.create(app.state.projects_dir, "notes-only")
    note = tmp_path / "notes.txt"
    note.write_text("ohwx person")
    shown = []
    monkeypatch.setattr(dataset_tab, "warn", shown.append)
    _, message = DatasetTab(app.state).add_photos("notes-only", [str(note)], None)
    assert "Added 0 photos" in message
    assert len(shown) == 1 and "notes.txt" in shown[0] and "not photos" in shown[0]


def test_toasts_show_quotes_not_backticks(monkeypatch):
    from sdtrainer.ui import i18n

    shown = []
    monkeypatch.setattr(i18n.gr, "Warning", shown.append)
    i18n.warn(Say("en").message(Message("lint_bare_token", token="ohwx", class_word="person")))
    assert "`" not in shown[0] and "“ohwx person”" in shown[0]


def test_cards_name_each_warning_once_then_the_caption(app):
    project = Project.create(app.state.projects_dir, "cards")
    subject = project.subject()
    subject.token, subject.class_word = "ohwx", "person"
    photo(subject.prepared_dir / "a.png", 1)
    subject.warnings = {"a.png": [["near_duplicate", "x"], ["near_duplicate", "y"], ["blurry", "z"]]}
    [(_, label)] = DatasetTab(app.state).gallery_items(subject, Say("en"))
    assert label.count(STRINGS["issue_short_near_duplicate"]["en"]) == 1
    assert STRINGS["issue_short_blurry"]["en"] in label
    assert label.endswith("“ohwx person”") and "a.png" not in label


def test_closing_a_tab_stops_the_jobs_it_started(app):
    """Gradio's unload (the tab closed or reloaded) stops that session's generation or class images."""
    from types import SimpleNamespace

    unload = [dep for dep in app.fns.values() if any(target[1] == "unload" for target in dep.targets)]
    assert [dep.fn for dep in unload] == [app.state.end_session]
    with app.state.jobs.run("class_images", "tab-1") as closed, app.state.jobs.run("test", "tab-2") as open_:
        app.state.end_session(SimpleNamespace(session_hash="tab-1"))
        assert closed.is_set() and not open_.is_set()


def test_extract_a_lora_then_generate_with_it(app, client, french, base_and_tuned):
    """Pruning tab: extract base -> tuned as a LoRA into outputs/lora; Test tab: the LoRA is listed (not as a model),
    brings its token and class word, changes the images at weight 0.8 and not at 0, never changes the cached model,
    and the PNG records it as AUTOMATIC1111 does."""
    from sdtrainer.lora import lora_hash

    folder = app.state.outputs_dir / "extract"  # in the app's folders, not models/ (the other tests' demo mode)
    folder.mkdir(exist_ok=True)
    base, tuned = (shutil.copyfile(p, folder / p.name) for p in base_and_tuned)
    extract = dict(base=str(base), tuned=str(tuned), rank=2, conv_rank=0, energy=0, text_encoder=False, out_name="",
                   overwrite=False, api_name="/extract_lora")
    text, *_ = client.predict(**extract)
    lora = app.state.lora_dir / "tuned-lora-r2.safetensors"
    assert lora.is_file() and "tuned-lora-r2.safetensors" in text and "keep **" in text and "<lora:tuned-lora-r2:0.8>" \
        in text and "Layers that keep the least:" in text
    with pytest.raises(AppError, match="already exists"):
        client.predict(**extract)
    assert "Terminé" in french.predict(**{**extract, "overwrite": True, "energy": 0.5, "out_name": "fr"})[0]
    assert str(lora) in {path for _, path in app.state.lora_choices()}
    assert str(lora) not in {path for _, path in app.state.model_choices()}
    assert client.predict(lora=str(lora), api_name="/test_lora_changed") == ("ohwx", "person")

    def image(weight: float | None) -> tuple[np.ndarray, str]:
        gallery, info, _ = client.predict(model=str(base), prompt="a photo of ohwx person", batch_size=1, token="",
                                          class_word="", lora="" if weight is None else str(lora),
                                          lora_weight=weight or 0.0, negative_prompt="", sampler="euler", steps=3,
                                          cfg_scale=7, seed=5, width=64, height=64, api_name="/test_generate")
        return np.asarray(Image.open(gallery[0]["image"])), info

    plain, plain_info = image(None)
    styled, info = image(0.8)
    assert np.abs(styled.astype(int) - plain.astype(int)).max() > 10  # the LoRA is applied...
    assert np.array_equal(image(0.0)[0], plain) and np.array_equal(image(None)[0], plain)  # ...and the base kept
    assert info.splitlines()[0] == "a photo of ohwx person <lora:tuned-lora-r2:0.8>"
    assert f'Lora hashes: "tuned-lora-r2: {lora_hash(lora)}"' in info and "Lora" not in plain_info
    written = sorted((app.state.outputs_dir / "txt2img").glob("*.png"), key=lambda p: p.stat().st_mtime)
    assert Image.open(written[-3]).info["parameters"] == info
    grid, status = client.predict(models=[str(base), str(tuned)], prompts="ohwx person", token="", class_word="",
                                  lora=str(lora), lora_weight=0.8, negative_prompt="", sampler="euler", steps=2,
                                  cfg_scale=7, seed=3, width=64, height=64, api_name="/test_compare")
    assert "<lora:tuned-lora-r2:0.8>" in Image.open(grid).info["parameters"].splitlines()[0] and "seed 3" in status


def test_lora_mistakes_come_back_in_english_and_french(app, client, french, base_and_tuned, demo_model):
    folder = app.state.outputs_dir / "extract-bad"
    folder.mkdir(exist_ok=True)
    base, tuned = (shutil.copyfile(p, folder / p.name) for p in base_and_tuned)
    client.predict(base=str(base), tuned=str(tuned), rank=1, conv_rank=0, energy=0, text_encoder=False,
                   out_name="bad-test", overwrite=True, api_name="/extract_lora")
    lora = str(app.state.lora_dir / "bad-test.safetensors")
    other_config = dataclasses.replace(TINY, unet=dataclasses.replace(TINY.unet, num_res_blocks=2))
    other = save_checkpoint(StableDiffusion(other_config), folder / "other.safetensors")
    extract = dict(rank=4, conv_rank=0, energy=0, text_encoder=False, out_name="x", overwrite=False,
                   api_name="/extract_lora")
    generate = dict(model=str(base), prompt="a person", batch_size=1, token="", class_word="", negative_prompt="",
                    sampler="euler", steps=2, cfg_scale=7, seed=1, width=64, height=64, api_name="/test_generate")
    cases = [
        ({**extract, "base": lora, "tuned": str(tuned)}, "This is a LoRA/LyCORIS file", "C'est un fichier LoRA"),
        ({**extract, "base": str(other), "tuned": str(tuned)}, "are different architectures",
         "sont des architectures différentes"),
        ({**extract, "base": None, "tuned": str(tuned)}, "Choose the base model and the trained model",
         "Choisissez d'abord le modèle de base"),
        ({**extract, "base": str(base), "tuned": str(tuned), "out_name": "../x"}, "give a file name only",
         "donnez seulement un nom de fichier"),
        ({**generate, "lora": demo_model, "lora_weight": 1.0}, "is a model, not a LoRA", "est un modèle, pas un LoRA"),
        ({**extract, "base": str(base_and_tuned[0]), "tuned": str(tuned)}, "is outside the app's folders",
         "est hors des dossiers de l'application"),
        ({**generate, "lora": str(base_and_tuned[0])}, "is outside the app's folders",
         "est hors des dossiers de l'application"),
    ]
    for kwargs, english, french_text in cases:
        with pytest.raises(AppError, match=re.escape(english)):
            client.predict(**kwargs)
        with pytest.raises(AppError) as caught:
            french.predict(**kwargs)
        assert french_text in str(caught.value) and "Impossible" not in str(caught.value), french_text

@pytest.mark.parametrize("typed, accepted", [("2", 2), (" 3 ", 3), ("all", "all"), ("1", 1), ("0", None),
                                             ("two", None)])
def test_the_gpus_setting_takes_a_number_or_all_and_the_config_judges_it(typed, accepted):
    value = parsed(SETTING["devices"], typed, Say("en"))
    settings = {"model": "m.safetensors", "images": "photos", "token": "ohwx", "class_word": "person",
                "cuda_graphs": False, "devices": value}
    if accepted is None:
        with pytest.raises(ConfigError, match="devices must be a whole number from 1"):
            check_config(load_config(values=settings))
    else:
        check_config(load_config(values=settings))
        assert value == accepted and shown(SETTING["devices"], value) == typed.strip()


def test_the_vram_plot_shows_each_gpu_of_a_run_on_several():
    two = SessionState(vram=[(1, 9.0, 11.0), (2, 9.0, 12.0)], vram_by_device=[(1, [10.0, 11.0]), (2, [10.5, 12.0])])
    frame = TrainingTab.vram_frame(None, two, Say("en"))
    assert sorted(set(frame["series"])) == ["GPU 0 reserved", "GPU 1 reserved"]
    assert frame[frame["series"] == "GPU 1 reserved"]["value"].tolist() == [11.0, 12.0]
    one = SessionState(vram=[(1, 9.0, 11.0)], vram_by_device=[(1, [11.0])])
    assert sorted(set(TrainingTab.vram_frame(None, one, Say("fr"))["series"])) == ["allouée", "réservée"]


def test_the_server_keeps_the_state_of_the_latest_sessions_only(tmp_path):
    """Each page opened is a session holding a copy of the page's configuration: with Gradio's default of 10000
    kept sessions the server grew by ~0.4 MB for every page ever opened (issue 13). It keeps SESSIONS_KEPT."""
    import tracemalloc

    blocks = build_app(tmp_path / "models", tmp_path / "outputs")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        holder = blocks.state_holder
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        holder["page-0"]
        one = tracemalloc.get_traced_memory()[0] - start
        for i in range(1, 3 * SESSIONS_KEPT):
            holder[f"page-{i}"]
        grown = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
        assert len(holder.session_data) == SESSIONS_KEPT and "page-0" not in holder
        assert f"page-{3 * SESSIONS_KEPT - 1}" in holder
        assert one > 50_000 and grown < 1.5 * SESSIONS_KEPT * one, (one, grown)  # not 3 x SESSIONS_KEPT sessions
    finally:
        blocks.close()
