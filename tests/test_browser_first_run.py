"""A newcomer's first run in a real browser (Debian's chromium through Playwright, in English): the demo
defaults, the time estimate, the class images' progress from the first seconds and a preview within two
minutes; errors shown under the field to fix, which stays in sight and usable; Pause/Resume only when they
apply; a reload during the run that shows the run's settings. Screenshots go to tests/artifacts/.

Skipped only when /usr/bin/chromium is missing.
"""
import re
import time

import pytest

from conftest import free_port
from test_browser import ARTIFACTS, CHROMIUM, TIMEOUT_MS, browser_page, prepared_project

from sdtrainer.config import CPU_SETTINGS
from sdtrainer.ui.app import build_app

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
              pytest.mark.slow]
FIRST_PREVIEW_S = 120  # the promise for the CPU demo run
LONG_RUN_STEPS = 5000  # long enough to still run while the page reloads
CLASS_IMAGES = 64


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-run")
    blocks = build_app(root / "models", root / "outputs", lang="en")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield blocks
    blocks.close()


@pytest.fixture(scope="module")
def project(app, tmp_path_factory) -> str:
    """Prepared photos and no class images: the first run has to make them."""
    prepared_project(app, tmp_path_factory.mktemp("photos"), "newcomer", seed=1)
    return "newcomer"


@pytest.fixture(scope="module")
def page(app):
    with browser_page(app.local_url) as tab:
        yield tab


def training_panel(page):
    page.get_by_role("tab", name="2. Training").click()
    return page.locator("[role=tabpanel]:visible").first


def choose_project(page, panel, project: str) -> None:
    panel.get_by_label("Project", exact=True).click()
    page.get_by_role("option", name=project).click()


def error_pill(page, elem_id: str):
    """Gradio's red "Error" badge over a component (its status tracker), if any."""
    return page.locator(f"#{elem_id}").get_by_text("Error", exact=True)


def note_under(page, elem_id: str, text: str):
    """The error line saying `text`, once shown; it lies right below the field #elem_id (or its row), across it,
    and no "Error" badge covers the field."""
    note = page.locator(".block.sdt-field-error", has_text=text)
    note.wait_for()
    field, line = page.locator(f"#{elem_id}").bounding_box(), note.bounding_box()
    assert 0 <= line["y"] - (field["y"] + field["height"]) < 40, (field, line)
    assert line["x"] < field["x"] + field["width"] and field["x"] < line["x"] + line["width"], (field, line)
    time.sleep(0.5)  # Gradio's status of the failed event is drawn by now
    assert error_pill(page, elem_id).count() == 0
    return note


def test_errors_show_under_the_field_to_fix_and_leave_it_usable(page, project):
    from playwright.sync_api import expect

    # Training: a run name that cannot be one; the field keeps it, editing it takes the message away
    panel = training_panel(page)
    choose_project(page, panel, project)
    run_name = panel.get_by_label("Run name (optional)")
    run_name.fill("../escape")
    panel.get_by_role("button", name="▶ Start").click()
    note = note_under(page, "sdt-run-name", "“../escape” cannot be a run name")
    expect(run_name).to_have_value("../escape")
    run_name.fill("")
    expect(note).to_have_count(0)
    # Pruning: no checkpoint chosen; the list it asks for opens at once, and choosing takes the message away
    page.get_by_role("tab", name="4. Pruning").click()
    pruning = page.locator("[role=tabpanel]:visible").first
    pruning.get_by_role("button", name="✂ Prune").click()
    note = note_under(page, "sdt-prune-source", "Choose a checkpoint in the list")
    pruning.get_by_label("Checkpoint to prune").click()
    page.get_by_role("option").first.click()
    expect(note).to_have_count(0)
    # Dataset: a subject added without a token; the subject list still opens, typing a token takes the message away
    page.get_by_role("tab", name="1. Dataset").click()
    dataset = page.locator("[role=tabpanel]:visible").first
    dataset.get_by_label("Project", exact=True).click()
    page.get_by_role("option", name=project).click()
    subject = dataset.get_by_label("Subject", exact=True)
    expect(subject).to_have_value("ohwx person", timeout=TIMEOUT_MS)
    dataset.get_by_role("button", name="+ Add subject").click()
    note = note_under(page, "subject", "Enter a token")
    page.screenshot(path=ARTIFACTS / "first-run-field-error.png", full_page=True)
    subject.click()
    page.get_by_role("option", name="ohwx person").wait_for()
    page.keyboard.press("Escape")
    dataset.get_by_label("Another subject: its token").fill("effy")
    expect(note).to_have_count(0)


def test_the_first_demo_run_shows_progress_at_once_and_a_preview_within_two_minutes(page, project):
    panel = training_panel(page)
    choose_project(page, panel, project)
    # demo defaults on the CPU, and what they will cost, before Start
    assert panel.get_by_label("Steps", exact=True).input_value() == str(CPU_SETTINGS["steps"])
    estimate = page.locator("#sdt-estimate")
    estimate.get_by_text(re.compile(rf"About .+ of class images \({CPU_SETTINGS['class_images']} to make\), then "
                                    r".+ of training")).wait_for()
    for name in ("❚❚ Pause", "▶ Resume", "■ Stop"):
        assert panel.get_by_role("button", name=name).is_disabled()
    panel.get_by_label("Steps", exact=True).fill(str(LONG_RUN_STEPS))
    # more class images than the default 8 (about a second): their bar must stay long enough to be seen
    panel.get_by_role("button", name="Advanced settings").click()
    panel.get_by_label("Class images to generate").fill(str(CLASS_IMAGES))
    estimate.get_by_text(f"({CLASS_IMAGES} to make)").wait_for()
    started = time.perf_counter()
    panel.get_by_role("button", name="▶ Start").click()
    panel.get_by_text(re.compile(r"Class images of “person”: \d+ / \d+")).first.wait_for(timeout=15_000)
    progress_s = time.perf_counter() - started
    previews = panel.locator(".gallery-container img, button.thumbnail-item img")
    previews.first.wait_for(timeout=FIRST_PREVIEW_S * 1000)
    preview_s = time.perf_counter() - started
    (ARTIFACTS / "first-run-timing.txt").write_text(f"class images progress shown after {progress_s:.1f} s\n"
                                                   f"first preview after {preview_s:.1f} s\n")
    page.screenshot(path=ARTIFACTS / "first-run-preview.png", full_page=True)
    assert preview_s < FIRST_PREVIEW_S


def test_pause_and_resume_only_when_they_apply_and_a_reload_shows_the_run(page, project):
    from playwright.sync_api import expect

    page.reload()
    panel = training_panel(page)
    # the form shows the running job's settings, not the page's defaults
    expect(panel.get_by_label("Steps", exact=True)).to_have_value(str(LONG_RUN_STEPS), timeout=TIMEOUT_MS)
    expect(panel.get_by_label("Project", exact=True)).to_have_value(project)
    pause, resume, stop = (panel.get_by_role("button", name=n) for n in ("❚❚ Pause", "▶ Resume", "■ Stop"))
    expect(pause).to_be_enabled(timeout=TIMEOUT_MS)
    expect(resume).to_be_disabled()
    pause.click()
    expect(resume).to_be_enabled(timeout=TIMEOUT_MS)
    expect(pause).to_be_disabled()
    resume.click()
    expect(pause).to_be_enabled(timeout=TIMEOUT_MS)
    stop.click()
    panel.get_by_text("Stopped", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    expect(stop).to_be_disabled(timeout=TIMEOUT_MS)
    expect(panel.get_by_role("button", name="▶ Start")).to_be_enabled()
    page.screenshot(path=ARTIFACTS / "first-run-stopped.png", full_page=True)
