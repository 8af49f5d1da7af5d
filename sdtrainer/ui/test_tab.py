"""Test tab: text-to-image with any model or step checkpoint, and a comparison grid to pick the best step.

    tab = TestTab(state)
    with gr.Tab(T("tab_test")):
        tab.render(T)

PNGs go to outputs/txt2img with AUTOMATIC1111's `parameters` text; grids to outputs/grids. A LoRA chosen with its
weight is merged into the model for both (the cached model itself stays as it was) and recorded as A1111 does.
Generation takes the app's model lock, so it never runs while a training holds the GPU.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from ldm.samplers import SamplerName
from sdtrainer.captions import add_class_word, prompt_lint
from sdtrainer.lora import MAX_WEIGHT, lora_hash
from sdtrainer.messages import Message
from sdtrainer.sampling import (MAX_BATCH, MAX_SIDE, MAX_STEPS, GenerationParams, LoraUse, generate, save_images,
                                save_png, size_multiple)
from sdtrainer.meter import earlier_definition, recommendation_of
from sdtrainer.ui.common import (RECOMMENDED_MARK, USER_ERRORS, Lists, Stopped, model_facts, recommended, run_of,
                                 stop_check)
from sdtrainer.ui.grid import labelled_grid
from sdtrainer.ui.i18n import Say, UIError, warn

if TYPE_CHECKING:
    from sdtrainer.ui.app import AppState

MAX_GRID_CELLS = 64
DEMO_SIZE, DEMO_MULTIPLE, SD_SIZE, SD_MULTIPLE = 64, 16, 512, 64


def concept_pairs(token: str, class_word: str, models: list[str | None]) -> list[tuple[str, str]]:
    """The (token, class word) pairs to check prompts against: the typed pair first, then every concept the
    model files' metadata name (a token typed with another class word keeps the typed one)."""
    typed = [((token or "").strip(), " ".join((class_word or "").split()))]
    from_files = [pair for m in models if m and Path(m).is_file() for pair in model_facts(Path(m))["concepts"]]
    pairs, seen = [], set()
    for t, c in typed + from_files:
        if t and c and t.lower() not in seen:
            pairs.append((t, c))
            seen.add(t.lower())
    return pairs


def fix_prompt(prompt: str, pairs: list[tuple[str, str]]) -> str:
    """add_class_word for each pair: `ohwx and effy` -> `ohwx person and effy dog`."""
    for token, class_word in pairs:
        prompt = add_class_word(prompt, token, class_word)
    return prompt


def checkpoint_title(path: Path) -> str:
    """A grid column's title: the file name without its suffix (a run's files say run and step), marked when the
    run's meter recommends it."""
    return f"{path.stem} {RECOMMENDED_MARK}" if recommended(path) else path.stem


def meter_note(paths: list[Path], say: Say) -> str:
    """One line per run among `paths` that the meter measured: which checkpoint it recommends, and why; or, for a run
    measured by an earlier version of the meter, how to measure it again."""
    runs = [run for run in dict.fromkeys(map(run_of, paths)) if run is not None]  # each run's meter.json once
    recs = [rec for rec in map(recommendation_of, runs) if rec is not None]
    return "\n\n".join([say("te_meter_recommends", mark=RECOMMENDED_MARK, name=Path(rec.file).name,
                             why=say.message(rec.why)) for rec in recs]
                        + [say("te_meter_earlier", run=run.name, run_dir=run) for run in runs
                           if earlier_definition(run)])


class TestTab:
    def __init__(self, state: AppState):
        self.state = state

    # ------------------------------------------------------------------ layout
    def render(self, T: gr.I18n) -> Lists:
        """Lay the tab out and wire it; returns its model dropdowns (refreshed on page load)."""
        demo = model_facts(Path(self.state.default_model() or "x")).get("demo", False)
        size, multiple = (DEMO_SIZE, DEMO_MULTIPLE) if demo else (SD_SIZE, SD_MULTIPLE)
        gr.Markdown(T("te_intro"))
        with gr.Row(equal_height=True):
            model = gr.Dropdown(self.state.model_choices(), value=self.state.default_model(), label=T("te_model"),
                                allow_custom_value=True,
                                info=T("te_model_info"), scale=4)
            token = gr.Textbox(label=T("te_token"), info=T("te_token_info"), scale=1)
            class_word = gr.Textbox(label=T("te_class"), info=T("te_class_info"), scale=1)
        with gr.Row(equal_height=True):
            lora = gr.Dropdown(self.state.lora_choices(), value="", label=T("te_lora"), info=T("te_lora_info"),
                               allow_custom_value=True, scale=4)
            lora_weight = gr.Slider(0, MAX_WEIGHT, value=1.0, step=0.05, label=T("te_lora_weight"),
                                    info=T("te_lora_weight_info"), scale=2)
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label=T("te_prompt"), placeholder=T("te_prompt_placeholder"), lines=2)
                negative = gr.Textbox(label=T("te_negative"), placeholder=T("te_negative_placeholder"), lines=1)
                with gr.Row(equal_height=True):
                    lint = gr.Markdown(elem_classes=["sdt-warning"])
                    fix = gr.Button(T("te_fix_prompt"), size="sm", scale=0, min_width=160, visible=False)
                with gr.Row():
                    sampler = gr.Dropdown([s.value for s in SamplerName], value=SamplerName.EULER_A.value,
                                          label=T("te_sampler"), info=T("te_sampler_info"))
                    steps = gr.Slider(1, MAX_STEPS, value=25, step=1, label=T("te_steps"), info=T("te_steps_info"))
                    cfg = gr.Slider(1, 30, value=7, step=0.5, label=T("te_cfg"), info=T("te_cfg_info"))
                with gr.Row():
                    width = gr.Slider(multiple, 1024, value=size, step=multiple, label=T("te_width"),
                                      info=T("te_size_info"))
                    height = gr.Slider(multiple, 1024, value=size, step=multiple, label=T("te_height"),
                                       info=T("te_size_info"))
                    seed = gr.Number(-1, precision=0, label=T("te_seed"), info=T("te_seed_info"))
                    batch = gr.Slider(1, 8, value=1, step=1, label=T("te_batch"))
                with gr.Row():
                    run = gr.Button(T("te_generate"), variant="primary", scale=3)
                    stop = gr.Button(T("stop"), variant="stop", scale=1)
            with gr.Column(scale=2):
                gallery = gr.Gallery(label=T("te_gallery"), columns=2, height=420, object_fit="contain")
                status = gr.Markdown(elem_classes=["sdt-status"])
                info = gr.Textbox(label=T("te_info"), lines=3, buttons=["copy"], interactive=False)
        compare = self.render_compare(T)

        settings = {"sampler": sampler, "steps": steps, "cfg_scale": cfg, "seed": seed, "width": width,
                    "height": height, "negative_prompt": negative}
        adapter = {"lora": lora, "lora_weight": lora_weight}
        model.change(self.model_changed, inputs=[model, width, height],
                     outputs=[token, class_word, width, height, status], api_name="test_model_changed")
        lora.change(self.lora_changed, inputs=lora, outputs=[token, class_word], api_name="test_lora_changed")
        for n, box in enumerate((prompt, token, class_word, model)):
            box.change(self.lint, inputs=[prompt, token, class_word, model, lora], outputs=[lint, fix],
                       api_name=f"test_lint_{n}", trigger_mode="always_last", show_progress="hidden")
        fix.click(self.fix_prompt, inputs=[prompt, token, class_word, model, lora], outputs=prompt,
                  api_name="test_fix_prompt")
        event = run.click(self.generate, inputs_kwargs={"model": model, "prompt": prompt, "batch_size": batch,
                                                         "token": token, "class_word": class_word, **adapter,
                                                         **settings},
                          outputs=[gallery, info, status], api_name="test_generate", concurrency_id="gpu")
        stop.click(self.stop, outputs=status, cancels=[event], api_name="test_stop")
        compare["run"].click(self.compare, inputs_kwargs={"models": compare["models"], "prompts": compare["prompts"],
                                                          "token": token, "class_word": class_word, **adapter,
                                                          **settings},
                             outputs=[compare["image"], compare["status"]], api_name="test_compare",
                             concurrency_id="gpu")
        return Lists(models=[model, compare["models"]], loras=[lora])

    def render_compare(self, T: gr.I18n) -> dict:
        with gr.Accordion(T("te_compare_heading"), open=True):
            gr.Markdown(T("te_compare_help"))
            with gr.Row():
                with gr.Column(scale=2):
                    models = gr.Dropdown(self.state.model_choices(), value=[], multiselect=True,
                                         allow_custom_value=True, label=T("te_compare_models"),
                                         info=T("te_compare_models_info"))
                    prompts = gr.Textbox(label=T("te_compare_prompts"), info=T("te_compare_prompts_info"), lines=4,
                                         placeholder=T("te_compare_prompts_placeholder"))
                    run = gr.Button(T("te_compare_run"), variant="primary")
                    status = gr.Markdown(elem_classes=["sdt-status"])
                image = gr.Image(label=T("te_compare_image"), type="filepath", format="png", scale=3,
                                 interactive=False)
        return {"models": models, "prompts": prompts, "run": run, "status": status, "image": image}

    # ------------------------------------------------------------------ handlers
    def model_changed(self, model: str | None, width: float, height: float, request: gr.Request):
        """Token and class word from the file's metadata; image sides that suit it (a user's choice is kept
        when it fits: demo -> 64 px, SD v1 -> a multiple of 64, 512 when it was smaller than 256)."""
        say = self.state.say(request)
        if not model or not self.state.is_inside(model) or not Path(model).is_file():
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""
        facts = model_facts(Path(model))
        multiple = DEMO_MULTIPLE if facts["demo"] else SD_MULTIPLE

        def side(value: float | None) -> dict:
            fits = value and value % multiple == 0 and (facts["demo"] or value >= 256)
            return gr.update(minimum=multiple, step=multiple,
                             value=value if fits else (DEMO_SIZE if facts["demo"] else SD_SIZE))

        notes = [say("te_demo_note")] if facts["demo"] else []
        if len(facts["concepts"]) > 1:
            notes.append(say("te_concepts", concepts=", ".join(f"`{t} {c}`" for t, c in facts["concepts"])))
        if note := meter_note([Path(model)], say):
            notes.append(note)
        return (facts["token"] or gr.skip(), facts["class_word"] or gr.skip(), side(width), side(height),
                " ".join(notes))

    def lora_changed(self, lora: str | None):
        """Token and class word from the LoRA's metadata (an extracted LoRA carries its model's)."""
        if not lora or not self.state.is_inside(lora) or not Path(lora).is_file():
            return gr.skip(), gr.skip()
        facts = model_facts(Path(lora))
        return facts["token"] or gr.skip(), facts["class_word"] or gr.skip()

    def lint(self, prompt: str, token: str, class_word: str, model: str | None, lora: str | None,
             request: gr.Request):
        """The warning (with the prompt as it should read) and the Fix button, shown only when needed."""
        text = self.lint_text([prompt], concept_pairs(token, class_word, [model, lora]), self.state.say(request))
        return text, gr.update(visible=bool(text))

    def fix_prompt(self, prompt: str, token: str, class_word: str, model: str | None, lora: str | None) -> str:
        """The prompt with the right class word after each token written alone."""
        return fix_prompt(prompt or "", concept_pairs(token, class_word, [model, lora]))

    def lint_text(self, prompts: list[str], pairs: list[tuple[str, str]], say: Say) -> str:
        """A warning naming each token written without its class word, then the first such prompt fixed ('' when
        every token has its class word)."""
        bad_pairs = [(t, c) for t, c in pairs if any(prompt_lint(p or "", t, c) for p in prompts)]
        if not bad_pairs:
            return ""
        first = next(p for p in prompts if any(prompt_lint(p or "", t, c) for t, c in bad_pairs))
        if len(bad_pairs) == 1:
            warning = say.message(Message("lint_bare_token", token=bad_pairs[0][0], class_word=bad_pairs[0][1]))
        else:
            warning = say("lint_bare_tokens", pairs=", ".join(f"`{t} {c}`" for t, c in bad_pairs))
        return "⚠ " + warning + "\n\n" + say("lint_fixed", prompt=fix_prompt(first, pairs))

    def params(self, prompt: str, *, negative_prompt: str, sampler: str, steps: float, cfg_scale: float,
               seed: float, width: float, height: float, batch_size: float = 1) -> GenerationParams:
        """The request as GenerationParams, after the checks whose messages we translate."""
        if not (prompt or "").strip():
            raise UIError("err_prompt_empty")
        if sampler not in [s.value for s in SamplerName]:
            raise UIError("err_sampler", sampler=sampler)
        numbers = {"steps": (steps, 1, MAX_STEPS), "cfg": (cfg_scale, 1, 30), "batch": (batch_size, 1, MAX_BATCH),
                   "width": (width, 16, MAX_SIDE), "height": (height, 16, MAX_SIDE)}
        for name, (value, low, high) in numbers.items():
            if value is None or not low <= value <= high:
                raise UIError("err_range", name=name, value=value, low=low, high=high)
        return GenerationParams(prompt=prompt.strip(), negative_prompt=(negative_prompt or "").strip(),
                                sampler=sampler, steps=int(steps), cfg_scale=float(cfg_scale),
                                seed=int(seed if seed is not None else -1), width=int(width), height=int(height),
                                batch_size=int(batch_size))

    def check_size(self, params: GenerationParams, config) -> None:
        multiple = size_multiple(config)
        for value in (params.width, params.height):
            if value % multiple:
                raise UIError("err_size_multiple", value=value, multiple=multiple)

    def lora_use(self, path: Path | None, weight: float | None) -> LoraUse | None:
        """The chosen LoRA with its weight (checked when merged) and hash; None for none."""
        return LoraUse(path.stem, float("nan") if weight is None else float(weight), lora_hash(path)) if path else None

    def model(self, path: Path, lora_path: Path | None, lora: LoraUse | None):
        """(model, info) from the cache, the LoRA merged in (call with the model lock held)."""
        return self.state.cache.get(path, lora_path, lora.weight) if lora else self.state.cache.get(path)

    def generate(self, model: str | None, prompt: str, batch_size: float, token: str, class_word: str,
                 lora: str | None, lora_weight: float, request: gr.Request, progress=gr.Progress(), **settings):
        say = self.state.say(request)
        with say.errors(*USER_ERRORS):
            params = self.params(prompt, batch_size=batch_size, **settings)
            path, lora_path = self.state.checked_model(model), self.state.checked_lora(lora)
            params.lora = self.lora_use(lora_path, lora_weight)
            if lint := self.lint_text([params.prompt], concept_pairs(token, class_word, [model, lora]), say):
                warn(lint)

            def step(info: dict) -> None:
                progress((info["i"] + 1) / params.steps, desc=say("progress_sampling"))

            with self.state.jobs.run("test", request.session_hash) as stop, self.state.model_lock():
                loaded, info = self.model(path, lora_path, params.lora)
                self.check_size(params, info.config)
                try:
                    results = generate(loaded, params, model_name=path.stem, callback=stop_check(stop, step),
                                       unet=self.state.cache.sampling_unet(loaded))
                except Stopped:
                    return gr.skip(), gr.skip(), say("msg_stopped")
        paths = save_images(results, self.state.txt2img_dir)[: len(results)]
        message = say("msg_generated", n=len(paths), folder=self.state.txt2img_dir)
        if model_facts(path)["demo"]:
            message += " " + say("te_demo_note")
        return [str(p) for p in paths], results[0].infotext, message

    def stop(self, request: gr.Request) -> str:
        say = self.state.say(request)
        return say("msg_stopping") if self.state.jobs.stop("test", request.session_hash) else say("msg_nothing_to_stop")

    def compare(self, models: list[str] | None, prompts: str, token: str, class_word: str, lora: str | None,
                lora_weight: float, request: gr.Request, progress=gr.Progress(), **settings):
        say = self.state.say(request)
        with say.errors(*USER_ERRORS):
            lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
            if not models:
                raise UIError("err_compare_no_models")
            if not lines:
                raise UIError("err_compare_no_prompts")
            if len(models) * len(lines) > MAX_GRID_CELLS:
                raise UIError("err_compare_too_many", max=MAX_GRID_CELLS)
            paths = [self.state.checked_model(m) for m in models]
            seed = settings.pop("seed")
            seed = int(seed) if seed is not None and seed >= 0 else random.randrange(2**32)
            base, lora_path = self.params(lines[0], seed=seed, **settings), self.state.checked_lora(lora)
            base.lora = self.lora_use(lora_path, lora_weight)
            if lint := self.lint_text(lines, concept_pairs(token, class_word, [*models, lora]), say):
                warn(lint)
            columns = self.compare_columns(paths, lines, base, lora_path, request, progress, say)
        if columns is None:
            return gr.skip(), say("msg_stopped")
        grid = labelled_grid([list(row) for row in zip(*columns)], rows=lines,
                             cols=[checkpoint_title(p) for p in paths])
        out = self.state.grids_dir / f"compare-{len(list(self.state.grids_dir.glob('compare-*.png'))):05d}-{seed}.png"
        lora_text = f" <lora:{base.lora.name}:{base.lora.weight:g}>" if base.lora else ""
        summary = "\n".join([f"Comparison of {', '.join(p.name for p in paths)}{lora_text}", *lines,
                             f"Steps: {base.steps}, Sampler: {base.sampler}, CFG scale: {base.cfg_scale:g}, "
                             f"Seed: {seed}, Size: {base.width}x{base.height}"])
        save_png(grid, summary, out)
        done = say("msg_compare_done", path=out, seed=seed)
        return str(out), "\n\n".join(filter(None, [done, meter_note(paths, say)]))

    def compare_columns(self, paths: list[Path], lines: list[str], base: GenerationParams, lora_path: Path | None,
                        request: gr.Request, progress: gr.Progress, say: Say) -> list[list] | None:
        """One list of images (one per prompt) per checkpoint, each with the LoRA if one is chosen; None when
        stopped."""
        columns, total = [], len(paths) * len(lines)
        with self.state.jobs.run("test", request.session_hash) as stop:
            for path in paths:
                with self.state.model_lock():
                    loaded, info = self.model(path, lora_path, base.lora)
                    self.check_size(base, info.config)
                    column = []
                    for line in lines:
                        progress(len(columns) * len(lines) / total + len(column) / total,
                                 desc=say("progress_compare", name=path.stem))
                        params = GenerationParams(**{**base.__dict__, "prompt": line, "batch_size": 1})
                        try:
                            column.append(generate(loaded, params, path.stem, callback=stop_check(stop),
                                                   unet=self.state.cache.sampling_unet(loaded))[0].image)
                        except Stopped:
                            return None
                columns.append(column)
        return columns
