"""Dataset tab: a project's subjects, their photos, checks and square crops, captions, token advice, class images.

    tab = DatasetTab(state)
    with gr.Tab(T("tab_dataset")):
        tab.render(T)

Every handler is a method with an `api_name` (dataset_*), so tests and scripts can call it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from ldm.tokenizer import get_tokenizer
from sdtrainer.class_images import class_image_batch, generate_class_images
from sdtrainer.config import DEMO_CLASS_IMAGE_STEPS, TrainConfig
from sdtrainer.captions import is_common_token, prompt_lint
from sdtrainer.checks import MAX_PHOTOS, MIN_PHOTOS, ValidationReport, subject_issues
from sdtrainer.dataset import prepare_images
from sdtrainer.images import IMAGE_EXTENSIONS, DatasetError, list_images
from sdtrainer.ui.common import PROJECT_ERRORS, USER_ERRORS, Lists, field_note, with_notes
from sdtrainer.ui.i18n import Say, UIError, warn
from sdtrainer.ui.projects import (CLASS_ERRORS, TOKEN_ERRORS, Project, Subject, import_class_images, import_files,
                                   list_projects)

if TYPE_CHECKING:
    from sdtrainer.ui.app import AppState

REG_GALLERY_MAX = 24
MAX_CLASS_IMAGES = 5000
SUBJECT_CODES = ("no_face", "same_background")  # warnings about the whole set, checked again after each change
# what Project says about a token or class word it refuses (shown under the field)


def report_text(report: ValidationReport, say: Say) -> str:
    """The validation report as Markdown: counts, then skipped images, then warnings."""
    lines = [say.message(report.counts())]
    for title, issues in (("report_errors", report.errors), ("report_warnings", report.warnings)):
        if issues:
            lines += ["", f"**{say(title)}**"] + [f"- `{i.path.name}`: {say.message(i.message)}" for i in issues]
    return "\n".join(lines)


def token_advice_text(token: str, class_word: str, say: Say) -> str:
    """Notes on the token and class word (CLIP token count, common words, `sks`), as Markdown bullets."""
    token, class_word = (token or "").strip(), " ".join((class_word or "").split())
    if not token:
        return say("adv_enter_token")
    tokenizer = get_tokenizer()
    count = tokenizer.token_count(token)
    notes = [say("adv_count_one" if count == 1 else "adv_count_many", token=token, count=count)]
    if len(token.split()) > 1:
        notes.append(say("adv_one_word"))
    if is_common_token(token, tokenizer):
        notes.append(say("adv_common", token=token))
    if token.lower() == "sks":
        notes.append(say("adv_sks"))
    if class_word:
        notes.append(say("adv_prompt", token=token, class_word=class_word))
    notes.append(say("adv_celebrity"))
    return "\n".join(f"- {note}" for note in notes)


class DatasetTab:
    def __init__(self, state: AppState):
        self.state = state

    # ------------------------------------------------------------------ layout
    def render(self, T: gr.I18n) -> Lists:
        """Lay the tab out and wire it; returns its dropdowns of models and projects (refreshed on page load)."""
        gr.Markdown(T("ds_intro"))
        with gr.Row(equal_height=True):
            project = gr.Dropdown(list_projects(self.state.projects_dir), value=None, label=T("ds_project"),
                                  allow_custom_value=True,
                                  info=T("ds_project_info"), scale=3)
            refresh = gr.Button("⟳", scale=0, min_width=48, size="sm")
            new_name = gr.Textbox(label=T("ds_new_name"), placeholder=T("ds_new_name_placeholder"), scale=2)
            create = gr.Button(T("ds_create"), variant="primary", scale=1)
        project_note = field_note(project, new_name)
        subjects = self.render_subjects(T)
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown(T("ds_subject_heading"))
                token = gr.Textbox(label=T("ds_token"), info=T("ds_token_info"), placeholder=T("ds_token_placeholder"),
                                   elem_id="token")
                token_note = field_note(token)
                class_word = gr.Textbox(label=T("ds_class"), info=T("ds_class_info"), value="person",
                                        elem_id="class_word")
                class_note = field_note(class_word)
                resolution = gr.Slider(64, 1024, value=self.state.default_resolution(), step=64,
                                       label=T("ds_resolution"), info=T("ds_resolution_info"))
                resolution_note = field_note(resolution)
                save = gr.Button(T("ds_save_settings"))
                advice = gr.Markdown(elem_classes=["sdt-advice"])
            with gr.Column(scale=2):
                gr.Markdown(T("ds_photos_heading"))
                upload = gr.File(file_count="multiple", file_types=list(IMAGE_EXTENSIONS) + [".txt"],
                                 label=T("ds_upload"), height=140)
                with gr.Row(equal_height=True):
                    crop = gr.Radio([(T("crop_center"), "center"), (T("crop_face"), "face")], value="center",
                                    label=T("ds_crop"), info=T("ds_crop_info"), scale=3)
                    prepare = gr.Button(T("ds_prepare"), variant="primary", scale=1)
        status = gr.Markdown(elem_classes=["sdt-status"])
        gallery = gr.Gallery(label=T("ds_gallery"), columns=8, height=300, object_fit="cover",
                             allow_preview=False, elem_classes=["sdt-cards"])
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Accordion(T("ds_report"), open=False):
                    report = gr.Markdown()
            with gr.Column(scale=2):
                one = self.render_selected(T)
        subject = subjects["subject"]
        reg = self.render_regularization(T, project, subject)

        # what shows one subject (see subject_outputs); opening a project also sets its resolution, crop, subjects
        on_subject = [token, class_word, advice, gallery, report, one["selected"], one["caption"], one["warnings"],
                      one["caption_note"], reg["gallery"], reg["count_text"]]
        refresh.click(self.refresh_projects, inputs=project, outputs=project, api_name="dataset_refresh")
        # errors (and progress) show on the status line, never over the fields the user has to fix, and under them
        chosen = {project_note: PROJECT_ERRORS, subjects["note"]: ("err_subject_missing",)}
        create.click(inputs=new_name, api_name="dataset_create",
                     **with_notes(self.create_project, [project, new_name, status], status,
                                  {project_note: ("err_project_name", "err_project_exists")}))
        project.change(inputs=project, api_name="dataset_open",
                       **with_notes(self.open_project, [*on_subject, resolution, crop, subject], status, chosen))
        subject.input(inputs_kwargs={"name": project, "subject": subject}, api_name="dataset_open_subject",
                      **with_notes(self.open_subject, on_subject, status, chosen))
        new_subject = (*TOKEN_ERRORS, *CLASS_ERRORS, "err_save_settings_first", "err_subject_missing")
        subjects["add"].click(inputs_kwargs={"name": project, "token": subjects["token"],
                                             "class_word": subjects["class_word"]}, api_name="dataset_add_subject",
                              **with_notes(self.add_subject, [subject, subjects["token"], subjects["class_word"],
                                                              status, *on_subject], status,
                                           {project_note: PROJECT_ERRORS, subjects["note"]: new_subject}))
        subjects["remove"].click(inputs_kwargs={"name": project, "subject": subject}, api_name="dataset_remove_subject",
                                 **with_notes(self.remove_subject, [subject, status, *on_subject], status,
                                              {**chosen, subjects["note"]: ("err_subject_missing",
                                                                            "err_remove_first_subject")}))
        save.click(inputs_kwargs={"name": project, "subject": subject, "token": token, "class_word": class_word,
                                  "resolution": resolution}, api_name="dataset_save_settings",
                   **with_notes(self.save_settings, [status, advice, subject], status,
                                {**chosen, token_note: TOKEN_ERRORS, class_note: CLASS_ERRORS,
                                 resolution_note: ("err_resolution",)}))
        for box in (token, class_word):
            box.change(self.advice, inputs=[token, class_word], outputs=advice,
                       api_name=f"dataset_advice_{box.elem_id}", trigger_mode="always_last", show_progress="hidden")
        upload.upload(self.add_photos, inputs_kwargs={"name": project, "subject": subject, "files": upload},
                      outputs=[upload, status], api_name="dataset_add_photos")
        prepare.click(self.prepare, inputs_kwargs={"name": project, "subject": subject, "crop": crop},
                      outputs=[gallery, report, status], api_name="dataset_prepare")
        self.wire_selected(one, project, subject, gallery, status)
        return Lists(models=[reg["model"]], projects=[project])

    def render_selected(self, T: gr.I18n) -> dict:
        """The clicked image: its name, warnings, the caption training gives it (editable), remove, recrop."""
        selected = gr.Textbox(label=T("ds_selected"), interactive=False)
        warnings = gr.Markdown(elem_classes=["sdt-warning"])
        caption = gr.Textbox(label=T("ds_caption"), info=T("ds_caption_info"), lines=2)
        caption_note = gr.Markdown(elem_classes=["sdt-status"])
        with gr.Row():
            save_caption = gr.Button(T("ds_save_caption"))
            remove = gr.Button(T("ds_remove"), variant="stop")
        with gr.Row(equal_height=True):
            recrop_where = gr.Radio([(T("crop_center"), "center"), (T("crop_face"), "face"),
                                     (T("crop_start"), "start"), (T("crop_end"), "end")], value="face",
                                    label=T("ds_recrop"), info=T("ds_recrop_info"), scale=3)
            recrop = gr.Button(T("ds_recrop_button"), scale=1)
        return {"selected": selected, "warnings": warnings, "caption": caption, "caption_note": caption_note,
                "save_caption": save_caption, "remove": remove, "recrop_where": recrop_where, "recrop": recrop}

    def wire_selected(self, one: dict, project: gr.Dropdown, subject: gr.Dropdown, gallery: gr.Gallery,
                      status: gr.Markdown) -> None:
        """Clicking a card fills render_selected's fields; its buttons act on that image of the chosen subject."""
        image = {"name": project, "subject": subject, "image": one["selected"]}
        gallery.select(self.select_image, inputs=[project, subject],
                       outputs=[one["selected"], one["caption"], one["warnings"], one["caption_note"]],
                       api_name="dataset_select", api_visibility="undocumented")
        one["save_caption"].click(self.save_caption, inputs_kwargs={**image, "caption": one["caption"]},
                                  outputs=[gallery, one["caption"], one["caption_note"], status],
                                  api_name="dataset_save_caption")
        one["remove"].click(self.remove_image, inputs_kwargs=image,
                            outputs=[gallery, one["selected"], one["caption"], status], api_name="dataset_remove").then(
            lambda: ("", ""), outputs=[one["warnings"], one["caption_note"]], api_name="dataset_remove_clear",
            api_visibility="private")
        one["recrop"].click(self.recrop_image, inputs_kwargs={**image, "where": one["recrop_where"]},
                            outputs=[gallery, one["warnings"], status], api_name="dataset_recrop")

    def render_subjects(self, T: gr.I18n) -> dict:
        """The subject picker (every action below works on the chosen subject) and the fields to add one."""
        with gr.Row(equal_height=True):
            # choices come with each project; any value is accepted here and checked by the handlers
            subject = gr.Dropdown([], value=None, label=T("ds_subject"), info=T("ds_subject_info"), scale=3,
                                  allow_custom_value=True, elem_id="subject")
            token = gr.Textbox(label=T("ds_new_token"), placeholder=T("ds_new_token_placeholder"), scale=2)
            class_word = gr.Textbox(label=T("ds_new_class"), placeholder=T("ds_new_class_placeholder"), scale=2)
            add = gr.Button(T("ds_add_subject"), scale=1)
            remove = gr.Button(T("ds_remove_subject"), variant="stop", scale=1)
        note = field_note(subject, token, class_word)
        return {"subject": subject, "token": token, "class_word": class_word, "add": add, "remove": remove,
                "note": note}

    def render_regularization(self, T: gr.I18n, project: gr.Dropdown, subject: gr.Dropdown) -> dict:
        with gr.Accordion(T("ds_reg_heading"), open=True):
            gr.Markdown(T("ds_reg_help"))
            with gr.Row(equal_height=True):
                upload = gr.File(file_count="multiple", file_types=list(IMAGE_EXTENSIONS) + [".txt"],
                                 label=T("ds_reg_upload"), height=110,
                                 scale=2)
                with gr.Column(scale=3):
                    with gr.Row(equal_height=True):
                        model = gr.Dropdown(self.state.model_choices(), value=self.state.default_model(),
                                            allow_custom_value=True,
                                            label=T("ds_reg_model"), scale=3)
                        count = gr.Number(200, precision=0, label=T("ds_reg_count"),  # range checked in the handler
                                          info=T("ds_reg_count_info"), scale=2)
                    with gr.Row():
                        generate = gr.Button(T("ds_reg_generate"), variant="primary")
                        stop = gr.Button(T("stop"), variant="stop")
            with gr.Row(equal_height=True):
                folder = gr.Textbox(label=T("ds_reg_folder"), info=T("ds_reg_folder_info"), scale=4)
                import_folder = gr.Button(T("ds_reg_import_folder"), scale=1)
            count_text = gr.Markdown()
            gallery = gr.Gallery(label=T("ds_reg_gallery"), columns=8, height=220, object_fit="cover",
                                 allow_preview=False)
        upload.upload(self.import_class_images, inputs_kwargs={"name": project, "subject": subject, "files": upload},
                      outputs=[upload, gallery, count_text], api_name="dataset_import_class_images")
        import_folder.click(self.import_class_folder, inputs_kwargs={"name": project, "subject": subject,
                                                                     "folder": folder},
                            outputs=[gallery, count_text], api_name="dataset_import_class_folder")
        event = generate.click(self.generate_class_images, inputs_kwargs={"name": project, "subject": subject,
                                                                          "model": model, "count": count},
                               outputs=[gallery, count_text], api_name="dataset_generate_class_images",
                               concurrency_id="gpu")
        stop.click(self.stop_class_images, outputs=count_text, cancels=[event], api_name="dataset_stop")
        return {"gallery": gallery, "count_text": count_text, "model": model}

    # ------------------------------------------------------------------ helpers
    def project(self, name: str | None) -> Project:
        if not name:
            raise UIError("err_no_project")
        return Project.open(self.state.projects_dir / Path(name).name)

    def subject(self, name: str | None, subject: str | None) -> Subject:
        """The chosen subject of the chosen project (its first subject when none is chosen)."""
        return self.project(name).subject(subject)

    def subject_outputs(self, subject: Subject, say: Say) -> list:
        """What shows one subject: token, class word, advice, gallery, then the report, selected image, its
        caption, warnings and caption note emptied, then its class images and their count."""
        return [subject.token, subject.class_word, token_advice_text(subject.token, subject.class_word, say),
                self.gallery_items(subject, say), "", "", "", "", "", self.class_gallery(subject),
                self.class_count_text(subject, say)]

    def subject_choices(self, project: Project, chosen: Subject):
        """The subject picker's update: every subject with a token, `token class` as its label."""
        choices = [(s.label, s.token) for s in project.subjects if s.token]
        return gr.update(choices=choices, value=chosen.token or None)

    def gallery_items(self, subject: Subject, say: Say) -> list[tuple[str, str]]:
        """(image, label): the label starts with its warnings (each kind once), so they show on the thumbnail, and
        ends with the caption training will give it (the file name shows when the card is chosen)."""
        items = []
        for path in subject.prepared():
            codes = dict.fromkeys(code for code, _ in subject.warnings.get(path.name, []))
            flags = "⚠ " + ", ".join(say(f"issue_short_{code}") for code in codes) + " · " if codes else ""
            items.append((str(path), f"{flags}“{subject.caption(path)}”"))
        return items

    def caption_note(self, subject: Subject, path: Path, say: Say) -> str:
        """Where the caption comes from (.txt, `@` template, file name, default), in the user's language."""
        return say(f"ds_caption_from_{subject.caption_source(path)}", token=subject.token,
                   class_word=subject.class_word)

    def warnings_text(self, subject: Subject, name: str, say: Say) -> str:
        """The full warnings of one prepared image, in the user's language."""
        found = subject.warnings.get(name, [])
        if not found:
            return say("ds_no_warnings")
        return "\n".join(f"- ⚠ {message if say.lang == 'en' else say(f'issue_{code}')}" for code, message in found)

    def class_gallery(self, subject: Subject) -> list[str]:
        return [str(p) for p in subject.class_images()[:REG_GALLERY_MAX]]

    def class_count_text(self, subject: Subject, say: Say) -> str:
        return say("ds_reg_count_text", n=len(subject.class_images()), class_word=subject.class_word)

    # ------------------------------------------------------------------ handlers: projects and subjects
    def refresh_projects(self, current: str | None):
        names = list_projects(self.state.projects_dir)
        return gr.update(choices=names, value=current if current in names else None)

    def create_project(self, new_name: str, request: gr.Request):
        say = self.state.say(request)
        with say.errors():
            project = Project.create(self.state.projects_dir, new_name)
            project.resolution = self.state.default_resolution()
            project.save()
        names = list_projects(self.state.projects_dir)
        return gr.update(choices=names, value=project.name), "", say("msg_project_created", name=project.name)

    def open_project(self, name: str | None, request: gr.Request):
        say = self.state.say(request)
        if not name:
            return [gr.skip()] * 14
        with say.errors():
            project = self.project(name)
        first = project.subject()
        return [*self.subject_outputs(first, say), project.resolution, project.crop,
                self.subject_choices(project, first)]

    def open_subject(self, name: str | None, subject: str | None, request: gr.Request):
        say = self.state.say(request)
        with say.errors():
            chosen = self.subject(name, subject)
        return self.subject_outputs(chosen, say)

    def add_subject(self, name: str | None, token: str, class_word: str, request: gr.Request):
        """A new subject (token, class word) in the project, chosen at once so its photos can be dropped."""
        say = self.state.say(request)
        with say.errors():
            project = self.project(name)
            added = project.add_subject(token, class_word)
            project.save()
        message = say("msg_subject_added", subject=added.label, n=len(project.subjects))
        return [self.subject_choices(project, added), "", "", message, *self.subject_outputs(added, say)]

    def remove_subject(self, name: str | None, subject: str | None, request: gr.Request):
        """Take an added subject out (its files are moved aside, see Project.remove_subject); the first
        subject is shown then."""
        say = self.state.say(request)
        with say.errors():
            project = self.project(name)
            removed = project.subject(subject)
            kept = project.remove_subject(removed.token)
            project.save()
        first = project.subject()
        message = say("msg_subject_removed", subject=removed.label, folder=kept)
        return [self.subject_choices(project, first), message, *self.subject_outputs(first, say)]

    def save_settings(self, name: str | None, token: str, class_word: str, resolution: float,
                      request: gr.Request, subject: str | None = None):
        say = self.state.say(request)
        with say.errors():
            project = self.project(name)
            chosen = project.subject(subject)
            project.set_resolution(int(resolution or 0))
            project.set_words(chosen, token, class_word)
            project.save()
        return (say("msg_settings_saved", name=project.name), token_advice_text(token, class_word, say),
                self.subject_choices(project, chosen))

    def advice(self, token: str, class_word: str, request: gr.Request) -> str:
        return token_advice_text(token, class_word, self.state.say(request))

    # ------------------------------------------------------------------ handlers: photos and captions
    def add_photos(self, name: str | None, files: list[str] | None, request: gr.Request, subject: str | None = None):
        say = self.state.say(request)
        with say.errors():
            chosen = self.subject(name, subject)
            if not files:
                raise UIError("err_no_files")
            copied, skipped, lone_captions = import_files(files, chosen.instance_dir)
        if skipped:
            warn(say("warn_not_images", n=len(skipped), names=", ".join(skipped[:5])))
        if lone_captions:
            warn(say("warn_caption_without_photo", n=len(lone_captions), names=", ".join(lone_captions[:5])))
        message = say("msg_added_photos", n=len(copied), total=len(chosen.photos()))
        return None, message

    def prepare(self, name: str | None, crop: str, request: gr.Request, subject: str | None = None,
                progress=gr.Progress()):
        say = self.state.say(request)
        with say.errors(DatasetError):
            chosen = self.subject(name, subject)
            if not chosen.token:
                raise UIError("err_save_settings_first")
            photos = chosen.photos()
            if not photos:
                raise UIError("err_no_photos")
            for old in chosen.prepared_dir.iterdir():  # a fresh set: removed photos must not linger
                old.unlink()
            result = prepare_images(photos, chosen.prepared_dir, chosen.project.resolution, crop or "center",
                                    progress=lambda done, total: progress(done / total, desc=say("progress_preparing")))
        chosen.project.crop = crop or "center"
        chosen.warnings = {out.name: [[i.code, i.message] for i in result.report.issues_for(src)
                                      if i.severity == "warning"]
                           for src, out in zip(result.report.ok_paths, result.written)}
        chosen.crops = {name: where for name, where in chosen.crops.items() if (chosen.prepared_dir / name).is_file()}
        for name, where in chosen.crops.items():  # crops chosen by hand survive preparing again
            chosen.recrop(name, where)
        result.report.issues += self.check_subject(chosen)
        chosen.project.save()
        return self.gallery_items(chosen, say), report_text(result.report, say), self.prepare_summary(result, say)

    def check_subject(self, subject: Subject) -> list:
        """Check the prepared set again for the whole-set warnings (no face, same background) and store them."""
        found = subject_issues(subject.prepared(), subject.class_word, subject.photo_of)
        for name in subject.warnings:
            subject.warnings[name] = [w for w in subject.warnings[name] if w[0] not in SUBJECT_CODES]
        for i in found:
            subject.warnings.setdefault(i.path.name, []).append([i.code, i.message])
        return found

    def prepare_summary(self, result, say: Say) -> str:
        report = result.report
        lines = [say("msg_prepared", ok=len(result.written), total=len(report.paths),
                     skipped=len(report.paths) - len(report.ok_paths), warnings=len(report.warnings))]
        if len(result.written) < MIN_PHOTOS:
            lines.append(say("warn_few_photos", n=len(result.written), low=MIN_PHOTOS, high=MAX_PHOTOS))
        elif len(result.written) > MAX_PHOTOS * 2:
            lines.append(say("warn_many_photos", n=len(result.written), high=MAX_PHOTOS))
        return "\n\n".join(lines)

    def select_image(self, name: str | None, subject: str | None, evt: gr.SelectData, request: gr.Request):
        """The clicked image's name, the caption training gives it, its warnings and where its caption comes from."""
        if not name or evt.index is None:
            return "", "", "", ""
        say = self.state.say(request)
        with say.errors():
            chosen = self.subject(name, subject)
        prepared = chosen.prepared()
        if not 0 <= evt.index < len(prepared):
            return "", "", "", ""
        path = prepared[evt.index]
        return (path.name, chosen.caption(path), self.warnings_text(chosen, path.name, say),
                self.caption_note(chosen, path, say))

    def save_caption(self, name: str | None, image: str, caption: str, request: gr.Request,
                     subject: str | None = None):
        """Write the caption as a .txt (empty: remove it); answers with the caption training will now use."""
        say = self.state.say(request)
        caption = " ".join((caption or "").split())
        with say.errors():
            chosen = self.subject(name, subject)
            if not image:
                raise UIError("err_no_selection")
            path = chosen.set_caption(image, caption)
        effective = chosen.caption(path)
        if not caption:
            message = say("msg_caption_cleared", name=path.name, default=effective)
        else:
            message = say("msg_caption_saved", name=path.name)
            self.lint_caption(chosen, caption, say)
        return self.gallery_items(chosen, say), effective, self.caption_note(chosen, path, say), message

    def lint_caption(self, subject: Subject, caption: str, say: Say) -> None:
        """Warn about every token of the project written without its class word, and a caption without the
        subject's own token."""
        for other in subject.project.subjects:
            lint = prompt_lint(caption, other.token, other.class_word) if other.token else None
            if lint:
                warn(say.message(lint))
        if subject.token and subject.token.lower() not in caption.lower():
            warn(say("warn_caption_no_token", token=subject.token, class_word=subject.class_word))

    def remove_image(self, name: str | None, image: str, request: gr.Request, subject: str | None = None):
        say = self.state.say(request)
        with say.errors():
            chosen = self.subject(name, subject)
            if not image:
                raise UIError("err_no_selection")
            chosen.remove_prepared(image)
        return self.gallery_items(chosen, say), "", "", say("msg_removed", name=image)

    def recrop_image(self, name: str | None, image: str, where: str, request: gr.Request,
                     subject: str | None = None):
        say = self.state.say(request)
        with say.errors(DatasetError):
            chosen = self.subject(name, subject)
            if not image:
                raise UIError("err_no_selection")
            found_face = chosen.recrop(image, where)
            self.check_subject(chosen)
            chosen.project.save()
        message = say("msg_recropped", name=image) if found_face else say("msg_recrop_no_face", name=image)
        return self.gallery_items(chosen, say), self.warnings_text(chosen, image, say), message

    # ------------------------------------------------------------------ handlers: class images
    def import_class_images(self, name: str | None, files: list[str] | None, request: gr.Request,
                            subject: str | None = None):
        say = self.state.say(request)
        with say.errors(DatasetError):
            chosen = self.subject(name, subject)
            images = [Path(f) for f in files or [] if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
            if not images:
                raise UIError("err_no_files")
        return None, *self.imported(chosen, images, say)

    def import_class_folder(self, name: str | None, folder: str, request: gr.Request, subject: str | None = None):
        """Import every image of a folder on this computer (sub-folders left out) as the subject's class images."""
        say = self.state.say(request)
        with say.errors(DatasetError):
            chosen = self.subject(name, subject)
            path = Path((folder or "").strip().strip('"')).expanduser()
            if not (folder or "").strip():
                raise UIError("err_folder_missing", folder="")
            path = self.state.confined(path)  # before looking at it: says nothing of folders elsewhere
            if not path.is_dir():
                raise UIError("err_folder_missing", folder=folder)
            if path.resolve() in (chosen.project.reg_dir.resolve(), chosen.class_dir.resolve()):
                raise UIError("err_folder_is_reg")
            images = list_images(path)
            if not images:
                raise UIError("err_folder_empty", folder=path)
        return self.imported(chosen, images, say)

    def imported(self, subject: Subject, images: list[Path], say: Say) -> tuple[list[str], str]:
        with say.errors(DatasetError):
            folder = subject.class_dir
            folder.mkdir(parents=True, exist_ok=True)
            result = import_class_images(folder, subject.project.resolution, images)
        if result.report.errors:
            warn(say("warn_class_skipped", n=len(result.report.errors),
                           names=", ".join(i.path.name for i in result.report.errors[:5])))
        text = say("msg_class_imported", n=len(result.written)) + " " + self.class_count_text(subject, say)
        return self.class_gallery(subject), text

    def generate_class_images(self, name: str | None, model: str | None, count: float, request: gr.Request,
                              subject: str | None = None, progress=gr.Progress()):
        """Sample class images `class-00000.png`... of the subject's class word into its class folder until
        `count` exist (existing ones are kept)."""
        say = self.state.say(request)
        with say.errors(*USER_ERRORS):
            chosen = self.subject(name, subject)
            target = int(count or 0)
            if not 1 <= target <= MAX_CLASS_IMAGES:
                raise UIError("err_count_range", low=1, high=MAX_CLASS_IMAGES)
            path = self.state.checked_model(model)

            def report(done: int, total: int, _path: Path) -> None:
                progress(done / total, desc=say("progress_class_images", done=done, total=total))

            with self.state.jobs.run("class_images", request.session_hash) as stop, self.state.model_lock():
                loaded, info = self.state.cache.get(path)
                steps = DEMO_CLASS_IMAGE_STEPS if self.state.is_demo(info) else TrainConfig.class_image_steps
                made = generate_class_images(loaded, chosen.class_word, target, chosen.class_dir, seed=0,
                                             callback=report, should_stop=stop.is_set,
                                             resolution=chosen.project.resolution, steps=steps,
                                             batch_size=class_image_batch(None, self.state.cache.device.type))
        head = say("msg_stopped_kept") if stop.is_set() else say("msg_class_ready", n=len(made))
        return self.class_gallery(chosen), head + " " + self.class_count_text(chosen, say)

    def stop_class_images(self, request: gr.Request) -> str:
        say = self.state.say(request)
        if self.state.jobs.stop("class_images", request.session_hash):
            return say("msg_stopping")
        return say("msg_nothing_to_stop")
