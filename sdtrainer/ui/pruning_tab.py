"""Pruning tab: shrink a checkpoint to what image generation needs (fp16, EMA dropped, kept or used), and extract
a LoRA from a trained model.

    tab = PruningTab(state)
    with gr.Tab(T("tab_pruning")):
        tab.render(T)

The pruned file is written beside the original (uploads: outputs/pruned/) and loaded back before it is
reported; an existing file, the original included, is written over only when "Replace" is ticked.
LoRAs go to outputs/lora/, where the Test tab finds them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from sdtrainer.checkpoint import CheckpointError, temp_path
from sdtrainer.lora_extract import ExtractReport, ExtractSettings, extract_lora
from sdtrainer.pruning import EmaMode, prune_checkpoint
from sdtrainer.ui.common import MODEL_ERRORS, USER_ERRORS, Lists, field_note, size_text, with_notes
from sdtrainer.ui.i18n import Say, UIError

if TYPE_CHECKING:
    from sdtrainer.ui.app import AppState

FORMATS = (".safetensors", ".ckpt")
OUTPUT_NAME_ERRORS = ("err_bad_file_name", "err_same_file", "err_output_exists")


def output_path(src: Path, folder: Path, name: str, fmt: str, half: bool, ema: str) -> Path:
    """Where the pruned file goes: `name` in `folder`, or `<stem>-pruned[-fp16][-ema]<fmt>` by default."""
    default = f"{src.stem}-pruned{'-fp16' if half else ''}{'-ema' if ema == EmaMode.USE.value else ''}{fmt}"
    return named_file(folder, name, default, FORMATS, fmt)


def lora_path(tuned: Path, folder: Path, name: str, rank: int) -> Path:
    """Where an extracted LoRA goes: `name` in `folder`, or `<trained model>-lora-r<rank>.safetensors`."""
    return named_file(folder, name, f"{tuned.stem}-lora-r{rank}.safetensors", (".safetensors",), ".safetensors")


def named_file(folder: Path, name: str, default: str, suffixes: tuple[str, ...], suffix: str) -> Path:
    """`name` (a file name, no folders; `suffix` added unless it has one of `suffixes`) in `folder`, or `default`."""
    name = (name or "").strip()
    if not name:
        return folder / default
    if Path(name).name != name or name in (".", ".."):
        raise UIError("err_bad_file_name", name=name)
    return folder / (name if Path(name).suffix.lower() in suffixes else name + suffix)


def _whole(value: float | None) -> int | float | None:
    """A slider's number as an int when it is whole (the API may send 32.0), else as it came (refused by the
    settings check with a message)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class PruningTab:
    def __init__(self, state: AppState):
        self.state = state

    def render(self, T: gr.I18n) -> Lists:
        """Lay the tab out and wire it; returns its model dropdowns (refreshed on page load)."""
        gr.Markdown(T("pr_intro"))
        with gr.Row():
            with gr.Column(scale=3):
                source = gr.Dropdown(self.state.model_choices(states=True), value=None, label=T("pr_source"),
                                     allow_custom_value=True, elem_id="sdt-prune-source",
                                     info=T("pr_source_info"))
                source_note = field_note(source)
                upload = gr.File(file_types=[".safetensors", ".ckpt"], label=T("pr_upload"), height=110)
            with gr.Column(scale=2):
                half = gr.Checkbox(True, label=T("pr_fp16"), info=T("pr_fp16_info"))
                ema = gr.Radio([(T("pr_ema_drop"), "drop"), (T("pr_ema_keep"), "keep"), (T("pr_ema_use"), "use")],
                               value="drop", label=T("pr_ema"), info=T("pr_ema_info"))
                fmt = gr.Radio([(T("pr_format_safetensors"), ".safetensors"), (".ckpt", ".ckpt")],
                               value=".safetensors", label=T("pr_format"), info=T("pr_format_info"))
        with gr.Row(equal_height=True):
            out_name = gr.Textbox(label=T("pr_out_name"), info=T("pr_out_name_info"), scale=3)
            overwrite = gr.Checkbox(False, label=T("pr_overwrite"), info=T("pr_overwrite_info"), scale=2)
            run = gr.Button(T("pr_run"), variant="primary", scale=1)
        name_note = field_note(out_name, overwrite)
        result = gr.Markdown(elem_classes=["sdt-status"])
        notes = {source_note: ("err_pick_checkpoint", *MODEL_ERRORS), name_note: OUTPUT_NAME_ERRORS}
        run.click(inputs_kwargs={"source": source, "upload": upload, "half": half, "ema": ema, "fmt": fmt,
                                 "out_name": out_name, "overwrite": overwrite},
                  api_name="prune", concurrency_id="gpu", **with_notes(self.prune, [result, source], result, notes))
        return Lists(prunable=[source], models=self.render_extract(T))

    def prune(self, source: str | None, upload: str | None, half: bool, ema: str, fmt: str, out_name: str,
              overwrite: bool, request: gr.Request, progress=gr.Progress()):
        say = self.state.say(request)
        with say.errors(CheckpointError):
            src, folder = self.source(source, upload)
            if fmt not in FORMATS:
                raise UIError("err_format", fmt=fmt)
            dst = output_path(src, folder, out_name, fmt, bool(half), ema)
            replacing = dst.exists() and dst.resolve() == src.resolve()
            if replacing and not overwrite:
                raise UIError("err_same_file", name=dst.name)
            if dst.exists() and not overwrite:
                raise UIError("err_output_exists", name=dst.name)
            folder.mkdir(parents=True, exist_ok=True)
            progress(0.2, desc=say("progress_pruning", name=src.name))
            # The original is replaced only once the pruned file is written and loads: pruned beside it first.
            target = temp_path(dst) if replacing else dst  # a crash leaves it to remove_stale_temp_files
            report = prune_checkpoint(src, target, half=bool(half), ema=ema, overwrite=bool(overwrite))
            if replacing:
                os.replace(target, dst)
                report.dst_path = dst
        text = self.report_text(src, report, say) + ("\n\n" + say("msg_original_replaced") if replacing else "")
        return text, self.state.model_dropdown_update(source, states=True)

    def source(self, source: str | None, upload: str | None) -> tuple[Path, Path]:
        """(file to prune, folder for the output): an upload wins over the list."""
        if upload:
            return Path(upload), self.state.pruned_dir
        if not source:
            raise UIError("err_pick_checkpoint")
        path = self.state.confined(source)
        if not path.is_file():
            raise UIError("err_model_missing", name=path.name)
        return path, path.parent

    def report_text(self, src: Path, report, say: Say) -> str:
        saved = 1 - report.dst_bytes / report.src_bytes if report.src_bytes else 0
        return say("msg_pruned", src=src.name, src_size=size_text(report.src_bytes), dst=report.dst_path.name,
                   dst_size=size_text(report.dst_bytes), saved=f"{max(saved, 0):.0%}", kept=len(report.kept_keys),
                   dropped=len(report.dropped_keys), path=report.dst_path)

    def render_extract(self, T: gr.I18n) -> list[gr.Dropdown]:
        """The LoRA section; returns its model dropdowns."""
        with gr.Accordion(T("pr_lora_heading"), open=True):
            gr.Markdown(T("pr_lora_help"))
            with gr.Row():
                base = gr.Dropdown(self.state.model_choices(), value=None, label=T("pr_lora_base"),
                                   info=T("pr_lora_base_info"), allow_custom_value=True)
                tuned = gr.Dropdown(self.state.model_choices(), value=None, label=T("pr_lora_tuned"),
                                    info=T("pr_lora_tuned_info"), allow_custom_value=True)
            models_note = field_note(base, tuned)
            with gr.Row():
                rank = gr.Slider(1, 256, value=32, step=1, label=T("pr_lora_rank"), info=T("pr_lora_rank_info"))
                conv_rank = gr.Slider(0, 128, value=0, step=1, label=T("pr_lora_conv_rank"),
                                      info=T("pr_lora_conv_rank_info"))
                energy = gr.Slider(0, 1, value=0, step=0.01, label=T("pr_lora_energy"), info=T("pr_lora_energy_info"))
                text_encoder = gr.Checkbox(False, label=T("pr_lora_text"), info=T("pr_lora_text_info"))
            with gr.Row(equal_height=True):
                out_name = gr.Textbox(label=T("pr_lora_out_name"), info=T("pr_lora_out_name_info"), scale=3)
                overwrite = gr.Checkbox(False, label=T("pr_overwrite"), scale=2)
                run = gr.Button(T("pr_lora_run"), variant="primary", scale=1)
            name_note = field_note(out_name)
            result = gr.Markdown(elem_classes=["sdt-status"])
        notes = {models_note: ("err_pick_base_and_tuned", "lora_same_model", *MODEL_ERRORS),
                 name_note: ("err_bad_file_name", "prune_exists", "lora_overwrites_model")}
        run.click(inputs_kwargs={"base": base, "tuned": tuned, "rank": rank, "conv_rank": conv_rank, "energy": energy,
                                 "text_encoder": text_encoder, "out_name": out_name, "overwrite": overwrite},
                  api_name="extract_lora", concurrency_id="gpu", **with_notes(self.extract, [result], result, notes))
        return [base, tuned]

    def extract(self, base: str | None, tuned: str | None, rank: float, conv_rank: float, energy: float,
                text_encoder: bool, out_name: str, overwrite: bool, request: gr.Request, progress=gr.Progress()):
        say = self.state.say(request)
        with say.errors(*USER_ERRORS):
            if not base or not tuned:
                raise UIError("err_pick_base_and_tuned")
            base_path, tuned_path = self.state.checked_model(base), self.state.checked_model(tuned)
            settings = ExtractSettings(rank=_whole(rank), conv_rank=_whole(conv_rank), energy=energy or None,
                                       text_encoder=bool(text_encoder))
            out = lora_path(tuned_path, self.state.lora_dir, out_name, settings.rank)
            self.state.lora_dir.mkdir(parents=True, exist_ok=True)

            def step(done: int, total: int) -> None:
                progress(done / total, desc=say("progress_extracting", name=tuned_path.name))

            with self.state.model_lock():  # the SVDs run on the GPU when there is one
                report = extract_lora(base_path, tuned_path, out, settings, overwrite=bool(overwrite), callback=step)
        return self.extract_text(report, base_path, tuned_path, say)

    def extract_text(self, report: ExtractReport, base: Path, tuned: Path, say: Say) -> str:
        """What was written and kept, then the five layers that keep the least."""
        head = [say("msg_extracted", name=report.path.name, size=size_text(report.size), layers=len(report.layers),
                    ranks=report.ranks, kept=f"{report.kept:.1%}", tuned=tuned.name, base=base.name,
                    path=report.path, stem=report.path.stem)]
        head.append(say("msg_extracted_held", held=f"{report.held:.1%}"))
        if steps := report.rank_steps():
            head.append(say("msg_extracted_ranks", ranks=", ".join(f"{rank}: {kept:.1%}" for rank, kept in steps)))
        if report.unchanged:
            head.append(say("msg_extracted_unchanged", n=len(report.unchanged)))
        worst = [say("msg_extracted_layer", name=layer.name, rank=layer.rank, full=layer.full_rank,
                     kept=f"{layer.kept:.1%}") for layer in report.worst(5)]
        return "\n\n".join([*head, say("msg_extracted_worst")]) + "\n" + "\n".join(f"- {line}" for line in worst)
