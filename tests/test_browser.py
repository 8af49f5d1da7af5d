"""The app in a real browser (Debian's chromium, headless, through Playwright): switch to French, generate
an image in the Test tab, train a few CPU steps and see a preview, add a second subject in the Dataset tab.
Screenshots go to tests/artifacts/.

Skipped only when /usr/bin/chromium is missing, and that skip is a failure in CI (CI=true).
"""
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from conftest import free_port
from sdtrainer.sampling import MAX_STEPS
from sdtrainer.ui.app import build_app
from sdtrainer.ui.projects import Project

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
              pytest.mark.slow]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    blocks = build_app(root / "models", root / "outputs")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield blocks
    blocks.close()


def prepared_project(app, folder: Path, name: str, seed: int) -> Client:
    """A project of 5 random photos, prepared at 64 px, made through the API (these tests are about other tabs
    than the uploads); returns the client that made it."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(5):
        files.append(folder / f"p{i}.png")
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype("uint8")).save(files[-1])
    client = Client(app.local_url, verbose=False)
    client.predict(new_name=name, api_name="/dataset_create")
    client.predict(name=name, token="ohwx", class_word="person", resolution=64, api_name="/dataset_save_settings")
    client.predict(name=name, files=[handle_file(f) for f in files], api_name="/dataset_add_photos")
    client.predict(name=name, crop="center", api_name="/dataset_prepare")
    return client


@pytest.fixture(scope="module")
def project(app, tmp_path_factory) -> str:
    client = prepared_project(app, tmp_path_factory.mktemp("photos"), "anna", seed=0)
    demo = str(app.state.outputs_dir / "demo" / "sdtrainer-demo-tiny.safetensors")
    client.predict(name="anna", model=demo, count=2, api_name="/dataset_generate_class_images")
    return "anna"


@contextmanager
def browser_page(url: str):
    """A headless chromium page on the app, in English, once the first tab is drawn."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        tab = browser.new_page(locale="en-US", viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(url)
        tab.get_by_role("tab", name="1. Dataset").wait_for()
        yield tab
        browser.close()


@pytest.fixture(scope="module")
def page(app):
    with browser_page(app.local_url) as tab:
        yield tab


def test_switch_to_french(page):
    page.get_by_label("Français").check()
    page.get_by_role("tab", name="1. Jeu de données").wait_for()
    assert page.get_by_text("Jeton", exact=True).first.is_visible()
    assert page.get_by_role("button", name="✂ Préparer les images").is_visible()
    assert page.get_by_text("Mode démonstration").is_visible()  # the demo banner says so, in French too


def test_generate_an_image(page):
    page.get_by_role("tab", name="3. Test").click()
    panel = page.locator("#tab_test-panel, [role=tabpanel]:visible").first
    panel.get_by_label("Prompt", exact=True).fill("a portrait of ohwx person")
    panel.get_by_role("button", name="▶ Générer").click()
    panel.locator(".sdt-status").get_by_text("enregistrée").wait_for()  # the server answers in French too
    panel.get_by_test_id("detailed-image").or_(panel.locator("button.thumbnail-item img")).first.wait_for()
    page.screenshot(path=ARTIFACTS / "test-tab.png", full_page=True)


def test_short_training_shows_a_preview(page, project):
    page.get_by_role("tab", name="2. Entraînement").click()
    panel = page.locator("[role=tabpanel]:visible").first
    # the project was made after the page loaded: switching tabs reads the lists again, no ⟳ needed
    panel.get_by_label("Projet", exact=True).click()
    page.get_by_role("option", name=project).click()
    panel.get_by_label("Étapes", exact=True).fill("4")
    panel.get_by_label("Aperçu toutes les (étapes)").fill("2")
    panel.get_by_label("Enregistrer un modèle toutes les (étapes)").fill("2")
    panel.get_by_role("button", name="▶ Lancer").click()
    panel.get_by_text("Terminé").first.wait_for(timeout=120_000)
    previews = panel.locator(".gallery-container img, button.thumbnail-item img")
    previews.first.wait_for()
    assert previews.count() >= 3
    # the loss plot draws its lines (Vega's SVG line marks with a path), not only its axes
    page.wait_for_function("() => Array.from(document.querySelectorAll('.mark-line path'))"
                           ".some(p => (p.getAttribute('d') || '').includes('L'))", timeout=10_000)
    # which line is which
    legend = panel.locator(".sdt-plot .role-legend-label text", has_text="perte de l'a priori").first
    box, plot = legend.bounding_box(), panel.locator(".sdt-plot").first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= plot["y"] + plot["height"]  # inside the plot's box
    page.screenshot(path=ARTIFACTS / "training-tab.png", full_page=True)


def test_reopened_page_shows_the_run(page):
    """Closing the tab does not lose the run: a reloaded page shows its status and previews (still in French)."""
    page.reload()
    page.get_by_role("tab", name="2. Entraînement").click()
    panel = page.locator("[role=tabpanel]:visible").first
    panel.get_by_text("Terminé").first.wait_for()
    panel.locator(".gallery-container img, button.thumbnail-item img").first.wait_for()


def test_image_card_shows_its_warnings(page, project):
    """Dataset tab: the prepared images are cards labelled with their warnings; clicking one shows them in full."""
    page.get_by_role("tab", name="1. Jeu de données").click()
    panel = page.locator("[role=tabpanel]:visible").first
    panel.get_by_label("Projet", exact=True).click()
    page.get_by_role("option", name=project).click()
    cards = panel.locator("button.thumbnail-item")
    cards.first.wait_for()
    assert cards.count() >= 5 + 2  # the photos, then the class images' gallery
    cards.first.click()
    panel.get_by_label("Image sélectionnée").and_(panel.locator("textarea, input")).first.wait_for()
    panel.get_by_text("Aucun visage trouvé").first.wait_for()  # class "person", photos of noise
    assert panel.get_by_label("Image sélectionnée").input_value() == "p0.png"
    # the card's label wraps (up to 3 lines) instead of being cut before the caption it promises (issue 13)
    label = panel.locator(".gallery-item .caption-label").first  # Gradio's grid card: thumbnail, then its label
    lines = label.evaluate(
        "e => Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight))")
    assert label.evaluate("e => getComputedStyle(e).whiteSpace") == "normal" and lines >= 2, lines
    page.screenshot(path=ARTIFACTS / "dataset-tab.png", full_page=True)


def test_add_a_second_subject(app, page, project):
    """Dataset tab: + Add subject makes a second subject of the project, chosen at once in the subject list;
    choosing the first one again shows its token."""
    from playwright.sync_api import expect

    page.get_by_label("Français").check()
    page.get_by_role("tab", name="1. Jeu de données").click()
    panel = page.locator("[role=tabpanel]:visible").first
    panel.get_by_label("Projet", exact=True).click()
    page.get_by_role("option", name=project).click()
    subject, token = panel.get_by_label("Sujet", exact=True), panel.locator("#token").get_by_role("textbox")
    expect(subject).to_have_value("ohwx person", timeout=TIMEOUT_MS)
    panel.get_by_label("Un autre sujet : son jeton").fill("effy")
    panel.get_by_label("Son mot de classe").fill("dog")
    panel.get_by_role("button", name="+ Ajouter le sujet").click()
    panel.get_by_text("Sujet « effy dog » ajouté").wait_for()
    expect(subject).to_have_value("effy dog", timeout=TIMEOUT_MS)
    expect(token).to_have_value("effy", timeout=TIMEOUT_MS)
    subject.click()
    expect(page.get_by_role("option")).to_contain_text(["ohwx person", "effy dog"], timeout=TIMEOUT_MS)
    page.get_by_role("option", name="ohwx person").click()
    expect(token).to_have_value("ohwx", timeout=TIMEOUT_MS)
    saved = Project.open(app.state.projects_dir / project)
    assert [(s.token, s.class_word) for s in saved.subjects] == [("ohwx", "person"), ("effy", "dog")]


def test_the_language_choice_sticks_and_gradios_own_strings_follow_it(app, page):
    """French -> English -> reload stays English; Gradio's own strings (the upload box) follow every switch."""
    fresh = page.context.browser.new_page(locale="en-US", viewport={"width": 1400, "height": 1000})
    fresh.set_default_timeout(TIMEOUT_MS)
    try:
        fresh.goto(app.local_url)
        fresh.get_by_role("tab", name="1. Dataset").wait_for()
        fresh.get_by_label("Français").check()
        fresh.get_by_role("tab", name="1. Jeu de données").wait_for()
        fresh.get_by_text("Déposez le fichier ici").first.wait_for()
        assert "Drop File Here" not in fresh.locator("body").inner_text()
        fresh.get_by_role("tab", name="4. Élagage").click()
        fresh.get_by_label("English").check()
        fresh.get_by_role("tab", name="1. Dataset").wait_for()
        fresh.get_by_role("tab", name="4. Pruning").click()
        fresh.locator("[role=tabpanel]:visible").first.get_by_text("Drop File Here").first.wait_for()
        assert "Déposez" not in fresh.locator("body").inner_text()
        fresh.reload()
        fresh.get_by_role("tab", name="1. Dataset").wait_for()
        assert fresh.get_by_role("tab", name="1. Jeu de données").count() == 0
    finally:
        fresh.close()


def test_the_training_summary_counts_class_images_made_meanwhile(app, page, project):
    """Class images made in the Dataset tab (here through the API) show in the Training tab's summary when it is
    shown again, without choosing the project again."""
    page.get_by_role("tab", name="2. Entraînement").click()
    panel = page.locator("[role=tabpanel]:visible").first
    panel.get_by_label("Projet", exact=True).click()
    page.get_by_role("option", name=project).click()
    before = len(list((app.state.projects_dir / project / "reg").glob("*.png")))
    panel.get_by_text(f"{before} images de classe").first.wait_for()
    demo = str(app.state.outputs_dir / "demo" / "sdtrainer-demo-tiny.safetensors")
    Client(app.local_url, verbose=False).predict(name=project, model=demo, count=before + 1,
                                                 api_name="/dataset_generate_class_images")
    page.get_by_role("tab", name="1. Jeu de données").click()
    page.get_by_role("tab", name="2. Entraînement").click()
    page.locator("[role=tabpanel]:visible").first.get_by_text(f"{before + 1} images de classe").first.wait_for()


def test_closing_the_page_stops_its_generation(app, page):
    """A closed tab ends its session (issue 13): the generation it started stops at its next step instead of
    holding the model for minutes, and saves nothing. (A second page of the module's browser, in English.)"""
    saved = set(app.state.txt2img_dir.glob("*.png")) if app.state.txt2img_dir.exists() else set()
    context = page.context.browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(app.local_url)
        tab.get_by_role("tab", name="3. Test").click()
        panel = tab.locator("[role=tabpanel]:visible").first
        panel.get_by_label("Prompt", exact=True).fill("a slow one")
        for label, value in (("Steps", MAX_STEPS), ("Images", 4), ("Width", 512), ("Height", 512)):
            number = panel.get_by_label(f"number input for {label}", exact=True)  # a slider's number box
            number.fill(str(value))  # together: minutes of sampling on the CPU
            number.blur()
        panel.get_by_role("button", name="▶ Generate").click()
        wait_until(lambda: app.state.jobs.count() == 1, seconds=60)
    finally:
        context.close()
    wait_until(lambda: app.state.jobs.count() == 0, seconds=60)
    assert (set(app.state.txt2img_dir.glob("*.png")) if app.state.txt2img_dir.exists() else set()) == saved


def wait_until(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.2)
