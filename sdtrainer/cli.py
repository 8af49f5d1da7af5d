"""Command line: `python -m sdtrainer COMMAND ...` (run with --help for the list).

Each command is an `add_*` function that declares its arguments and the function that runs it.
Errors a user can fix (ValueError and its subclasses, files that are missing or cannot be written) print
one line and exit 2.
"""
import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ldm.samplers import SamplerName
from sdtrainer.messages import Message


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum, else argparse's one-line usage error."""
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value
    return whole_number


def devices(text: str) -> int | str:
    """An argparse type: `all`, or a whole number of GPUs from 1."""
    from sdtrainer.config import ALL_DEVICES

    return text if text == ALL_DEVICES else at_least(1)(text)


def run_demo_model(args) -> int:
    from sdtrainer.models import write_demo_model

    path = write_demo_model(Path(args.out))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def add_demo_model(sub) -> None:
    p = sub.add_parser("demo-model", help="write the tiny random-weight demo model (a few MB)")
    p.add_argument("--out", required=True, help="file to write (.safetensors or .ckpt)")
    p.set_defaults(run=run_demo_model)


def run_generate(args) -> int:
    from sdtrainer.lora import lora_hash
    from sdtrainer.models import ModelCache
    from sdtrainer.sampling import GenerationParams, LoraUse, generate, save_images

    if not Path(args.model).is_file():
        raise ValueError(Message("cli_model_missing", path=args.model))
    cache = ModelCache()
    lora = Path(args.lora) if args.lora else None
    model, info = cache.get(Path(args.model), lora, args.lora_weight)
    params = GenerationParams(prompt=args.prompt, negative_prompt=args.negative, sampler=args.sampler,
                              steps=args.steps, cfg_scale=args.cfg, seed=args.seed, width=args.width,
                              height=args.height, batch_size=args.batch, eta=args.eta,
                              lora=LoraUse(lora.stem, args.lora_weight, lora_hash(lora)) if lora else None)
    results = generate(model, params, model_name=Path(args.model).stem, unet=cache.sampling_unet(model))
    for path in save_images(results, Path(args.out)):
        print(path)
    return 0


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="text to image with a checkpoint")
    p.add_argument("--model", required=True, help="SD v1 checkpoint (.safetensors or .ckpt)")
    p.add_argument("--prompt", required=True, help="e.g. 'a photo of joepenna person' (token AND class word)")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--sampler", default=SamplerName.EULER_A.value, choices=[s.value for s in SamplerName])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--cfg", type=float, default=7.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=-1, help="-1 for a random seed")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--eta", type=float, default=None, help="noise of ddim / euler_a (default: the sampler's)")
    p.add_argument("--lora", help="a LoRA file (kohya's layout, e.g. from extract-lora) to apply to the model")
    p.add_argument("--lora-weight", type=float, default=1.0, help="its weight, 0 to 1.5 (default 1)")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.set_defaults(run=run_generate)


def train_values(args) -> dict:
    """The flags the user gave, as config values (flags left out do not override the preset or YAML)."""
    values = {"model": args.model, "images": args.images, "token": args.token, "class_word": args.class_word,
              "reg_images": args.reg_images, "class_images": args.class_images, "steps": args.steps,
              "device": args.device, "devices": args.devices}
    return {k: v for k, v in values.items() if v is not None}


def bar(done: int, total: int, width: int = 30) -> str:
    filled = round(min(done / max(1, total), 1.0) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def eta_text(eta_s: float | None) -> str:
    return f" ETA {datetime.timedelta(seconds=round(eta_s))}" if eta_s is not None else ""


def progress_line(state) -> str:
    """`step 120/2000 [###.......] loss 0.1234 1.85 it/s ETA 0:16:56` from a session snapshot."""
    loss = f" loss {state.loss:.4f}" if state.loss is not None else ""
    speed = f" {state.it_per_s:.2f} it/s" if state.it_per_s else ""
    steps = f"step {state.step}/{state.total_steps} {bar(state.step, state.total_steps)}"
    return f"{steps}{loss}{speed}{eta_text(state.eta_s)}"


def class_images_line(class_word: str, done: int, total: int, eta_s: float | None) -> str:
    """`class images of person 12/50 [#######.......] ETA 0:00:40`."""
    return f"class images of {class_word} {done}/{total} {bar(done, total)}{eta_text(eta_s)}"


def run_train(args) -> int:
    from sdtrainer.checkpoint import remove_stale_temp_files
    from sdtrainer.config import Device, TrainConfig, check_config, defaults_for, load_config
    from sdtrainer.session import EventKind, Status, TrainingSession

    run_dir = Path(args.resume or args.out)
    if args.out:
        check_run_dir(run_dir)
    for path in remove_stale_temp_files(run_dir):
        print(f"Removed {path}, a temporary file left by an interrupted save.", file=sys.stderr)
    yaml_path = run_dir / "config.yaml" if args.resume else args.config
    device = Device(args.device or TrainConfig.device.value)
    cfg = load_config(args.preset, yaml_path, args.set, values=train_values(args),
                      device_defaults=defaults_for(device))
    check_config(cfg)
    session = TrainingSession(cfg, run_dir, resume=bool(args.resume))

    midline = False  # a progress line is being rewritten in place (\r): the next full line starts below it

    def show(event) -> None:
        nonlocal midline
        if event.kind in (EventKind.PROGRESS, EventKind.CLASS_IMAGES):
            line = progress_line(session.snapshot()) if event.kind is EventKind.PROGRESS else class_images_line(
                **{k: event.data[k] for k in ("class_word", "done", "total", "eta_s")})
            print("\r" + line, end="", file=sys.stderr, flush=True)
            midline = True
            return
        if event.kind is EventKind.LOG:
            line = event.data["message"]
        elif event.kind in (EventKind.PREVIEW, EventKind.CHECKPOINT):
            path = event.data["preview"].path if event.kind is EventKind.PREVIEW else event.data["path"]
            line = f"{event.kind.value}: {path}"
        else:
            return
        print("\n" * midline + line, file=sys.stderr)
        midline = False

    session.subscribe(show)
    session.start()
    try:
        while not session.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("\n" * midline + "Stopping: finishing the current step and saving (Ctrl+C again to abort)...",
              file=sys.stderr)
        midline = False
        session.stop()
        session.wait()
    state = session.snapshot()
    print("\n" * midline + state.message, file=sys.stderr)
    return 0 if state.status in (Status.FINISHED, Status.STOPPED) else 1


def check_run_dir(run_dir: Path) -> None:
    """ValueError, before anything is loaded, when a new run's folder is a file or cannot be made."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(Message("cli_run_dir_is_file", run_dir=run_dir))
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # a try: the run makes it again once its settings are checked
    except OSError as e:
        raise ValueError(Message("cli_run_dir_unwritable", run_dir=run_dir, reason=e.strerror)) from None
    finally:
        for folder in missing:  # deepest first
            if folder.is_dir():
                folder.rmdir()


def add_train(sub) -> None:
    p = sub.add_parser("train", help="DreamBooth-train a base model on photos of a subject")
    p.add_argument("--model", help="base SD v1 checkpoint (.safetensors or .ckpt)")
    p.add_argument("--images", help="folder with 5-20 photos of the subject")
    p.add_argument("--token", help="rare word for the subject, e.g. ohwx")
    p.add_argument("--class-word", help="what the subject is, e.g. person; prompts then say 'ohwx person'")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument("--reg-images", help="folder of regularization images of the class")
    reg.add_argument("--class-images", type=at_least(0), help="generate N class images with the base model instead")
    p.add_argument("--steps", type=at_least(1), help="optimizer steps (preset default: 2000)")
    p.add_argument("--preset", help="24gb (default), 12gb, 8gb, classic (the old repos' recipe) or lora-8gb (a LoRA)")
    p.add_argument("--config", help="YAML file of settings (see sdtrainer/config.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting, repeatable")
    p.add_argument("--device", choices=["cuda", "cpu"], help="cuda (default); cpu only for the demo model")
    p.add_argument("--devices", type=devices, metavar="N|all",
                   help="GPUs to train on, one process each (default 1); each takes batch_size images per step")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="new run folder, e.g. outputs/joe")
    out.add_argument("--resume", metavar="RUN_DIR", help="continue the run in this folder from its saved state")
    p.set_defaults(run=run_train)


def run_prune(args) -> int:
    from sdtrainer.pruning import prune_checkpoint

    dst = Path(args.output)
    dst = dst if dst.suffix or dst.is_dir() else dst.with_suffix("." + args.format)  # a folder: refused by prune
    report = prune_checkpoint(args.input, dst, half=args.half, ema=args.ema, overwrite=args.overwrite)
    print(report.summary)
    return 0


def add_prune(sub) -> None:
    p = sub.add_parser("prune", help="shrink a checkpoint to the weights inference needs (e.g. 12 GB -> 2 GB)")
    p.add_argument("input", help="checkpoint to prune (.ckpt or .safetensors); it is never modified")
    p.add_argument("output", help="file to write; its extension picks the format")
    p.add_argument("--half", action=argparse.BooleanOptionalAction, default=True, help="fp16 weights (default)")
    p.add_argument("--ema", nargs="?", const="use", default="drop", choices=["drop", "keep", "use"],
                   help="EMA weights: drop (default), keep as model_ema.*, or use as the weights (--ema alone)")
    p.add_argument("--format", choices=["safetensors", "ckpt"], default="safetensors",
                   help="format when OUTPUT has no extension")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(run=run_prune)


def run_extract_lora(args) -> int:
    from sdtrainer.lora_extract import ExtractSettings, extract_lora

    out = Path(args.out)
    out = out if out.suffix or out.is_dir() else out.with_suffix(".safetensors")  # a folder: refused by extract
    settings = ExtractSettings(rank=args.rank, conv_rank=args.conv_rank, energy=args.energy,
                               text_encoder=args.text_encoder, half=args.half)

    def show(done: int, total: int) -> None:
        print(f"\rlayers {done}/{total} {bar(done, total)}", end="", file=sys.stderr, flush=True)

    report = extract_lora(args.base, args.tuned, out, settings, overwrite=args.overwrite, callback=show)
    print(file=sys.stderr)
    print(report.summary)
    if steps := report.rank_steps():
        print("kept with every layer at rank " + ", ".join(f"{rank}: {kept:.1%}" for rank, kept in steps))
    if report.unchanged:
        print(f"{len(report.unchanged)} layers unchanged, left out (e.g. {report.unchanged[0]})")
    print("layers that keep the least:")
    for layer in report.worst(5):
        print(f"  {layer.name}: rank {layer.rank} of {layer.full_rank} keeps {layer.kept:.1%}")
    return 0


def add_extract_lora(sub) -> None:
    p = sub.add_parser("extract-lora", help="the difference between a trained model and its base as a LoRA file")
    p.add_argument("base", help="the model the training started from (.safetensors or .ckpt)")
    p.add_argument("tuned", help="the trained model")
    p.add_argument("out", help="LoRA file to write (.safetensors), in kohya's layout (AUTOMATIC1111, ComfyUI)")
    p.add_argument("--rank", type=at_least(1), default=32, help="rank of each layer (default 32); with --energy, "
                                                                 "the most a layer gets")
    p.add_argument("--conv-rank", type=at_least(0), default=0,
                   help="also the ResBlocks, with this rank for their 3x3 convs (default 0: left out)")
    p.add_argument("--energy", type=float, default=None,
                   help="per layer, the smallest rank that keeps this share of its difference (e.g. 0.9)")
    p.add_argument("--text-encoder", action="store_true", help="also the text encoder (if training changed it)")
    p.add_argument("--half", action=argparse.BooleanOptionalAction, default=True, help="fp16 tensors (default)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=run_extract_lora)


def run_preflight(args) -> int:
    from sdtrainer.config import load_config
    from sdtrainer.session import gate_report

    values = {"devices": args.devices} if args.devices is not None else {}
    report = gate_report(load_config(args.preset, args.config, args.set, values=values))
    print(report.format())
    return 0 if report.ok else 1


def add_preflight(sub) -> None:
    p = sub.add_parser("preflight", help="check the GPU for a preset; exit 1 when training would be refused")
    p.add_argument("--preset", help="24gb (default), 12gb, 8gb, classic or lora-8gb")
    p.add_argument("--config", help="YAML file of settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. ema=true")
    p.add_argument("--devices", type=devices, metavar="N|all", help="check the first N GPUs, or all (default 1)")
    p.set_defaults(run=run_preflight)


def run_class_images(args) -> int:
    from sdtrainer.class_images import Pace, class_image_batch, generate_class_images
    from sdtrainer.models import ModelCache

    if not Path(args.model).is_file():
        raise ValueError(Message("cli_model_missing", path=args.model))
    cache = ModelCache()
    model, _ = cache.get(Path(args.model))
    batch, pace = args.batch or class_image_batch(None, cache.device.type), Pace()

    def show(done: int, total: int, path: Path | None) -> None:
        line = class_images_line(args.class_word, done, total, pace.eta(done, total))
        print("\r" + line, end="", file=sys.stderr, flush=True)

    paths = generate_class_images(model, args.class_word, args.count, Path(args.out), seed=args.seed, callback=show,
                                  resolution=args.resolution, steps=args.steps, batch_size=batch)
    print(f"\n{len(paths)} class images in {args.out}")
    return 0


def add_class_images(sub) -> None:
    p = sub.add_parser("class-images", help="generate regularization images of a class with the base model")
    p.add_argument("--model", required=True, help="base SD v1 checkpoint")
    p.add_argument("--class-word", required=True, help="e.g. person; the prompt is the class word alone")
    p.add_argument("--count", type=at_least(1), default=200)
    p.add_argument("--out", required=True, help="folder; images already there are kept (resumable)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument("--steps", type=at_least(1), default=30)
    p.add_argument("--resolution", type=at_least(64), default=512)
    p.add_argument("--batch", type=at_least(1), help="images per sampler call (default 4)")
    p.set_defaults(run=run_class_images)


def meter_table(rows, rec) -> str:
    """The scores as an aligned text table, the recommended step marked, then why."""
    lines = [f"{'step':>7}  {'subject_fit':>11}  {'class_drift':>11}  {'copying':>8}  file"]
    for r in rows:
        mark = "*" if rec is not None and r.step == rec.step else " "
        lines.append(f"{mark}{r.step:>6}  {r.subject_fit:>11.4f}  {r.class_drift:>11.4f}  {r.copying:>8.4f}  "
                     f"{Path(r.file).name}")
    if rec is not None:
        lines.append(f"* recommended: {rec.why}")
    return "\n".join(lines)


def run_meter(args) -> int:
    from sdtrainer.meter import measure_run, recommend, row_record

    def show(done: int, total: int) -> None:
        print(f"\rmeasuring checkpoints {done}/{total} {bar(done, total)}", file=sys.stderr, flush=True,
              end="\n" if done == total else "")

    rows = measure_run(Path(args.run_dir), args.device, show, again=args.again, model=args.model)
    rec = recommend(rows)
    if args.json:
        keys = ("step", "file", "subject_fit", "class_drift", "copying")
        print(json.dumps({"checkpoints": [{k: row_record(r)[k] for k in keys} for r in rows],
                          "recommended": rec and {"step": rec.step, "file": rec.file, "why": rec.why}}, indent=1))
    else:
        print(meter_table(rows, rec))
    return 0


def add_meter(sub) -> None:
    p = sub.add_parser("meter", help="score a run's checkpoints (subject fit, class drift, copying); pick a step")
    p.add_argument("run_dir", help="a run folder, e.g. outputs/runs/joe")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--again", action="store_true",
                   help="measure every checkpoint again (default: only those meter.json lacks)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to measure (default cpu)")
    p.add_argument("--model", help="the run's base model, when it is no longer where the run found it")
    p.set_defaults(run=run_meter)


COMMANDS = [add_demo_model, add_generate, add_class_images, add_train, add_prune, add_extract_lora, add_preflight,
            add_meter]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sdtrainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as e:  # what a user can cause: one line, never a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
