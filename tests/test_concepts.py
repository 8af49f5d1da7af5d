"""Several subjects in one run (issue 6): captions from folders, `@` file-name templates and .txt files;
picks balanced across subjects, each paired with its own class images; runs that end at exactly their step
count whatever the image counts; and two subjects trained together on the tiny model, each `<token> <class>`
moving toward its own photos and not the other's."""
import bisect
import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm.tokenizer import get_tokenizer
from sdtrainer.checkpoint import load_model, read_metadata, save_checkpoint
from sdtrainer.captions import caption_for, class_caption_for, template_caption
from sdtrainer.concepts import class_folder, folder_subjects, generated_class_dir, run_subjects
from sdtrainer.config import Concept, ConfigError, check_config, load_config, preview_prompts, save_config, uses_prior
from sdtrainer.dataset import class_set, instance_set
from sdtrainer.images import DatasetError
from sdtrainer.trainer import (BatchPlan, EventKind, RunControl, RunPaths, batch_for, batch_plan, cache_data,
                               check_prior, class_datasets)
from test_trainer import config, denoising_error, latents_of, metrics, train


def picture(kind: str, seed: int, size: int = 64) -> Image.Image:
    """A sharp synthetic photo with a little noise: grey vertical `stripes`, red and green `checks`, grey
    horizontal `bands` or a bright `disc` on black."""
    y, x = np.mgrid[:size, :size]
    pattern = {
        "stripes": lambda: np.repeat(((x // 4) % 2 * 200.0 + 20)[..., None], 3, axis=-1),
        "checks": lambda: np.where(((x // 8 + y // 8) % 2 == 1)[..., None], [230.0, 40, 40], [30.0, 200, 60]),
        "bands": lambda: np.repeat(((y // 4) % 2 * 200.0 + 20)[..., None], 3, axis=-1),
        "disc": lambda: np.repeat(np.where((x - 32) ** 2 + (y - 32) ** 2 < 300, 230.0, 20)[..., None], 3, axis=-1),
    }[kind]()
    pixels = pattern + np.random.default_rng(seed).normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def photos(folder: Path, kind: str, names: int | list[str], seed: int = 0) -> Path:
    """`names` pictures of one kind in `folder` (a count gives <folder>-<i>.png)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{folder.name}-{i}.png" for i in range(names)] if isinstance(names, int) else names
    for i, name in enumerate(names):
        picture(kind, seed + i).save(folder / name)
    return folder


def words(subjects) -> list[tuple[str, str, list[str]]]:
    return [(s.token, s.class_word, [p.name for p in s.paths]) for s in subjects]


# ---------------------------------------------------------------- captions

def test_at_templates_put_the_token_and_class_in_place_of_S_and_C():
    assert template_caption("img-001@S_being_a_good_C", "effy", "dog") == "effy being a good dog"
    assert template_caption("img-001@S_being_a_good_C (2)", "effy", "dog") == "effy being a good dog"
    assert template_caption("IMG_7@a_photo_of_S_C_at__the_beach", "effy", "dog") == "a photo of effy dog at the beach"
    assert template_caption("x@S_C", "effy", "golden retriever") == "effy golden retriever"
    assert template_caption("x@Sitting_Cats_S", "effy", "dog") == "Sitting Cats effy"  # whole words only
    assert template_caption("img-001", "effy", "dog") is None
    assert template_caption("img@", "effy", "dog") is None


def test_instance_captions_txt_then_template_then_file_name_then_token_class(tmp_path):
    def caption(name: str) -> str:
        return caption_for(tmp_path / name, "effy", "dog")

    assert caption("img-001@S_being_a_good_C.jpg") == "effy being a good dog"
    assert caption("img-001@S_being_a_good_C (2).jpg") == "effy being a good dog"  # a copy keeps its caption
    assert caption("IMG_0042.jpg") == caption("IMG_0042 (3).jpg") == "effy dog"
    assert caption("effy at the park (3).jpg") == "effy dog at the park"
    assert caption("img@.jpg") == "effy dog"  # an empty template is no caption
    (tmp_path / "img-002@S_asleep.txt").write_text("effy dog asleep on the sofa\n")
    assert caption("img-002@S_asleep.jpg") == "effy dog asleep on the sofa"  # the .txt beside it wins


def test_class_image_captions_txt_then_template_then_class_word(tmp_path):
    assert class_caption_for(tmp_path / "class-00003.png", "dog") == "dog"
    assert class_caption_for(tmp_path / "reg-1@a_photo_of_a_C.png", "dog") == "a photo of a dog"
    assert class_caption_for(tmp_path / "reg-2@S_C_running (2).png", "dog") == "dog running"  # no token here
    (tmp_path / "reg-3@C.txt").write_text("a dog in the snow")
    assert class_caption_for(tmp_path / "reg-3@C.png", "dog") == "a dog in the snow"


@pytest.fixture
def tree(tmp_path) -> Path:
    """images/: 3 photos at the root, effy/dog/ (a template, a plain name, a .txt), joe/ (2), an empty
    folder and a hidden one."""
    images = tmp_path / "images"
    photos(images, "stripes", 3)
    photos(images / "effy" / "dog", "checks", ["img-001@S_being_a_good_C.png", "img-002.png",
                                               "img-003@S_asleep.png"])
    (images / "effy" / "dog" / "img-003@S_asleep.txt").write_text("effy dog asleep on the sofa")
    photos(images / "joe", "disc", 2)
    (images / "empty").mkdir()
    photos(images / ".thumbnails", "bands", 1)
    return images


def test_the_folder_tree_names_the_subjects(tree):
    assert words(folder_subjects(tree, "ohwx", "person")) == [
        ("ohwx", "person", ["images-0.png", "images-1.png", "images-2.png"]),  # the root: the run's words
        ("effy", "dog", ["img-001@S_being_a_good_C.png", "img-002.png", "img-003@S_asleep.png"]),  # <t>/<c>/
        ("joe", "person", ["joe-0.png", "joe-1.png"]),  # <t>/: the run's class word
    ]
    photos(tree / "rex" / "golden_retriever", "disc", 1)  # _ in a class folder's name are spaces
    assert words(folder_subjects(tree, "ohwx", "person"))[-1] == ("rex", "golden retriever", ["golden_retriever-0.png"])
    reg = photos(tree.parent / "reg" / "golden_retriever", "bands", 1).parent  # reg/golden_retriever/
    assert class_folder(reg, "golden retriever", "person") == reg / "golden_retriever"
    shutil.rmtree(tree / "rex")
    with pytest.raises(DatasetError, match=re.escape(str(tree)) + ".*<token>/<class>/"):
        folder_subjects(tree, "", "person")  # root photos need the run's token
    for path in tree.glob("*.png"):
        path.unlink()
    assert [s.token for s in folder_subjects(tree, "", "person")] == ["effy", "joe"]  # no token needed now
    with pytest.raises(DatasetError, match=re.escape(str(tree / "joe"))):
        folder_subjects(tree, "", "")  # joe/ needs the run's class word


def test_each_subject_of_the_tree_gets_its_own_captions(tree):
    cfg = load_config(values={"model": "m", "images": str(tree), "token": "ohwx", "class_word": "person"})
    captions = [instance_set(s.paths, s.token, s.class_word, 64).captions for s in run_subjects(cfg)]
    assert captions == [["ohwx person"] * 3,
                        ["effy being a good dog", "effy dog", "effy dog asleep on the sofa"],
                        ["joe person"] * 2]


def test_class_images_per_subject_from_the_reg_folder(tree, tmp_path):
    """reg/ holds the run's class (person) at its root and dog/ for effy; a concept of another class gets
    generated class images, one with its own folder uses it."""
    reg = photos(tmp_path / "reg", "bands", 2)
    photos(reg / "dog", "disc", ["reg-1@a_photo_of_a_C.png", "reg-2.png"])
    cats = photos(tmp_path / "cats", "checks", 2)
    own = photos(tmp_path / "cat-reg", "bands", 1)
    run = {"model": "m", "images": str(tree), "token": "ohwx", "class_word": "person", "resolution": 64,
           "reg_images": str(reg), "class_images": 5, "repeats": 2}
    cfg = load_config(values={**run, "concepts": [
        {"token": "kit", "class_word": "cat", "images": str(cats), "class_images": 3},
        {"token": "tom", "class_word": "cat", "images": str(cats), "reg_images": str(own), "repeats": 3}]})
    subjects = run_subjects(cfg)
    assert [(s.token, s.reg_images, s.class_images, s.repeats) for s in subjects] == [
        ("ohwx", reg, 5, 2), ("effy", reg / "dog", 5, 2), ("joe", reg, 5, 2), ("kit", None, 3, 1), ("tom", own, 5, 3)]
    assert generated_class_dir(tmp_path / "gen", subjects, "cat") == tmp_path / "gen" / "cat"
    assert generated_class_dir(tmp_path / "gen", subjects[:1], "person") == tmp_path / "gen"  # one class: as before

    sets = class_datasets(cfg, subjects[:3], None, RunPaths(tmp_path / "run"), print, RunControl())
    assert sets[0] is sets[2] and sets[1] is not sets[0]  # one dataset (encoded once) per class folder
    assert sets[0].captions == ["person", "person"] and sets[1].captions == ["a photo of a dog", "dog"]

    with pytest.raises(DatasetError, match="does not exist"):
        run_subjects(load_config(values={**run, "reg_images": str(tmp_path / "nope")}))
    (tmp_path / "empty-reg" / "dog").mkdir(parents=True)
    with pytest.raises(DatasetError, match="empty-reg holds no images"):  # the wrong folder: not silently generated
        run_subjects(load_config(values={**run, "reg_images": str(tmp_path / "empty-reg")}))
    dogs_only = photos(tmp_path / "dogs-only" / "dog", "disc", 1).parent
    with pytest.raises(DatasetError, match=r"concepts\[0\]: .*dogs-only holds no images of cat"):  # its own folder
        run_subjects(load_config(values={**run, "concepts": [
            {"token": "kit", "class_word": "cat", "images": str(cats), "reg_images": str(dogs_only)}]}))
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match=r"concepts\[0\]: no images"):
        run_subjects(load_config(values={"images": "", "concepts": [
            {"token": "kit", "class_word": "cat", "images": str(tmp_path / "none")}]}))


# ---------------------------------------------------------------- balanced picks

def plan(instance_counts, class_counts=None, repeats=None, batch_size=1) -> BatchPlan:
    n = len(instance_counts)
    return BatchPlan(tuple(instance_counts), tuple(class_counts or (0,) * n), tuple(repeats or (1,) * n), batch_size,
                     flip_p=0.5, latent_shape=(4, 2, 2), noise_offset=0.0, seed=7)


def picks(p: BatchPlan, batches: int) -> list[tuple[int, int, int | None]]:
    """(subject, photo within it, class image within it or None) of every pick of the first micro-batches."""
    first_i = list(itertools.accumulate(p.instance_counts, initial=0))
    first_c = list(itertools.accumulate(p.class_counts, initial=0))
    out = []
    for k in range(batches):
        batch = batch_for(p, k)
        classes = batch["class"].tolist() or [None] * len(batch["instance"])
        for i, c in zip(batch["instance"].tolist(), classes):
            s = bisect.bisect_right(first_i, i) - 1
            if c is not None:
                assert first_c[s] <= c < first_c[s + 1], f"class image {c} is not one of subject {s}'s"
            out.append((s, i - first_i[s], None if c is None else c - first_c[s]))
    return out


def spread(values: list[int], n: int) -> int:
    counts = np.bincount(values, minlength=n)
    return int(counts.max() - counts.min())


def test_two_subjects_get_equal_shares_whatever_their_photo_counts():
    p = plan((3, 7), batch_size=2)
    seen = picks(p, 210)
    for end in range(1, len(seen) + 1):  # at every point of the run, not only at the end
        prefix = seen[:end]
        assert spread([s for s, _, _ in prefix], 2) <= 1
        for s, count in enumerate(p.instance_counts):
            assert spread([i for t, i, _ in prefix if t == s], count) <= 1, (end, s)
    assert np.bincount([s for s, _, _ in seen]).tolist() == [210, 210]
    assert np.bincount([i for s, i, _ in seen if s == 0]).tolist() == [70, 70, 70]
    assert np.bincount([i for s, i, _ in seen if s == 1]).tolist() == [30] * 7


def test_repeats_set_each_subjects_share():
    seen = picks(plan((3, 7), repeats=(2, 1), batch_size=3), 100)
    for end in range(1, len(seen) + 1):
        shares = np.bincount([s for s, _, _ in seen[:end]], minlength=2)
        assert abs(shares[0] - 2 * end / 3) <= 2, (end, shares)
    assert np.bincount([s for s, _, _ in seen]).tolist() == [200, 100]
    assert spread([i for s, i, _ in seen if s == 1], 7) <= 1


def test_each_pick_brings_a_class_image_of_its_own_subject():
    p = plan((3, 5), class_counts=(4, 6), batch_size=2)
    seen = picks(p, 120)  # picks() fails if a class image is another subject's
    for s, count in enumerate(p.class_counts):
        used = [c for t, _, c in seen if t == s]
        assert len(used) == 120 and spread(used, count) <= 1


def test_cached_data_pairs_each_caption_with_its_subjects_class_caption(tiny_model, tmp_path):
    subjects = [("ohwx", "thing", "stripes", 3, "bands", 3), ("zkq", "widget", "checks", 2, "disc", 2)]
    instances = [instance_set(photos(tmp_path / t, kind, n), t, c, 64) for t, c, kind, n, _, _ in subjects]
    classes = [class_set(photos(tmp_path / f"{c}-reg", kind, n, seed=50), c, 64)
               for _, c, _, _, kind, n in subjects]
    data = cache_data(tiny_model, instances, classes, train_text_encoder=True, repeats=(1, 1))
    assert (data.instance_counts, data.class_counts, data.repeats) == ((3, 2), (3, 2), (1, 1))
    assert (len(data.instance_latents), len(data.class_latents)) == (5, 5)
    texts = ["ohwx thing", "zkq widget", "thing", "widget"]
    caption_of = dict(zip(map(tuple, get_tokenizer()(texts).tolist()), texts))
    cfg = load_config(values={"batch_size": 2, "seed": 3})
    pairs = []
    for k in range(12):
        batch = batch_for(batch_plan(cfg, data), k)
        for i, c in zip(batch["instance"], batch["class"]):
            pairs.append((caption_of[tuple(data.conds[data.instance_rows[i]].tolist())],
                          caption_of[tuple(data.conds[data.class_rows[c]].tolist())]))
    assert sorted(set(pairs)) == [("ohwx thing", "thing"), ("zkq widget", "widget")]
    assert pairs.count(("ohwx thing", "thing")) == pairs.count(("zkq widget", "widget")) == 12


# ---------------------------------------------------------------- runs end at exactly their step count

@pytest.mark.parametrize("batch_size,grad_accum", [(1, 1), (2, 2)])
def test_a_run_of_two_subjects_ends_at_exactly_its_step_count(demo_file, tmp_path, batch_size, grad_accum):
    """5 + 3 photos (and 3 + 2 class images) never divide the picks evenly; 7 steps are 7 steps."""
    images, reg = photos(tmp_path / "images", "stripes", 5), photos(tmp_path / "reg", "bands", 3)
    photos(reg / "widget", "disc", 2)
    concept = {"token": "zkq", "class_word": "widget", "images": str(photos(tmp_path / "zkq", "checks", 3))}
    cfg = config(demo_file, images, reg, steps=7, batch_size=batch_size, grad_accum=grad_accum, save_every=3,
                 preview_every=0, preview_prompts=[], concepts=[concept])
    result, events = train(cfg, tmp_path / "run")
    assert (result.step, result.total_steps, result.stopped) == (7, 7, False)
    rows = metrics(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == list(range(1, 8))
    assert all(float(r["prior_loss"]) > 0 for r in rows)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "run-step00003.safetensors", "run-step00006.safetensors"]
    both = [["ohwx", "thing"], ["zkq", "widget"]]
    for path in (result.model_file, tmp_path / "run" / "state" / "last.ckpt"):
        meta = read_metadata(path)
        assert (meta["steps"], json.loads(meta["concepts"]), meta["token"]) == ("7", both, "ohwx"), path
    log = [e.data["message"] for e in events.of(EventKind.LOG)]
    assert any(m.startswith("ohwx thing: 5 images checked") for m in log)
    assert any(m.startswith("zkq widget: 3 images checked") for m in log)
    assert "Cached 8 instance and 5 class latents." in log


# ---------------------------------------------------------------- two subjects learnt in one run

@pytest.fixture(scope="module")
def sd_sized_latents_model(demo_file, tmp_path_factory) -> Path:
    """The demo model with latents the size of SD's. Its random VAE gives latents of ~0.05 rms (SD's are ~1),
    so what tells two subjects apart is ~400 times weaker against the training noise than with SD, and the
    tiny UNet would need thousands of steps to link each caption to its subject. Scaling the encoder's mean
    by 16 (and the decoder's input by 1/16: the same pictures) gives latents of ~0.9 rms."""
    model, _ = load_model(demo_file)
    with torch.no_grad():
        z = model.vae.post_quant_conv.in_channels
        model.vae.quant_conv.weight[:z] *= 16
        model.vae.quant_conv.bias[:z] *= 16
        model.vae.post_quant_conv.weight /= 16
    return save_checkpoint(model, tmp_path_factory.mktemp("models") / "demo-sd-latents.safetensors")


@pytest.mark.slow
def test_two_subjects_in_one_run_each_caption_learns_its_own_subject(sd_sized_latents_model, tmp_path):
    """Red-green checks as `ohwx thing` and a bright disc as `zkq widget`, from images/<token>/<class>/
    folders. The measure is test_trainer's denoising error (how far the model's estimate of the clean latents
    lands from a subject's latents, fixed noise), after / before training, for each caption on each subject.
    Captions separate slowly on a random model: at 500 steps one margin below is 1%, at 700 all are 10-17%."""
    images = tmp_path / "images"
    folders = {"ohwx thing": photos(images / "ohwx" / "thing", "checks", 4),
               "zkq widget": photos(images / "zkq" / "widget", "disc", 3, seed=10)}
    cfg = config(sd_sized_latents_model, images, token="", class_word="", steps=700, prior_loss_weight=0.0,
                 save_every=0, preview_every=0, save_half=False, preview_prompts=["{token} {class}"])
    result, events = train(cfg, tmp_path / "run")

    base, _ = load_model(sd_sized_latents_model)
    trained, _ = load_model(result.model_file)
    latents = {name: latents_of(base, folder) for name, folder in folders.items()}
    ratio = {(caption, subject): denoising_error(trained, latents[subject], caption)
             / denoising_error(base, latents[subject], caption) for caption in folders for subject in folders}
    one, two = folders
    assert all(r < 0.2 for r in ratio.values()), ratio  # both subjects learnt
    # on each subject's latents its own caption now does better than the other subject's caption
    # (measured here: 0.066 vs 0.074 on the checks, 0.067 vs 0.080 on the disc) ...
    assert ratio[one, one] < 0.95 * ratio[two, one], ratio
    assert ratio[two, two] < 0.95 * ratio[one, two], ratio
    # ... and each caption gained more on its own subject than on the other (0.066 vs 0.080, 0.067 vs 0.074)
    assert ratio[one, one] < 0.95 * ratio[one, two], ratio
    assert ratio[two, two] < 0.95 * ratio[two, one], ratio

    assert json.loads(read_metadata(result.model_file)["concepts"]) == [["ohwx", "thing"], ["zkq", "widget"]]
    previews = [e.data["preview"] for e in events.of(EventKind.PREVIEW)]
    assert [(p.step, p.prompt) for p in previews] == [(0, "ohwx thing"), (0, "zkq widget"), (700, "ohwx thing"),
                                                      (700, "zkq widget")]
    assert all(p.path.is_file() for p in previews)


# ---------------------------------------------------------------- configuration

def test_concepts_load_from_yaml_and_from_set_values(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: m.safetensors\nconcepts:\n"
                    "  - {token: effy, class_word: dog, images: photos/effy, repeats: 2}\n"
                    "  - token: joe\n    class_word: person\n    images: photos/joe\n    reg_images: reg/person\n"
                    "    class_images: 50\n")
    cfg = load_config(yaml_path=path)
    assert cfg.concepts == [Concept("effy", "dog", "photos/effy", repeats=2),
                            Concept("joe", "person", "photos/joe", "reg/person", 50)]
    check_config(cfg)  # concepts alone are a run: no images folder, token or class word needed
    assert load_config(yaml_path=save_config(cfg, tmp_path / "saved.yaml")) == cfg
    assert load_config(overrides=["concepts=[{token: effy, class_word: dog, images: p}]"]).concepts == [
        Concept("effy", "dog", "p")]


@pytest.mark.parametrize("overrides,words", [
    (["concepts=[{token: a, class_word: b, images: c}, {token: joe, clas_word: person}]"],
     ["unknown setting 'concepts[1].clas_word'", "did you mean 'concepts[1].class_word'"]),
    (["concepts=[{token: effy, repeats: lots}]"], ["'concepts[0].repeats'", "lots"]),
    (["concepts=[{token: a}, effy]"], ["concepts[1] must be a subject", "'effy'"]),
    (["concepts.0.token=effy"], ["concepts must be a list", "concepts=[{token: effy"]),
])
def test_a_wrong_concept_key_or_value_fails_at_load_naming_its_index(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_wrong_concept_in_a_yaml_file_names_the_file_and_index(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("concepts:\n  - {token: a, class_word: b, images: c}\n  - {token: d, class_images: many}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: bad value for 'concepts\[1\].class_images'"):
        load_config(yaml_path=path)


@pytest.mark.parametrize("change,words", [
    ({"images": ""}, r"concepts\[1\]: set images"),
    ({"token": "effy dog"}, r"concepts\[1\]: the token 'effy dog' must be one word"),
    ({"repeats": 0}, r"concepts\[1\].repeats must be between 1 and 100"),
    ({"class_images": -1}, r"concepts\[1\].class_images must be between 0 and 5000"),
])
def test_check_config_names_the_concept(change, words):
    good = {"token": "effy", "class_word": "dog", "images": "p"}
    with pytest.raises(ConfigError, match=words):
        check_config(load_config(values={"model": "m", "concepts": [good, {**good, **change}]}))


def test_prior_preservation_needs_class_images_for_every_subject(demo_file, tmp_path):
    images, reg = photos(tmp_path / "images", "stripes", 3), photos(tmp_path / "reg", "bands", 2)
    widgets = {"token": "zkq", "class_word": "widget", "images": str(photos(tmp_path / "zkq", "checks", 2))}
    cfg = config(demo_file, images, reg, steps=1, concepts=[{**widgets, "class_images": 0}])
    assert uses_prior(cfg)
    with pytest.raises(ConfigError, match="zkq widget has no class images.*widget/ folder"):
        check_prior(cfg, run_subjects(cfg))
    with pytest.raises(ConfigError, match="zkq widget has no class images"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    generated = config(demo_file, images, reg, concepts=[{**widgets, "class_images": 2}])
    check_prior(generated, run_subjects(generated))
    no_prior = config(demo_file, images, reg, concepts=[widgets], prior_loss_weight=0.0)
    assert not uses_prior(no_prior)
    check_prior(no_prior, run_subjects(no_prior))
    assert not uses_prior(config(demo_file, images, concepts=[widgets]))  # no folder, 0 to generate: no prior
    only_concepts = config(demo_file, "", concepts=[{**widgets, "class_images": 0}], class_images=200)
    assert not uses_prior(only_concepts)  # the run's class_images are for its images folder's subjects
    assert uses_prior(config(demo_file, "", concepts=[widgets], class_images=200))  # ... and concepts without their own


def test_preview_prompts_for_each_subject():
    cfg = load_config(values={"token": "ohwx", "class_word": "thing"})
    subjects = [("ohwx", "thing"), ("zkq", "widget"), ("effy", "thing")]
    assert preview_prompts(cfg, subjects) == [
        "ohwx thing", "zkq widget", "effy thing",
        "a portrait of ohwx thing, oil painting", "a portrait of zkq widget, oil painting",
        "a portrait of effy thing, oil painting",
        "thing", "widget"]  # a class-only prompt once per class word


def test_two_subjects_may_not_share_a_token(tree, tmp_path):
    """The same token from the folder tree and from `concepts` (or twice in `concepts`) is refused, naming both."""
    more = photos(tmp_path / "more-effy", "checks", 2)
    cfg = load_config(values={"model": "m", "images": str(tree), "token": "ohwx", "class_word": "person",
                              "concepts": [{"token": "Effy", "class_word": "dog", "images": str(more)}]})
    with pytest.raises(ConfigError, match=r"token 'Effy'.*effy dog: .*dog; Effy dog: .*more-effy"):
        run_subjects(cfg)
