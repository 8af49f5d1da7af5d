"""The web app: one server-side state object, a header, and the four tabs.

    app = build_app(Path("models"), Path("outputs"), lang=None)   # builds; starts nothing
    app.launch(server_name="127.0.0.1", server_port=7860)          # with our translations and styles

Everything that must outlive a browser tab (the model cache and its GPU lock, the training sessions,
the running jobs) lives in AppState, made by build_app and handed to each tab; nothing is kept at
module level, so two apps (tests) never share anything.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from sdtrainer.checkpoint import CheckpointInfo
from sdtrainer.config import Device
from sdtrainer.models import DEMO_MODEL_NAME, ModelCache, ensure_demo_model, is_demo, list_checkpoints, list_loras
from sdtrainer.session import SessionManager
from sdtrainer.ui.common import Jobs, Lists, model_choices, model_facts
from sdtrainer.ui.dataset_tab import DatasetTab
from sdtrainer.ui.guard import RewritePages, host_guard, slow_login, without_api_info
from sdtrainer.ui.i18n import Say, UIError, language_js, request_lang, translations, with_locale_script
from sdtrainer.ui.projects import list_projects
from sdtrainer.ui.pruning_tab import PruningTab
from sdtrainer.ui.test_tab import TestTab
from sdtrainer.ui.training_tab import TrainingTab

LOCK_TIMEOUT_S = 2.0
SESSIONS_KEPT = 64  # browser sessions whose state the server keeps (an older one reopened starts afresh)
CSS = """
.sdt-banner { background: #fff4d6; border: 1px solid #f0c36d; border-radius: 8px; padding: 10px 14px; }
.sdt-banner p, .sdt-banner code { color: #5a4500; }
.sdt-status p { margin: 4px 0; }
/* image cards: the label (warnings, then the caption) wraps over up to 3 lines instead of being cut */
.sdt-cards .gallery-item .caption-label { white-space: normal; display: -webkit-box; -webkit-line-clamp: 3;
                                          -webkit-box-orient: vertical; line-height: 1.25; max-width: 100%; }
/* the GPU report's long lines wrap instead of being cut at the box's edge */
.sdt-status pre, .sdt-status pre code { white-space: pre-wrap; word-break: break-word; }
.sdt-warning p { color: #a05a00; font-weight: 500; }
/* an error under the field it is about (common.field_note); empty, it takes no room */
.sdt-field-error p { color: var(--error-text-color); font-weight: 500; margin: 0; }
.sdt-advice ul { margin-top: 0; }
.sdt-title h1 { margin-bottom: 0; }
/* Gradio 6.31 cuts a plot's legend (which line is which) off below its fixed height: give it room */
.sdt-plot { padding-bottom: 30px; }
.sdt-plot, .sdt-plot * { overflow: visible !important; }
"""


@dataclass
class AppState:
    models_dir: Path
    outputs_dir: Path
    default_lang: str | None = None  # --lang; None: the browser's
    allowed_dirs: tuple[Path, ...] = ()  # --allow-dir: more folders whose files the app may read
    cache: ModelCache = field(default_factory=ModelCache)
    sessions: SessionManager | None = None
    jobs: Jobs = field(default_factory=Jobs)

    def __post_init__(self):
        self.models_dir, self.outputs_dir = Path(self.models_dir).resolve(), Path(self.outputs_dir).resolve()
        self.allowed_dirs = tuple(Path(d).resolve() for d in self.allowed_dirs)
        for folder in (self.models_dir, self.projects_dir, self.txt2img_dir, self.grids_dir, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        if self.sessions is None:
            self.sessions = SessionManager(self.cache)

    # --- folders
    @property
    def projects_dir(self) -> Path:
        return self.outputs_dir / "projects"

    @property
    def txt2img_dir(self) -> Path:
        return self.outputs_dir / "txt2img"

    @property
    def grids_dir(self) -> Path:
        return self.outputs_dir / "grids"

    @property
    def pruned_dir(self) -> Path:
        return self.outputs_dir / "pruned"

    @property
    def runs_dir(self) -> Path:
        return self.outputs_dir / "runs"

    @property
    def lora_dir(self) -> Path:
        return self.outputs_dir / "lora"

    # --- language
    def say(self, request: gr.Request | None) -> Say:
        return Say(request_lang(request, self.default_lang))

    # --- models
    def has_real_model(self) -> bool:
        return bool(list_checkpoints(self.models_dir))

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.models_dir, self.outputs_dir)

    def model_choices(self, states: bool = False) -> list[tuple[str, str]]:
        """Every model file, grouped, with short labels; `states`: also the runs' training states (Pruning)."""
        return model_choices(self.checkpoints(), self.models_dir, self.outputs_dir, states)

    def lora_choices(self) -> list[tuple[str, str]]:
        """("—", "") for no LoRA, then every LoRA file in the app's folders, labelled like the model lists."""
        paths = list_loras(self.models_dir, self.outputs_dir)
        return [("—", "")] + model_choices(paths, self.models_dir, self.outputs_dir)

    def lora_dropdown_update(self, current: str | None):
        choices = self.lora_choices()
        if not current or current in {path for _, path in choices}:
            return gr.update(choices=choices)  # no value: one set meanwhile (a restored form) stays
        return gr.update(choices=choices, value="")

    def checked_lora(self, value: str | None) -> Path | None:
        """The LoRA file a request names (None for none), inside the app's folders."""
        if not value:
            return None
        path = self.confined(value)
        if not path.is_file():
            raise UIError("err_model_missing", name=path.name)
        return path

    def default_model(self) -> str | None:
        """The newest checkpoint in models/, else the demo model."""
        found = list_checkpoints(self.models_dir) or [ensure_demo_model(self.outputs_dir)]
        return str(found[0])

    def default_resolution(self) -> int:
        return 512 if self.has_real_model() else 64

    def model_dropdown_update(self, current: str | list[str] | None, states: bool = False):
        choices = self.model_choices(states)
        paths = {path for _, path in choices}
        if isinstance(current, list):
            kept = [c for c in current if c in paths]
            return gr.update(choices=choices, **({"value": kept} if kept != current else {}))
        stale = current is not None and (current not in paths or (self.has_real_model() and self.is_demo_path(current)))
        # only a value that must change is sent: the page's may have changed since this update was asked for
        return gr.update(choices=choices, value=self.default_model()) if stale else gr.update(choices=choices)

    def checked_model(self, value: str | None) -> Path:
        if not value:
            raise UIError("err_no_model")
        path = self.confined(value)
        if not path.is_file():
            raise UIError("err_model_missing", name=path.name)
        return path

    # --- which files the app reads: those of its folders only, whatever a request names
    @property
    def roots(self) -> tuple[Path, ...]:
        return self.models_dir, self.outputs_dir, *self.allowed_dirs

    def is_inside(self, path: Path | str) -> bool:
        """Whether `path` lies in models/, outputs/ or an --allow-dir folder (`..` resolved; links the user put
        there are followed, as the pickers list them)."""
        absolute = Path(os.path.abspath(path))
        return any(absolute.is_relative_to(root) for root in self.roots)

    def confined(self, value: str | Path) -> Path:
        """The path a request names, or UIError when it lies outside the app's folders (the dropdowns accept typed
        values, and the API takes any text)."""
        path = Path(value)
        if not self.is_inside(path):
            raise UIError("err_outside_folders", path=path, folders=", ".join(str(r) for r in self.roots))
        return Path(os.path.abspath(path))

    @staticmethod
    def is_demo(info: CheckpointInfo) -> bool:
        return is_demo(info.metadata, info.config.name)

    @staticmethod
    def is_demo_file(path: Path) -> bool:
        return model_facts(path)["demo"]

    def is_demo_path(self, value: str) -> bool:
        """The built-in demo model (not a run trained from it): replaced by a real model once there is one."""
        return Path(value) == self.outputs_dir / "demo" / DEMO_MODEL_NAME

    def end_session(self, request: gr.Request) -> None:
        """A browser tab was closed or reloaded: stop what it started (generation, class images), so that nobody
        waits behind a job whose page is gone. Training is not stopped: it runs on without a page."""
        self.jobs.stop_session(request.session_hash)

    # --- the GPU
    def training_active(self) -> bool:
        session = self.sessions.current
        return session is not None and session.active

    def training_on_gpu(self) -> bool:
        return self.training_active() and self.sessions.current.config.device is Device.CUDA

    @contextmanager
    def model_lock(self):
        """Hold the model lock for generation; UIError when a training or another generation has it."""
        if self.training_on_gpu():
            raise UIError("err_gpu_training")
        if not self.cache.lock.acquire(timeout=LOCK_TIMEOUT_S):
            raise UIError("err_training_holds_model" if self.training_active() else "err_busy")
        try:
            yield
        finally:
            self.cache.lock.release()


class TrainerApp(gr.Blocks):
    """gr.Blocks that launches with the app's translations, styles and output folder unless told otherwise, and
    keeps the state of the SESSIONS_KEPT latest browser sessions (Gradio's default, 10000, lets a long-running
    app grow by ~0.4 MB for every page ever opened: each session holds a copy of the page's configuration)."""

    def __init__(self, state: AppState, **kwargs):
        super().__init__(**kwargs)
        self.state = state

    def launch(self, *args, allowed_hosts: tuple[str, ...] = (), **kwargs):
        """Gradio's launch, behind HostGuard: requests must name 127.0.0.1, localhost, an IP address of this
        computer or one of allowed_hosts ("*": any). A (user, password) auth becomes a throttled login. Pages get
        with_locale_script, so that Gradio's own strings are in the chosen language too."""
        server = kwargs.get("server_name") or "127.0.0.1"
        app_kwargs = dict(kwargs.get("app_kwargs") or {})
        def pages(html: bytes) -> bytes:  # the login page without the API; every page in the chosen language
            return with_locale_script(without_api_info(html), self.state.default_lang)

        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), host_guard([server, *allowed_hosts]),
                                    Middleware(RewritePages, rewrite=pages)]
        kwargs["app_kwargs"] = app_kwargs
        if isinstance(kwargs.get("auth"), tuple):
            kwargs["auth"] = slow_login(*kwargs["auth"])
        kwargs.setdefault("i18n", translations())
        kwargs.setdefault("css", CSS)
        kwargs.setdefault("allowed_paths", [str(self.state.outputs_dir)])
        kwargs.setdefault("footer_links", ["api", "settings"])
        kwargs.setdefault("state_session_capacity", SESSIONS_KEPT)
        return super().launch(*args, **kwargs)


def build_app(models_dir: Path | str = "models", outputs_dir: Path | str = "outputs",
              lang: str | None = None, allowed_dirs: tuple[Path | str, ...] = ()) -> TrainerApp:
    """The whole UI over a new AppState; writes the demo model when models/ has no checkpoint."""
    state = AppState(Path(models_dir), Path(outputs_dir), default_lang=lang, allowed_dirs=tuple(allowed_dirs))
    if not state.has_real_model():
        ensure_demo_model(state.outputs_dir)
    T = translations()
    with TrainerApp(state, title="sdtrainer") as app:
        banner, refresh, lang_switch = render_header(state, T)
        lists, tabs, training = Lists(), {}, TrainingTab(state)
        with gr.Tabs():
            for tab, label in ((DatasetTab(state), "tab_dataset"), (training, "tab_training"),
                               (TestTab(state), "tab_test"), (PruningTab(state), "tab_pruning")):
                with gr.Tab(T(label), id=label) as tabs[label]:
                    found = tab.render(T)
                    lists.models += found.models
                    lists.projects += found.projects
                    lists.prunable += found.prunable
                    lists.loras += found.loras
        # Gradio translates tab titles once; sending them again after a language change redraws them.
        on_load, on_switch = language_js(lang)
        retitle = {"fn": lambda: [gr.Tab(label=T(label)) for label in tabs], "outputs": list(tabs.values()),
                   "api_visibility": "private", "show_progress": "hidden"}
        app.load(None, outputs=lang_switch, js=on_load, api_name="language_load",
                 api_visibility="private").then(api_name="language_load_titles", **retitle)
        lang_switch.input(None, inputs=lang_switch, outputs=lang_switch, js=on_switch, api_name="language_switch",
                          api_visibility="private").then(api_name="language_switch_titles", **retitle)
        # Files change behind the page's back (a model dropped into models/, a run's checkpoints, a project made
        # in another tab): every list is read again on page load, on the header's button and on each tab switch.
        current = lists.models + lists.prunable + lists.projects + lists.loras
        refresh_lists = {"fn": lambda *values: refreshed_lists(state, lists, values), "inputs": current,
                         "outputs": [banner, *current], "show_progress": "hidden"}
        gr.on([refresh.click, *(tab.select for tab in tabs.values())], api_name="refresh_lists",
              trigger_mode="always_last", **refresh_lists)
        # on page load, after the lists: a reload during a run shows that run's settings in the Training form
        app.load(api_name="refresh_lists_on_load", api_visibility="private", **refresh_lists).then(
            training.restore_form, outputs=training.form, api_name="training_restore_form", show_progress="hidden")
        # A closed (or reloaded) tab ends its session: its generation or class images stop instead of holding the
        # GPU. Registered last: gradio_client numbers the events without it, so any event after it would be
        # called one off.
        app.unload(state.end_session)
    return app


def refreshed_lists(state: AppState, lists: Lists, values: tuple) -> list:
    """Updates for the demo banner, every model, project and LoRA dropdown, keeping what is chosen."""
    n, m = len(lists.models), len(lists.models) + len(lists.prunable)
    p = m + len(lists.projects)
    models, prunable, projects, loras = values[:n], values[n:m], values[m:p], values[p:]
    names = list_projects(state.projects_dir)
    return ([gr.update(visible=not state.has_real_model())] + [state.model_dropdown_update(v) for v in models]
            + [state.model_dropdown_update(v, states=True) for v in prunable]
            + [gr.update(choices=names) if not v or v in names else gr.update(choices=names, value=None)
               for v in projects]
            + [state.lora_dropdown_update(v) for v in loras])


def render_header(state: AppState, T: gr.I18n) -> tuple[gr.Column, gr.Button, gr.Radio]:
    with gr.Row():
        gr.Markdown(T("app_title"), elem_classes=["sdt-title"])
        with gr.Column(scale=0, min_width=230):
            lang_switch = gr.Radio([("English", "en"), ("Français", "fr")], value=None, show_label=False,
                                   container=False, elem_id="sdt-lang")
            refresh = gr.Button(T("refresh_models"), size="sm")
    with gr.Column(visible=not state.has_real_model(), elem_classes=["sdt-banner"]) as banner:
        gr.Markdown(T("demo_banner"))
        gr.Markdown(f"`{state.models_dir}`")
    if state.cache.device.type == "cpu":
        gr.Markdown(T("cpu_notice"), elem_classes=["sdt-warning"])
    return banner, refresh, lang_switch
