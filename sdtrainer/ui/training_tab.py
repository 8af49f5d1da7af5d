"""Training tab: settings (declared once in SETTINGS), GPU check, start/pause/resume/stop, live progress.

    tab = TrainingTab(state)
    with gr.Tab(T("tab_training")):
        tab.render(T)

The run lives in the server's SessionManager, not in the page: a gr.Timer polls its snapshot every
second, so closing the browser tab does not stop training and reopening shows it again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from ldm.samplers import SamplerName
from sdtrainer.config import (ALL_DEVICES, DEFAULT_PRESET, PRESET_VRAM_GIB, Concept, Device, LRSchedule, Method,
                              OptimizerName, Precision, Range, SaveFormat, TrainConfig, defaults_for, field_range,
                              load_config, number_text, preset_names)
from sdtrainer import models
from sdtrainer.estimate import estimate, minutes
from sdtrainer.messages import Message
from sdtrainer.preflight import GateReport, GpusReport
from sdtrainer.session import SessionBusy, SessionState, Status, gate_report
from sdtrainer.trainer import RunPaths, check_run_folder
from sdtrainer.ui.common import MODEL_ERRORS, PROJECT_ERRORS, USER_ERRORS, Lists, field_note, with_notes
from sdtrainer.ui.i18n import Say, UIError, warn
from sdtrainer.ui.projects import Project, Subject, list_projects

if TYPE_CHECKING:
    from sdtrainer.ui.app import AppState

POLL_S = 1.0
BAR_WIDTH = 24
RUN_NAME_CHARS = "-_."
RUN_NAME_ERRORS = ("err_run_name", "run_exists", "run_nothing_to_resume")  # shown under the run name
PROJECT_NOT_READY = ("err_save_settings_first", "err_no_prepared", "err_subject_no_prepared")  # under the project
GATE_SETTINGS = ("ema", "devices", "method", "precision", "gradient_checkpointing")  # what the gate's figure reads
ESTIMATE_SETTINGS = ("steps", "class_images", "preview_every", "prior_loss_weight", "batch_size", "grad_accum",
                     "preview_steps")


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field in the UI: label key `cfg_<name>`, help key `cfg_<name>_info`; a number's accepted
    values are the Range declared on the field (sdtrainer.config), the same that check_config enforces."""
    name: str
    kind: str = "float"  # int, float, optional_float (0 = unset), bool, choice, lines, ints, devices (N or all)
    choices: type[Enum] | None = None
    advanced: bool = True

    @property
    def range(self) -> Range | None:
        return field_range(self.name)


SETTINGS = (
    Setting("steps", "int", advanced=False),
    Setting("learning_rate", "float", advanced=False),
    Setting("save_every", "int", advanced=False),
    Setting("preview_every", "int", advanced=False),
    Setting("prior_loss_weight", "float", advanced=False),
    Setting("method", "choice", choices=Method, advanced=False),
    Setting("lora_rank", "int", advanced=False),
    Setting("lora_learning_rate", "float", advanced=False),
    Setting("lora_alpha", "float"),
    Setting("lora_conv_rank", "int"),
    Setting("class_images", "int"),
    Setting("batch_size", "int"),
    Setting("grad_accum", "int"),
    Setting("lr_schedule", "choice", choices=LRSchedule),
    Setting("warmup_steps", "int"),
    Setting("precision", "choice", choices=Precision),
    Setting("optimizer", "choice", choices=OptimizerName),
    Setting("gradient_checkpointing", "bool"),
    Setting("cuda_graphs", "bool"),
    Setting("train_text_encoder", "bool"),
    Setting("text_encoder_lr", "optional_float"),
    Setting("ema", "bool"),
    Setting("ema_decay", "float"),
    Setting("max_grad_norm", "float"),
    Setting("weight_decay", "float"),
    Setting("noise_offset", "float"),
    Setting("min_snr_gamma", "float"),
    Setting("repeats", "int"),
    Setting("flip_p", "float"),
    Setting("save_format", "choice", choices=SaveFormat),
    Setting("save_half", "bool"),
    Setting("keep_all_states", "bool"),
    Setting("preview_prompts", "lines"),
    Setting("preview_seeds", "ints"),
    Setting("preview_steps", "int"),
    Setting("preview_sampler", "choice", choices=SamplerName),
    Setting("seed", "int"),
    Setting("devices", "devices"),
)
SETTING = {s.name: s for s in SETTINGS}
DEVICE_CHOICES = ["1", "2", "3", "4", "8", ALL_DEVICES]  # any other number may be typed


def shown(setting: Setting, value: Any) -> Any:
    """A config value as its component shows it."""
    if setting.kind == "lines":
        return "\n".join(value)
    if setting.kind == "ints":
        return ", ".join(str(v) for v in value)
    if setting.kind == "optional_float":
        return value or 0
    if setting.kind == "devices":
        return str(value)
    return value.value if isinstance(value, Enum) else value


def parsed(setting: Setting, value: Any, say: Say) -> Any:
    """A component's value as the config wants it; UIError naming the field (by its label) when it cannot be."""
    if setting.kind == "lines":
        return [line.strip() for line in (value or "").splitlines() if line.strip()]
    if setting.kind == "ints":
        try:
            return [int(v) for v in (value or "").replace(",", " ").split()]
        except ValueError:
            raise UIError("err_setting_ints", name=say(f"cfg_{setting.name}")) from None
    if setting.kind == "bool":
        return bool(value)
    if setting.kind == "choice":
        return value
    if setting.kind == "devices":  # check_config says what a devices value must be
        text = str(value).strip()
        return int(text) if text.isdigit() else text
    if setting.kind == "optional_float" and value == 0:
        return None
    accepted = setting.range
    if value is None or value not in accepted:
        raise UIError("err_setting_range", name=say(f"cfg_{setting.name}"), value=value,
                      low=number_text(accepted.low), high=number_text(accepted.high))
    return int(value) if setting.kind == "int" else float(value)


def component(setting: Setting, T: gr.I18n, value: Any) -> gr.components.Component:
    label, info = T(f"cfg_{setting.name}"), T(f"cfg_{setting.name}_info")
    if setting.kind == "bool":
        return gr.Checkbox(value, label=label, info=info)
    if setting.kind == "choice":
        return gr.Dropdown([c.value for c in setting.choices], value=value, label=label, info=info)
    if setting.kind == "devices":
        return gr.Dropdown(DEVICE_CHOICES, value=value, label=label, info=info, allow_custom_value=True)
    if setting.kind in ("lines", "ints"):
        return gr.Textbox(value, label=label, info=info, lines=3 if setting.kind == "lines" else 1)
    # no minimum/maximum here: `parsed` checks the range with a message that names the field, in the page's language
    return gr.Number(value, label=label, info=info, precision=0 if setting.kind == "int" else None)


def preset_label(name: str) -> str:
    gib = PRESET_VRAM_GIB.get(name)
    return f"{name} — {gib:g} GiB VRAM" if gib else name


def presets_by_vram() -> list[str]:
    """The shipped presets, the one needing the most VRAM first."""
    return sorted(preset_names(), key=lambda n: -PRESET_VRAM_GIB.get(n, 0))


def default_device() -> Device:
    """The device Start trains on (sdtrainer.models.default_device, as a config choice)."""
    return Device(models.default_device().type)


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`██████░░░░ 60%`: a bar that reads the same in any language and in the log."""
    fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
    filled = round(fraction * width)
    return f"`{'█' * filled}{'░' * (width - filled)}` {fraction:.0%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TrainingTab:
    def __init__(self, state: AppState):
        self.state = state

    # ------------------------------------------------------------------ layout
    def render(self, T: gr.I18n) -> Lists:
        """Lay the tab out and wire it; returns its dropdowns of models and projects (refreshed on page load)."""
        defaults = load_config(DEFAULT_PRESET, device_defaults=defaults_for(default_device()))
        gr.Markdown(T("tr_intro"))
        with gr.Row():
            project = gr.Dropdown(list_projects(self.state.projects_dir), value=None, label=T("tr_project"),
                                  allow_custom_value=True,
                                  info=T("tr_project_info"), scale=2)
            refresh = gr.Button("⟳", scale=0, min_width=48, size="sm")
            model = gr.Dropdown(self.state.model_choices(), value=self.state.default_model(), label=T("tr_model"),
                                allow_custom_value=True,
                                info=T("tr_model_info"), scale=3)
            preset = gr.Dropdown([(preset_label(n), n) for n in presets_by_vram()], value=DEFAULT_PRESET,
                                 label=T("tr_preset"), info=T("tr_preset_info"), scale=2)
        choice_note = field_note(project, model)
        summary = gr.Markdown(elem_classes=["sdt-status"])
        with gr.Row(equal_height=True):
            run_name = gr.Textbox(label=T("tr_run_name"), info=T("tr_run_name_info"), scale=3, elem_id="sdt-run-name")
            resume_run = gr.Checkbox(False, label=T("tr_resume_run"), info=T("tr_resume_run_info"), scale=2)
        run_name_note = field_note(run_name, resume_run)
        settings = {}
        with gr.Row():
            for s in (s for s in SETTINGS if not s.advanced):
                settings[s.name] = component(s, T, shown(s, getattr(defaults, s.name)))
        with gr.Accordion(T("tr_advanced"), open=False):
            advanced = [s for s in SETTINGS if s.advanced]
            for row in range(0, len(advanced), 4):
                with gr.Row():
                    for s in advanced[row:row + 4]:
                        settings[s.name] = component(s, T, shown(s, getattr(defaults, s.name)))
        if default_device() is Device.CPU:
            gr.Markdown(T("tr_cpu_note"), elem_classes=["sdt-warning"])
        estimate = gr.Markdown(elem_classes=["sdt-status"], elem_id="sdt-estimate")
        with gr.Row():
            check = gr.Button(T("tr_check_gpu"))
            start = gr.Button(T("tr_start"), variant="primary", elem_id="sdt-start")
            pause = gr.Button(T("tr_pause"), interactive=False, elem_id="sdt-pause")  # see controls()
            resume = gr.Button(T("tr_resume"), interactive=False, elem_id="sdt-resume")
            stop = gr.Button(T("tr_stop"), variant="stop", interactive=False, elem_id="sdt-stop")
        message = gr.Markdown(elem_classes=["sdt-status"], elem_id="sdt-training-message")
        live = self.render_live(T)

        refresh.click(self.refresh_projects, inputs=project, outputs=project, api_name="training_refresh_projects")
        project.change(self.project_summary, inputs=project, outputs=summary, api_name="training_project_summary",
                       show_progress="hidden")
        # .input, not .change: a preset picked by the user fills the settings, one restored from a run does not
        preset.input(self.preset_values, inputs=preset, outputs=list(settings.values()),
                     api_name="training_preset_values")
        estimated = {"project": project, "model": model, "preset": preset,
                     **{k: settings[k] for k in ESTIMATE_SETTINGS}}
        gr.on([c.change for c in estimated.values()], self.estimate, inputs_kwargs=estimated, outputs=estimate,
              api_name="training_estimate", show_progress="hidden", trigger_mode="always_last")
        check.click(self.check_gpu, inputs_kwargs={"preset": preset, **{k: settings[k] for k in GATE_SETTINGS}},
                    outputs=message, api_name="training_check_gpu")
        notes = {choice_note: (*PROJECT_ERRORS, *PROJECT_NOT_READY, *MODEL_ERRORS), run_name_note: RUN_NAME_ERRORS}
        start.click(inputs_kwargs={"project": project, "model": model, "preset": preset, "run_name": run_name,
                                   "resume_run": resume_run, **settings},
                    api_name="training_start", **with_notes(self.start, [message, run_name], message, notes)
                    ).success(lambda: gr.update(interactive=False), outputs=start,
                              api_visibility="private")
        pause.click(self.pause, outputs=message, api_name="training_pause")
        resume.click(self.resume, outputs=message, api_name="training_resume")
        stop.click(self.stop, outputs=message, api_name="training_stop")
        timer = gr.Timer(POLL_S)
        outputs = [live["progress"], live["loss"], live["meter"], live["vram"], live["previews"], live["log"],
                   live["seen"]]
        timer.tick(self.poll, inputs=live["seen"], outputs=outputs, api_name="training_state",
                   show_progress="hidden", concurrency_limit=None)
        timer.tick(self.controls, outputs=[start, pause, resume, stop], api_name="training_controls",
                   show_progress="hidden", concurrency_limit=None)
        self.form = [project, model, preset, run_name, resume_run, *settings.values()]
        # class images made by a run (or in the Dataset tab) change the project's counts behind the page's back
        timer.tick(self.summary_if_changed, inputs=[project, summary], outputs=summary,
                   api_name="training_summary_refresh", show_progress="hidden", concurrency_limit=None)
        return Lists(models=[model], projects=[project])

    def render_live(self, T: gr.I18n) -> dict:
        progress = gr.Markdown(elem_classes=["sdt-status"])
        with gr.Row():
            # axis titles and series names come with the data, in the page's language (see loss_frame)
            loss = gr.LinePlot(x="step", y="value", color="series", label=T("tr_loss"), height=300,
                                elem_classes=["sdt-plot"])
            meter = gr.LinePlot(x="step", y="value", color="series", label=T("tr_meter"), height=300,
                                elem_classes=["sdt-plot"])
            vram = gr.LinePlot(x="step", y="value", color="series", label=T("tr_vram"), height=300,
                                elem_classes=["sdt-plot"])
        previews = gr.Gallery(label=T("tr_previews"), columns=3, height=420, object_fit="contain")
        with gr.Accordion(T("tr_log"), open=False):
            log = gr.Textbox(lines=12, max_lines=12, show_label=False, autoscroll=True, interactive=False)
        seen = gr.State(None)  # what this page already shows, so unchanged plots are not re-sent
        return {"progress": progress, "loss": loss, "meter": meter, "vram": vram, "previews": previews, "log": log,
                "seen": seen}

    # ------------------------------------------------------------------ settings
    def refresh_projects(self, current: str | None):
        names = list_projects(self.state.projects_dir)
        return gr.update(choices=names, value=current if current in names else None)

    def project_summary(self, project: str | None, request: gr.Request) -> str:
        """What the chosen project will train: each subject's token, class, photo and class image counts."""
        say = self.state.say(request)
        if not project:
            return ""
        try:
            proj = Project.open(self.state.projects_dir / Path(project).name)
        except UIError as e:
            return "⚠ " + say(e.key, **e.fmt)
        counts = [(s, len(s.prepared()), len(s.class_images())) for s in proj.subjects]
        if len(counts) == 1:
            [(only, photos, classes)] = counts
            text = say("tr_project_summary", token=only.token or "?", class_word=only.class_word,
                       photos=photos, classes=classes, resolution=proj.resolution)
        else:
            text = "\n".join([say("tr_project_summary_many", n=len(counts), resolution=proj.resolution)] + [
                "- " + say("tr_summary_subject", token=s.token, class_word=s.class_word, photos=photos,
                           classes=classes) for s, photos, classes in counts])
        if missing := unprepared(proj):
            text += "\n\n⚠ " + say(missing.key, **missing.fmt)
        elif not all(classes for _, _, classes in counts):
            text += "\n\n" + say("tr_no_class_images")
        return text

    def estimate(self, project: str | None, model: str | None, preset: str, request: gr.Request, **settings) -> str:
        """About how long Start will take: the class images the project still lacks, then the steps."""
        say = self.state.say(request)
        try:
            proj = Project.open(self.state.projects_dir / Path(project or "").name) if project else None
            values = {s.name: parsed(s, settings[s.name], say) for s in SETTINGS if s.name in settings}
            cfg = load_config(preset if preset in preset_names() else DEFAULT_PRESET, values=values,
                              device_defaults=defaults_for(default_device()))
        except (UIError, *USER_ERRORS):
            return ""
        if proj is None or not all(s.token for s in proj.subjects):
            return ""
        demo = bool(model) and Path(model).is_file() and self.state.is_demo_file(Path(model))
        to_make = class_images_to_make(proj, cfg.class_images)
        est = estimate(cfg, to_make, demo)
        text = (say("tr_estimate", classes=minutes(est.class_images_s), n=to_make, training=minutes(est.training_s))
                if est.class_images_s else say("tr_estimate_training", training=minutes(est.training_s)))
        return "⏱ " + text + ("" if demo or cfg.device is Device.CPU else " " + say("tr_estimate_gpu_note"))

    def summary_if_changed(self, project: str | None, shown: str | None, request: gr.Request):
        text = self.project_summary(project, request)
        return gr.skip() if text == (shown or "") else text

    def preset_values(self, preset: str):
        cfg = load_config(preset if preset in preset_names() else DEFAULT_PRESET,
                          device_defaults=defaults_for(default_device()))
        return [shown(s, getattr(cfg, s.name)) for s in SETTINGS]

    def config(self, project: Project, model: Path, preset: str, settings: dict[str, Any], say: Say) -> TrainConfig:
        """The run's TrainConfig: preset, then the UI's settings, then the project's folders and words.

        The first subject is `images`/`token`/`class_word`, each other one a `concepts` entry (with the same
        repeats: every subject equally often). Class images missing for a class word are generated into the
        project's reg/ (reg/<class_word>/ when the run has several class words), where the next run finds them."""
        values = {s.name: parsed(s, settings[s.name], say) for s in SETTINGS}
        first, *others = project.subjects
        device = default_device()
        values.update(model=str(model), images=str(first.prepared_dir), token=first.token,
                      class_word=first.class_word, resolution=project.resolution, crop="center",
                      reg_images=str(project.reg_dir) if first.class_images() else None,
                      class_images_dir=str(project.reg_dir), concepts=[concept(s, values["repeats"]) for s in others],
                      device=device.value)
        if device is Device.CPU:
            values["precision"] = Precision.FP32.value  # bf16 autocast on a CPU only makes it slower
        return load_config(preset, values=values, device_defaults=defaults_for(device))

    def check_gpu(self, preset: str, request: gr.Request, **settings) -> str:
        """The gate's verdict for the preset with the settings its figure reads (GATE_SETTINGS; those not given
        are the preset's)."""
        say = self.state.say(request)
        with say.errors(*USER_ERRORS):
            cfg = load_config(preset, values={k: parsed(SETTING[k], v, say) for k, v in settings.items()})
        report = gate_report(cfg, self.state.sessions.probe)
        return gate_text(report, say) if no_cuda_cause(report) is None else cpu_gate_text(report, say)

    # ------------------------------------------------------------------ controls
    def start(self, project: str | None, model: str | None, preset: str, run_name: str, resume_run: bool,
              request: gr.Request, **settings):
        say = self.state.say(request)
        with say.errors(*USER_ERRORS):
            if not project:
                raise UIError("err_no_project")
            proj = Project.open(self.state.projects_dir / Path(project).name)
            if not all(s.token and s.class_word for s in proj.subjects):
                raise UIError("err_save_settings_first")
            if missing := unprepared(proj):
                raise missing
            path = self.state.checked_model(model)
            name = self.run_name(run_name, proj)
            check_run_folder(RunPaths(self.state.runs_dir / name), bool(resume_run))  # before "started", not after
            cfg = self.config(proj, path, preset, settings, say)
            try:
                session = self.state.sessions.start(cfg, self.state.runs_dir / name, resume=bool(resume_run))
            except SessionBusy:
                raise UIError("err_session_busy") from None
        if cfg.device is Device.CPU and not self.state.is_demo_file(path):
            warn(say("tr_cpu_real_model"))
        return say("msg_training_started", run=name, folder=session.run_dir), name

    def run_name(self, run_name: str, project: Project) -> str:
        name = (run_name or "").strip() or f"{project.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not all(c.isalnum() or c in RUN_NAME_CHARS for c in name) or name.startswith("."):
            raise UIError("err_run_name", name=name)
        return name

    def start_enabled(self):
        """Start is greyed out while a run is active (preparing, running, paused or stopping)."""
        snap = self.state.sessions.snapshot()
        return gr.update(interactive=snap is None or not snap.active)

    def controls(self):
        """Start, Pause, Resume and Stop, each clickable only when it applies: Pause while steps run, Resume
        while paused, Stop while a run is active and not already stopping."""
        snap = self.state.sessions.snapshot()
        status = snap.status if snap is not None else Status.IDLE
        return (self.start_enabled(), gr.update(interactive=status is Status.RUNNING),
                gr.update(interactive=status is Status.PAUSED),
                gr.update(interactive=status in (Status.PREPARING, Status.RUNNING, Status.PAUSED)))

    def restore_form(self):
        """After a reload during a run, the form shows that run's project, model, preset, name and settings
        (the page's defaults otherwise would claim settings the run does not use); nothing changes when idle."""
        session = self.state.sessions.current
        if session is None or not session.active:
            return [gr.skip()] * len(self.form)
        cfg = session.config
        project = Path(cfg.images).resolve().relative_to(self.state.projects_dir).parts[0] \
            if Path(cfg.images).resolve().is_relative_to(self.state.projects_dir) else None
        return [project, cfg.model, cfg.preset, session.run_dir.name, session.resume_run,
                *(shown(s, getattr(cfg, s.name)) for s in SETTINGS)]

    def active_session(self):
        session = self.state.sessions.current
        return session if session is not None and session.active else None

    def pause(self, request: gr.Request) -> str:
        return self.control(request, "pause", "msg_training_paused")

    def resume(self, request: gr.Request) -> str:
        return self.control(request, "resume", "msg_training_resumed")

    def stop(self, request: gr.Request) -> str:
        snap = self.state.sessions.snapshot()
        before_step_1 = snap is not None and not snap.history
        return self.control(request, "stop", "msg_training_stopping_preparing" if before_step_1
                            else "msg_training_stopping")

    def control(self, request: gr.Request, action: str, done_key: str) -> str:
        say = self.state.say(request)
        session = self.active_session()
        if session is None:
            warn(say("msg_no_training"))
            return say("msg_no_training")
        getattr(session, action)()
        return say(done_key)

    # ------------------------------------------------------------------ live view
    def poll(self, seen: tuple | None, request: gr.Request):
        """Progress text, plots, previews and log of the current run; unchanged parts are skipped."""
        say = self.state.say(request)
        session = self.state.sessions.current
        if session is None:
            return say("tr_no_run"), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen
        snap = session.snapshot()
        key = (str(snap.run_dir), snap.status.value, snap.step, len(snap.previews), snap.logged, len(snap.meter))
        text = self.progress_text(snap, say)
        if key == seen:
            return text, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen
        on_gpu = session.config.device is Device.CUDA
        titles = {"x_title": say("tr_plot_step"), "color_title": say("tr_plot_series")}
        loss = gr.update(value=self.loss_frame(snap, say), y_title=say("tr_plot_loss"), **titles)
        meter = gr.update(value=self.meter_frame(snap, say), y_title=say("tr_plot_score"), **titles)
        vram = gr.update(value=self.vram_frame(snap, say), visible=on_gpu, y_title=say("tr_plot_gib"), **titles)
        return text, loss, meter, vram, self.preview_items(snap, say), "\n".join(map(say.message, snap.log)), key

    def progress_text(self, snap: SessionState, say: Say) -> str:
        before_step_1 = snap.status is Status.STOPPING and not snap.history
        status = say("status_stopping_preparing" if before_step_1 else f"status_{snap.status.value}")
        parts = [f"**{status}**", say("tr_step", step=snap.step, total=snap.total_steps)]
        if snap.it_per_s:
            parts.append(f"{snap.it_per_s:.2f} it/s")
        if snap.status in (Status.RUNNING, Status.PAUSED) and snap.eta_s is not None:
            parts.append(say("tr_eta", eta=duration(snap.eta_s)))
        parts.append(say("tr_elapsed", elapsed=duration(snap.elapsed_s)))
        if snap.loss is not None:
            parts.append(say("tr_loss_value", loss=f"{snap.loss:.4f}"))
        lines = class_images_lines(snap, say) + [progress_bar(snap.step, snap.total_steps), " · ".join(parts),
                                                 say("tr_run_folder", folder=snap.run_dir)]
        if snap.status is Status.FAILED and snap.gate is not None and not snap.gate.ok:
            lines.append(gate_text(snap.gate, say))
        elif snap.status in (Status.FAILED, Status.FINISHED, Status.STOPPED) and snap.message:
            lines.append(("⚠ " if snap.status is Status.FAILED else "✔ ") + say.message(snap.message))
        if snap.checkpoints:
            lines.append(say("tr_checkpoints", n=len(snap.checkpoints), last=snap.checkpoints[-1].name))
        return "\n\n".join(lines)

    def loss_frame(self, snap: SessionState, say: Say) -> pd.DataFrame | None:
        rows = [{"step": s, "value": loss, "series": say("tr_series_loss")} for s, loss, _ in snap.history]
        rows += [{"step": s, "value": prior, "series": say("tr_series_prior")} for s, _, prior in snap.history]
        return plot_frame(rows)

    def meter_frame(self, snap: SessionState, say: Say) -> pd.DataFrame | None:
        """The meter's three scores at each saved checkpoint (sdtrainer.meter)."""
        return plot_frame([{"step": row.step, "value": getattr(row, name), "series": say(f"tr_series_{name}")}
                           for name in ("subject_fit", "class_drift", "copying") for row in snap.meter])

    def vram_frame(self, snap: SessionState, say: Say) -> pd.DataFrame | None:
        """Allocated and reserved VRAM; on several GPUs, each one's reserved VRAM."""
        if any(len(by_device) > 1 for _, by_device in snap.vram_by_device):
            return plot_frame([{"step": s, "value": reserved, "series": say("tr_series_gpu_reserved", index=i)}
                               for s, by_device in snap.vram_by_device for i, reserved in enumerate(by_device)])
        rows = [{"step": s, "value": alloc, "series": say("tr_series_allocated")} for s, alloc, _ in snap.vram]
        rows += [{"step": s, "value": reserved, "series": say("tr_series_reserved")} for s, _, reserved in snap.vram]
        return plot_frame(rows)

    def preview_items(self, snap: SessionState, say: Say):
        """Newest step first; within a step, prompt by prompt and seed by seed, one row per step."""
        per_step = max(1, len({(p.prompt, p.seed) for p in snap.previews}))
        order = sorted(snap.previews, key=lambda p: -p.step)  # stable: keeps prompt and seed order
        items = [(str(p.path), say("tr_preview_caption", step=p.step, prompt=p.prompt, seed=p.seed))
                 for p in order if Path(p.path).is_file()]
        return gr.update(value=items, columns=min(per_step, 6))


def class_images_lines(snap: SessionState, say: Say) -> list[str]:
    """The class images' own bar and ETA while they are made before step 1 (nothing once training runs)."""
    if not snap.class_total or snap.history or snap.status not in (Status.PREPARING, Status.PAUSED, Status.STOPPING):
        return []
    parts = [say("tr_class_images_progress", class_word=snap.class_word, done=snap.class_done, total=snap.class_total)]
    if snap.class_eta_s is not None and snap.class_done < snap.class_total:
        parts.append(say("tr_eta", eta=duration(snap.class_eta_s)))
    return [progress_bar(snap.class_done, snap.class_total), " · ".join(parts)]


def class_images_to_make(project: Project, count: int) -> int:
    """Class images a run of the project generates first: `count` of each class word whose subjects have none."""
    return count * len({s.class_word for s in project.subjects if not s.class_images()})


def unprepared(project: Project) -> UIError | None:
    """What to do about the first subject without prepared images (training reads only those); None when
    every subject has some (the first cannot be removed: it is only told to prepare)."""
    for s in project.subjects:
        if not s.prepared():
            return (UIError("err_no_prepared") if s is project.subjects[0]
                    else UIError("err_subject_no_prepared", subject=s.label))
    return None


def concept(subject: Subject, repeats: int) -> Concept:
    """A subject after the first as a run's concept: its prepared squares, and its class images folder when it holds
    some (else the run's class_images of its class word are generated)."""
    return Concept(token=subject.token, class_word=subject.class_word, images=str(subject.prepared_dir),
                   reg_images=str(subject.class_dir) if subject.class_images() else None, repeats=repeats)


def plot_frame(rows: list[dict]) -> pd.DataFrame | None:
    """Typed columns (untyped ones make the axes categorical for good), and None rather than an empty frame:
    a plot whose colours were set from an empty frame never draws its lines (Gradio 6.31)."""
    if not rows:
        return None
    frame = pd.DataFrame(rows, columns=["step", "value", "series"])
    return frame.astype({"step": "int64", "value": "float64", "series": "str"})


def no_cuda_cause(report: GpusReport | GateReport) -> Message | None:
    """Why the gate found no CUDA GPU at all (a CPU-only PyTorch...), None when it found one."""
    return next((r.fields["cause"] for r in report.reasons if getattr(r, "key", None) == "gate_no_cuda"), None)


def cpu_gate_text(report: GpusReport | GateReport, say: Say) -> str:
    """Without a usable CUDA GPU the app trains on the CPU: say that once, with why there is no GPU (the gate's
    report is about GPUs, and its advice is the command line's)."""
    return say("tr_gate_cpu", cause=say.message(no_cuda_cause(report)))


def gate_text(report: GpusReport | GateReport, say: Say, note: str = "") -> str:
    """The GPU gate's verdict (and a note after it) and its report, in the page's language."""
    verdict = say("tr_gate_ok") if report.ok else say("tr_gate_refused")
    return f"{verdict}{' ' + note if note else ''}\n\n```\n{report.format(say.lang)}\n```"
