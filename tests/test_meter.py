"""The likeness and drift meter on the CPU with the tiny model: scores move the right way on real (tiny) runs, the
callback scores every saved checkpoint, on-demand measures agree with it, the CLI, the recommendation, the app.

Learning rate: 1e-3, as in test_trainer, where the presets' 1e-6 is SD v1's scale: the tiny model learns nothing
measurable at 1e-6 in the 60 steps a test can afford. The runs compared differ only in what the test is about
(prior weight 1 or 0), so the learning rate cannot make the difference appear.
Base: the demo model has random weights and knows no class; drift from a base that knows nothing says nothing. The
`class_base` fixture first teaches it the class (`thing` = horizontal stripes), as a real base model knows
`person`; the DreamBooth runs start from that file, and their class images are its own samples (class_images: 8).
"""
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from gradio_client import Client

from conftest import free_port, write_photos
from ldm.schedule import alphas_cumprod
from ldm.tokenizer import get_tokenizer
from sdtrainer import meter
from sdtrainer.checkpoint import load_model, read_metadata
from sdtrainer.cli import main
from sdtrainer.meter import MeterRow, Scores, recommend, shifted
from sdtrainer.trainer import EventKind, run_probes
from sdtrainer.ui.app import build_app
from sdtrainer.ui.i18n import Say
from sdtrainer.ui.test_tab import checkpoint_title, meter_note
from test_lora_training import lora_config
from test_trainer import config, denoising_error, train

STEPS, SAVE_EVERY = 60, 20


@pytest.fixture(scope="module")
def class_base(demo_file, tmp_path_factory) -> Path:
    """The demo model after 200 steps on horizontal stripes captioned `thing` (a .txt beside each): a base that
    knows its class."""
    photos = write_photos(tmp_path_factory.mktemp("class-base") / "things", 6, vertical=False, seed=100)
    for path in photos.glob("*.png"):
        path.with_suffix(".txt").write_text("thing")
    cfg = config(demo_file, photos, steps=200, save_every=0, preview_every=0, prior_loss_weight=0.0, save_half=False)
    result, _ = train(cfg, tmp_path_factory.mktemp("class-base-run") / "base")
    return result.model_file


def dreambooth(base: Path, photos: Path, run_dir: Path, prior: float, **values):
    """A DreamBooth run from `base` on the subject's photos, its class images (with prior) the base's samples."""
    cfg = config(base, photos, steps=STEPS, save_every=SAVE_EVERY, preview_every=0, prior_loss_weight=prior,
                 save_half=False, class_images=8 if prior else 0, class_image_steps=8, **values)
    return train(cfg, run_dir)


@pytest.fixture(scope="module")
def runs(class_base, subject_photos, tmp_path_factory) -> dict[float, tuple[Path, list]]:
    """{prior weight: (run folder, events)} for prior weight 1 and 0, the same run otherwise."""
    root = tmp_path_factory.mktemp("meter-runs")
    found = {}
    for prior in (1.0, 0.0):
        run_dir = root / f"prior{prior:g}"
        _, events = dreambooth(class_base, subject_photos, run_dir, prior)
        found[prior] = run_dir, events.events
    return found


def rows(run_dir: Path) -> dict[int, MeterRow]:
    return {r.step: r for r in meter.read_rows(run_dir)}


# ------------------------------------------------------------------------------------------------ scores

def test_the_base_model_scores_one_zero_zero(class_base, subject_photos):
    cfg = config(class_base, subject_photos)
    base, _ = load_model(class_base)
    probes = run_probes(cfg, base)
    scores = meter.score(base, probes, meter.reference_of(base, probes))
    assert scores == Scores(pytest.approx(1.0, abs=1e-6), pytest.approx(0.0, abs=1e-9),
                            pytest.approx(0.0, abs=1e-6))
    assert probes.class_words == ["thing"]
    assert torch.equal(probes.class_text, get_tokenizer()(["thing"] * len(probes.photos)))


def test_the_class_pictures_are_made_through_a_half_precision_vae(class_base, subject_photos):
    """On a GPU the trainer keeps the VAE in half precision; a run in fp32 (`classic`) has no autocast to cast the
    pictures for it (the 2026-12-03 world call's classic runs failed so): the meter casts them itself."""
    base, _ = load_model(class_base)
    probes = run_probes(config(class_base, subject_photos), base)
    full = meter.class_samples(base, probes)
    base.vae.half()
    half = meter.class_samples(base, probes)
    assert half.dtype == torch.float32 and half.shape == full.shape == (meter.CLASS_SAMPLES, *probes.photos.shape[1:])
    assert torch.allclose(half, full, atol=0.05 * float(full.abs().max()))


def test_subject_fit_improves_with_steps(runs):
    for prior, (run_dir, _) in runs.items():
        fits = [r.subject_fit for r in rows(run_dir).values()]
        assert fits == sorted(fits, reverse=True) and len(set(fits)) == 3, (prior, fits)
        assert fits[-1] < 0.95, (prior, fits)  # at the identity timesteps: 0.91 and 0.78 after 60 steps


def test_class_drift_is_lower_with_prior_preservation(runs):
    """Without class images the bare class word takes on the subject (drift above 0 once the run has learnt); with
    them it stays nearer the base (measured here: 0.077 and 0.072 against 0.028 and 0.048 at steps 40 and 60)."""
    with_prior, without = rows(runs[1.0][0]), rows(runs[0.0][0])
    for step in (2 * SAVE_EVERY, STEPS):
        assert without[step].class_drift > 0.05, (step, without)
        assert with_prior[step].class_drift < 0.9 * without[step].class_drift, (step, with_prior, without)


def identity_errors(model, latents: torch.Tensor, prompt: str, stream: int = 0) -> torch.Tensor:
    """eps-MSE of the latents under `prompt` at each of IDENTITY_TIMESTEPS, noised here with the meter's fixed noise."""
    context = model.text_encoder(get_tokenizer()([prompt] * len(latents)))
    errors = []
    for t in meter.IDENTITY_TIMESTEPS:
        a, noise = alphas_cumprod()[t].float(), meter.noise_like(latents, stream)[meter.TIMESTEPS.index(t)]
        with torch.no_grad():
            eps = model.unet(a.sqrt() * latents + (1 - a).sqrt() * noise, torch.full((len(latents),), t), context)
        errors.append((eps - noise).square().mean())
    return torch.stack(errors)


def test_fit_and_drift_are_ratios_of_denoising_errors_at_the_identity_timesteps(runs, class_base, subject_photos):
    """Subject fit and class drift, computed independently from the two models' denoising errors on the photos'
    latents under the caption and under the bare class word, and on the base model's pictures of the class word
    (kept in the run folder) under that word."""
    run_dir, _ = runs[0.0]
    base, _ = load_model(class_base)
    final, _ = load_model(run_dir / "prior0-final.safetensors")
    latents = run_probes(config(class_base, subject_photos), base).photos
    pictures = torch.load(run_dir / meter.REFERENCE_FILE, weights_only=True)["class_samples"]
    assert pictures.shape == (meter.CLASS_SAMPLES, *latents.shape[1:])
    ratio = lambda x, prompt, stream=0: (identity_errors(final, x, prompt, stream)  # noqa: E731
                                         / identity_errors(base, x, prompt, stream))
    measured = rows(run_dir)[STEPS]
    assert measured.subject_fit == pytest.approx(float(ratio(latents, "ohwx thing").mean()), rel=1e-4)
    drift = 1 - (ratio(latents, "thing") / ratio(pictures, "thing", 2)).mean()
    assert measured.class_drift == pytest.approx(float(drift), abs=1e-4)


def test_re_cropped_photos_are_the_photos_moved_one_latent_pixel():
    x = torch.arange(2 * 4 * 8 * 8, dtype=torch.float32).view(2, 4, 8, 8)
    moved = shifted(x)
    assert torch.equal(moved[..., 1:, 1:], x[..., :-1, :-1])
    assert torch.equal(moved[..., 0, 1:], x[..., 0, :-1]) and moved.shape == x.shape  # the edge repeated


# ------------------------------------------------------------------------------------------------ the callback

def test_the_callback_scores_every_saved_checkpoint(runs):
    for run_dir, events in runs.values():
        saved = [(e.step, Path(e.data["path"])) for e in events
                 if e.kind is EventKind.CHECKPOINT and e.data["kind"] == "model"]
        measured = [(r.step, Path(r.file)) for r in meter.read_rows(run_dir)]
        assert measured == saved == [(20, run_dir / "checkpoints" / f"{run_dir.name}-step00020.safetensors"),
                                     (40, run_dir / "checkpoints" / f"{run_dir.name}-step00040.safetensors"),
                                     (60, run_dir / f"{run_dir.name}-final.safetensors")]
        emitted = [e.data["row"] for e in events if e.kind is EventKind.METER]
        assert emitted == meter.read_rows(run_dir) and all(r.seconds > 0 for r in emitted)


@pytest.mark.parametrize("kept", ["kept", "none", "other", "earlier-definition"],
                         ids=["answers-kept", "answers-from-the-base-file", "other-answers-from-the-base-file",
                              "scores-of-an-earlier-definition"])
def test_scores_continue_across_a_resume(class_base, subject_photos, tmp_path, kept):
    """20 steps, resume to 40: the rows of a run that ran 40 steps at once. The base model's answers are read back
    from the run folder after the resume, or (a run that has not kept them, or kept an earlier meter's) taken again
    from the base file. Scores written by an earlier definition of the meter (no `definition` in meter.json or in
    the kept answers, as the meter wrote them before 2026-12-03's evening) are left out, with a message saying how
    to measure them again, which `meter` then does."""
    cfg = config(class_base, subject_photos, steps=40, save_every=10, preview_every=0, prior_loss_weight=0.0,
                 save_half=False)
    train(cfg, tmp_path / "once")
    train(config(class_base, subject_photos, steps=20, save_every=10, preview_every=0, prior_loss_weight=0.0,
                 save_half=False), tmp_path / "twice")
    answers = tmp_path / "twice" / meter.REFERENCE_FILE
    assert answers.is_file()
    if kept == "none":
        answers.unlink()
    elif kept == "other":  # what the meter kept before 2026-12-03: the base's class pictures, no class-word errors
        old = torch.load(answers, weights_only=True)
        torch.save({"photo_errors": old["photo_errors"], "shifted_errors": old["shifted_errors"],
                    "class_samples": torch.zeros(4, 4, 8, 8), "class_eps": torch.zeros(20, 4, 8, 8)}, answers)
    elif kept == "earlier-definition":  # the same files, without the definition they were written under
        written = tmp_path / "twice" / meter.METER_FILE
        earlier = json.loads(written.read_text())
        for row in earlier["checkpoints"]:
            row["class_drift"] = 0.5  # a number of the earlier drift, which must not reach today's table
        written.write_text(json.dumps({k: v for k, v in earlier.items() if k != "definition"}))
        torch.save({k: v for k, v in torch.load(answers, weights_only=True).items() if k != "definition"}, answers)
    first_final = (tmp_path / "twice" / "twice-final.safetensors").read_bytes()
    _, events = train(cfg, tmp_path / "twice", resume=True)
    said = [e.data["message"].key for e in events.of(EventKind.LOG)]
    assert ("meter_earlier_definition" in said) == (kept == "earlier-definition")
    kept_final = tmp_path / "twice" / "checkpoints" / "twice-step00020.safetensors"  # not replaced by the new final
    assert "train_final_kept" in said and kept_final.read_bytes() == first_final
    assert read_metadata(tmp_path / "twice" / "twice-final.safetensors")["steps"] == "40"
    if kept == "earlier-definition":
        assert list(rows(tmp_path / "twice")) == [30, 40]
        assert main(["meter", str(tmp_path / "twice")]) == 0
    once, twice = rows(tmp_path / "once"), rows(tmp_path / "twice")
    assert list(once) == list(twice) == [10, 20, 30, 40]
    assert Path(twice[20].file).name == kept_final.name  # the row follows its file
    for step in twice:
        assert (twice[step].subject_fit, twice[step].class_drift) == (
            pytest.approx(once[step].subject_fit, rel=1e-4), pytest.approx(once[step].class_drift, rel=1e-3))


# ------------------------------------------------------------------------------------------------ on demand, CLI

def test_the_cli_measures_a_run_on_demand_as_the_callback_did(runs, tmp_path, capsys):
    run_dir, _ = runs[1.0]
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    (copy / meter.METER_FILE).unlink()
    assert main(["meter", str(copy), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    during = rows(run_dir)
    assert [c["step"] for c in printed["checkpoints"]] == [20, 40, 60]
    for c in printed["checkpoints"]:
        assert set(c) == {"step", "file", "subject_fit", "class_drift", "copying"}
        assert Path(c["file"]).parent.parent == copy or Path(c["file"]).parent == copy
        r = during[c["step"]]
        assert (c["subject_fit"], c["class_drift"], c["copying"]) == (
            pytest.approx(r.subject_fit, rel=1e-3), pytest.approx(r.class_drift, rel=1e-3),
            pytest.approx(r.copying, abs=1e-3))
    rec = recommend(meter.read_rows(run_dir))
    assert printed["recommended"] == {"step": rec.step, "file": printed["recommended"]["file"], "why": rec.why}
    assert Path(printed["recommended"]["file"]).name == Path(rec.file).name


def test_the_cli_measures_a_lora_run_with_its_loras_on_the_base(demo_file, subject_photos, tmp_path, capsys):
    """A LoRA run's files are LoRAs, not models: measured on demand, each is applied to the run's base model, and the
    scores are the callback's. At the LoRA's lr 5e-3 (its preset's 1e-4 moves the tiny model's fit by 4e-4 in 10
    steps, too little to tell a LoRA applied from none), so that a file measured without its LoRA (fit 1) fails."""
    cfg = lora_config(demo_file, images=str(subject_photos), class_images=0, prior_loss_weight=0.0, steps=10,
                      save_every=5, preview_every=0, lora_learning_rate=5e-3)
    train(cfg, tmp_path / "lora")
    during = rows(tmp_path / "lora")
    assert list(during) == [5, 10] and during[10].subject_fit < 0.97
    assert main(["meter", str(tmp_path / "lora"), "--again", "--json"]) == 0
    printed = {c["step"]: c for c in json.loads(capsys.readouterr().out)["checkpoints"]}
    for step, row in during.items():
        assert (printed[step]["subject_fit"], printed[step]["class_drift"]) == (
            pytest.approx(row.subject_fit, rel=1e-4), pytest.approx(row.class_drift, abs=1e-4))


def test_the_cli_table_marks_the_recommended_step(runs, capsys):
    run_dir, _ = runs[0.0]
    assert main(["meter", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rec = recommend(meter.read_rows(run_dir))
    assert lines[0].split() == ["step", "subject_fit", "class_drift", "copying", "file"]
    assert [line.split()[-1] for line in lines[1:4]] == ["prior0-step00020.safetensors", "prior0-step00040.safetensors",
                                                         "prior0-final.safetensors"]
    starred = [line for line in lines[1:4] if line.startswith("*")]
    assert len(starred) == 1 and starred[0].split()[:2] == ["*", str(rec.step)]
    assert lines[4] == f"* recommended: {rec.why}"


def test_the_cli_measures_a_run_whose_base_model_moved_where_it_is_told(runs, tmp_path, capsys):
    """The run's config names a base model that is no longer there: one line says so and how to give its new place
    (no traceback); with --model, the run is measured as before."""
    run_dir, _ = runs[1.0]
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    (copy / meter.METER_FILE).unlink()
    config_text = (copy / "config.yaml").read_text()
    base = next(line.split(":", 1)[1].strip() for line in config_text.splitlines() if line.startswith("model:"))
    (copy / "config.yaml").write_text(config_text.replace(base, str(tmp_path / "moved-away.safetensors")))
    assert main(["meter", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "--model PATH" in err and "moved-away.safetensors" in err and "Traceback" not in err
    assert main(["meter", str(copy), "--model", base, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [c["step"] for c in printed["checkpoints"]] == [20, 40, 60]


def test_the_cli_json_of_a_diverged_run_is_json(runs, tmp_path, capsys):
    """A run whose every checkpoint diverged (its scores NaN) has no recommendation: `--json` says null, and NaN
    scores are null too, in its output and in meter.json (standard JSON, not Python's NaN)."""
    run_dir, _ = runs[1.0]
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    meter.write_rows(copy, [MeterRow(r.step, r.file, math.nan, math.nan, math.nan, r.seconds)
                            for r in meter.read_rows(run_dir)])
    not_json = lambda c: pytest.fail(f"not JSON: {c}")  # noqa: E731 - what Python's json reads beyond the standard
    written = json.loads((copy / meter.METER_FILE).read_text(), parse_constant=not_json)  # meter.json: null too
    assert all(c["subject_fit"] is None for c in written["checkpoints"])
    assert all(math.isnan(r.subject_fit) for r in meter.read_rows(copy))  # and NaN again when read
    assert main(["meter", str(copy), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out, parse_constant=not_json)
    assert printed["recommended"] is None
    assert all(c["subject_fit"] is None and c["class_drift"] is None for c in printed["checkpoints"])


def test_the_cli_says_what_to_do_with_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["meter", str(tmp_path)]) == 2
    assert "is not a run folder (it has no config.yaml)" in capsys.readouterr().err


def test_several_subjects_are_each_measured(class_base, subject_photos, class_photos, tmp_path):
    """Two subjects (ohwx thing at the images folder's root, effy dog below it), prior preservation off: subject fit
    is the mean of each subject's ratio, and each class word has its prompts."""
    images = tmp_path / "images"
    shutil.copytree(subject_photos, images)
    shutil.copytree(class_photos, images / "effy" / "dog")
    cfg = config(class_base, images, steps=10, save_every=5, preview_every=0, prior_loss_weight=0.0, save_half=False)
    train(cfg, tmp_path / "two")
    measured = rows(tmp_path / "two")
    assert list(measured) == [5, 10]
    base, _ = load_model(class_base)
    final, _ = load_model(tmp_path / "two" / "two-final.safetensors")
    probes = run_probes(cfg, base)
    assert probes.class_words == ["thing", "dog"]
    assert torch.equal(probes.class_text, get_tokenizer()(["thing"] * 5 + ["dog"] * 6))
    assert probes.photo_subject.tolist() == [0] * 5 + [1] * 6

    def errors(model, subject: int) -> torch.Tensor:  # each photo under its own caption, at each identity timestep
        e = meter.errors_by_timestep(model, probes.photos, probes.photo_text, 0, meter.IDENTITY_TIMESTEPS)
        return e[:, probes.photo_subject == subject].sum(1)

    ratios = [(errors(final, s) / errors(base, s)).mean() for s in (0, 1)]
    assert measured[10].subject_fit == pytest.approx(float(sum(ratios) / 2), rel=1e-4)


# ------------------------------------------------------------------------------------------------ recommendation

def row(step: int, copying: float, drift: float = 0.01, fit: float = 0.5) -> MeterRow:
    return MeterRow(step, f"run-step{step:05d}.safetensors", fit, drift, copying, 0.1)


def test_the_recommendation_is_the_best_subject_fit_with_its_reason():
    """The quality world's 24gb run at lr-scale 50 (2026-12-03), its meter's scores rounded: subject fit lowest at
    step 150 (0.86); copying and drift do not enter the choice."""
    world = [row(25, -0.22, fit=1.08), row(50, -0.19, fit=1.05), row(100, -0.18, fit=0.94), row(150, -0.03, fit=0.86),
             row(200, -0.19, fit=1.02), row(400, 0.03, 0.5, fit=0.93)]
    rec = recommend(world)
    assert (rec.step, rec.why) == (150, "step 150: the best subject fit of the run (0.86; 0.93 at step 400)")
    assert rec.why.said("fr") == ("étape 150 : le meilleur ajustement au sujet de l'entraînement (0.86 ; 0.93 à "
                                  "l'étape 400)")
    still = [row(500, 0.2, fit=0.9), row(1000, 0.9, fit=0.8), row(1500, 0.3, fit=0.7)]
    assert (recommend(still).step, recommend(still).why.key) == (1500, "meter_still_improving")
    assert recommend([row(100, 0, fit=0.8), row(200, 0, fit=0.8)]).step == 100  # the earliest of equals
    diverged = [row(100, -0.17, fit=0.9), row(200, -0.38, fit=0.8),
                MeterRow(400, "nan.safetensors", math.nan, math.nan, math.nan, 0.1)]
    assert recommend(diverged).step == 200  # a diverged checkpoint's scores are no numbers: never recommended
    assert recommend([]) is None and recommend([row(100, 0.5, 0.3)]).why.key == "meter_only_one"
    assert recommend(diverged[2:]) is None


# ------------------------------------------------------------------------------------------------ the app

@pytest.fixture(scope="module")
def app(tmp_path_factory, runs):
    """The app with the prior-0 run among its runs."""
    root = tmp_path_factory.mktemp("meter-app")
    run_dir, _ = runs[0.0]
    copy = shutil.copytree(run_dir, root / "outputs" / "runs" / run_dir.name)
    meter.measure_run(copy, again=True)  # the files of the copy, at their new place
    blocks = build_app(root / "models", root / "outputs", lang=None)
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield blocks
    blocks.close()


def test_the_test_tab_marks_the_recommended_checkpoint_and_says_why(app):
    run_dir = app.state.runs_dir / "prior0"
    rec = meter.recommendation_of(run_dir)
    labels = dict((path, label) for label, path in app.state.model_choices())
    files = meter.run_files(run_dir)
    marked = [labels[str(f)].endswith(" ★") for f in files]
    assert marked == [Path(rec.file).name == f.name for f in files] and sum(marked) == 1
    client = Client(app.local_url, verbose=False)
    *_, status = client.predict(str(files[0]), 64, 64, api_name="/test_model_changed")
    assert f"★ The meter recommends **{Path(rec.file).name}**: {rec.why}. Compare it in the grid" in status
    french = Client(app.local_url, verbose=False, headers={"Cookie": "sdtrainer_lang=fr"})
    *_, status = french.predict(str(files[0]), 64, 64, api_name="/test_model_changed")
    assert f"Les mesures recommandent **{Path(rec.file).name}** : {rec.why.said('fr')}. Comparez-le" in status
    assert [checkpoint_title(f).endswith(" ★") for f in files] == [Path(rec.file).name == f.name for f in files]
    grid, message = client.predict(models=[str(f) for f in files], prompts="ohwx thing", token="ohwx",
                                   class_word="thing", lora="", lora_weight=1.0, sampler="euler", steps=2,
                                   cfg_scale=7, seed=1, width=64, height=64, negative_prompt="",
                                   api_name="/test_compare")
    assert Path(grid).is_file() and f"The meter recommends **{Path(rec.file).name}**" in message


def test_the_test_tab_says_how_to_measure_a_run_of_an_earlier_meter_again(runs, tmp_path):
    """A run whose meter.json an earlier definition wrote gets no star and no recommendation, but one line, in the
    user's language, saying how to measure it again; once measured, the recommendation comes back."""
    run_dir, _ = runs[1.0]
    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    written = json.loads((copy / meter.METER_FILE).read_text())
    (copy / meter.METER_FILE).write_text(json.dumps({k: v for k, v in written.items() if k != "definition"}))
    files = meter.run_files(copy)
    assert meter_note(files, Say("en")) == (f"**{copy.name}** was measured by an earlier version of the meter, whose "
                                            f"scores do not compare with today's: `python -m sdtrainer meter {copy}` "
                                            "measures it again.")
    assert f"`python -m sdtrainer meter {copy}` le mesure à nouveau" in meter_note(files, Say("fr"))
    assert not any(checkpoint_title(f).endswith(" ★") for f in files)
    assert main(["meter", str(copy)]) == 0
    assert meter_note(files, Say("en")).startswith("★ The meter recommends")


def test_the_training_tab_plots_the_scores_beside_the_loss(app, class_base, subject_photos):
    cfg = config(class_base, subject_photos, steps=4, save_every=2, preview_every=0, prior_loss_weight=0.0)
    session = app.state.sessions.start(cfg, app.state.runs_dir / "plotted")
    assert session.wait(120)
    client = Client(app.local_url, verbose=False)
    text, loss, scores, *_ = client.predict(None, api_name="/training_state")
    assert "Finished" in text
    data = scores["value"]
    frame = [dict(zip(data["columns"], values)) for values in data["data"]]
    assert {(p["step"], p["series"]) for p in frame} == {(s, n) for s in (2, 4)
                                                         for n in ("subject fit", "class drift", "copying")}
    measured = rows(app.state.runs_dir / "plotted")
    fits = [p["value"] for p in sorted(frame, key=lambda p: p["step"]) if p["series"] == "subject fit"]
    assert fits == pytest.approx([measured[2].subject_fit, measured[4].subject_fit])
