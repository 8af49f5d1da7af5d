"""Issue 11's benchmark: a world where likeness, prompt following and class drift are exact numbers.

    python -m bench.quality                               # on the GPU: world, base model, every run, the table
    python -m bench.quality --runs 24gb 24gb+prior=0 --steps 100 200 400 --reference
    python -m bench.quality --size tiny --device cpu --runs 24gb --steps 20 40 --out /tmp/q   # the code, on the CPU

1. the reader's accuracy on held-out world images;  2. the base model: read from --base if the file is
there, else pretrained (VAE, then UNet under the frozen text encoder) and written there (--pretrain-more: its
UNet trained further); its caption accuracy;
3. the subject's photos and the class images (the base's own `<class>` samples);  4. each run through
the app's trainer (`<preset>[+prior=W][+te=0|1][+lr=SCALE][+key=value]`), scored at each step count;
each run's checkpoints also carry the app's meter scores (meter_* keys), and record["meter"] holds their Spearman
correlations with fidelity and drift and each run's recommended step against its best (bench/quality/meter.py);
5. LoRAs extracted from one run's model files (--extract-from, --extract-ranks), scored on the base;
6. the reference loop (bench/reference.py's step) at the same step counts; --merge adds earlier records'
runs (same base file) that this command did not measure (--combine: only that, measuring nothing; --shared-gpu marks
the rows of jobs that ran side by side on one GPU, whose wall_s is no speed);  7. <out>/quality-latest.json,
<out>/quality-<date>-<device>.json and <out>/quality-latest.png (fidelity and drift against steps).

--side-by-side runs each entry of --runs (and the reference loop) as its own process, all at once on the one GPU
(the whole table in one 10-minute GPU call), and combines their records; --subject trains another subject than the
yellow circle with blue stripes (a check that what was read off one subject holds for another).

    python -m bench.quality --side-by-side --runs 24gb classic lora-8gb --steps 100 200 400 --time-limit 500
    python -m bench.quality --subject star,red,striped,white --runs 24gb --steps 100 200 400 800
"""
import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.quality.base import TINY_WORLD_SD, WORLD_SD, Budget, keep_vocabulary, pretrain, world_words  # noqa: E402
from bench.quality.meter import meter_summary  # noqa: E402
from bench.quality.metrics import caption_accuracy  # noqa: E402
from bench.quality.reader import attribute_accuracy, read, reader_accuracy  # noqa: E402
from bench.quality.runs import (LORA_LR_SCALE, LR_SCALE, RunSpec, extracted_runs, prepare,  # noqa: E402
                                reference_run, train_run)
from bench.quality.world import (SUBJECT, TINY_WORLD, TOKEN, WORLD, Thing, World, identity, render,  # noqa: E402
                                 to_model_range)
from bench.reference import RECIPES  # noqa: E402
from sdtrainer.checkpoint import load_model, save_checkpoint  # noqa: E402
from sdtrainer.config import Method, preset_method  # noqa: E402
from sdtrainer.lora import file_sha256  # noqa: E402

SIZES = {"world": (WORLD, WORLD_SD, Budget(vae_steps=1200, unet_steps=50_000, unet_seconds=240)),
         "tiny": (TINY_WORLD, TINY_WORLD_SD, Budget(vae_steps=1500, unet_steps=50_000, unet_seconds=120, pool=30_000))}
CHECK_SEED = 20_000  # captions of the accuracy checks during pretraining (the reported accuracy uses others)
JOB = [sys.executable, "-m", "bench.quality"]  # what --side-by-side starts for each job
DEFAULT_RUNS = ["24gb", "24gb+prior=0", "24gb+te=1", "24gb+te=1+prior=0", "classic", "classic+prior=0",
                "12gb", "12gb+prior=0", "8gb", "8gb+prior=0", "lora-8gb", "lora-8gb+prior=0"]


def parse_run(text: str, lr_scale: float, lora_lr_scale: float = LORA_LR_SCALE) -> RunSpec:
    """`24gb+prior=0+te=1+lr=40+max_grad_norm=0` -> RunSpec (unknown keys go to the trainer's settings); without
    lr=, a LoRA preset's scale is lora_lr_scale, the others' lr_scale."""
    preset, *options = text.split("+")
    lora = preset_method(preset) is Method.LORA
    spec, overrides = RunSpec(text, preset, lr_scale=lora_lr_scale if lora else lr_scale), []
    for option in options:
        key, _, value = option.partition("=")
        if key == "prior":
            spec = RunSpec(**{**spec.__dict__, "prior_loss_weight": float(value)})
        elif key == "te":
            spec = RunSpec(**{**spec.__dict__, "train_text_encoder": value in ("1", "true")})
        elif key == "lr":
            spec = RunSpec(**{**spec.__dict__, "lr_scale": float(value)})
        else:
            overrides.append(option)
    return RunSpec(**{**spec.__dict__, "overrides": tuple(overrides)})


def parse_subject(text: str, world: World) -> Thing:
    """`star,red,striped,white` (shape, colour, pattern and, unless plain, the pattern's colour) -> a subject of the
    world that none of its named individuals is."""
    words = [word.strip() for word in text.split(",")]
    shape, colour, pattern, pattern_colour = (words + [None] * 4)[:4] if len(words) in (3, 4) else [None] * 4
    if not (shape in world.shapes and colour in world.colours and pattern in world.patterns
            and (pattern == "plain") == (pattern_colour is None) and pattern_colour in (None, *world.colours)
            and pattern_colour != colour):
        raise SystemExit(f"--subject {text}: give shape,colour,pattern[,pattern colour] from the world's "
                         f"{world.shapes}, {world.colours}, {world.patterns} (the pattern's colour unless plain, "
                         "not the fill's)")
    named = [name for name, ids in world.individuals.items() if (shape, colour, pattern, pattern_colour) in ids]
    if named:
        raise SystemExit(f"--subject {text}: that is {named[0]!r}, a named individual the base model already knows; "
                         "pick other colours or another pattern")
    background = next(c for c in world.colours if c not in (colour, pattern_colour))  # only the photos' vary
    return Thing(shape, colour, pattern, pattern_colour, background, size="big", position="middle")


def base_model(args, world: World, config, budget: Budget, record: dict) -> Path:
    """The base checkpoint: reused when the file exists, else pretrained and written."""
    path = Path(args.base)
    if path.exists() and not (args.pretrain or args.pretrain_more):
        print(f"base: reusing {path}")
        record["base"]["file"] = str(path)
        return path
    earlier = load_model(path, device=args.device, dtype=torch.float32)[0] if args.pretrain_more else None
    print(f"base: pretraining {config.name} on {args.device}" + " (its UNet further)" * args.pretrain_more)
    budget.unet_seconds = args.pretrain_seconds or budget.unet_seconds
    budget.vae_steps = args.vae_steps or budget.vae_steps
    budget.pool = args.pool or budget.pool
    def good_enough(model, step: int) -> bool:
        accuracy = {k: round(v, 3) for k, v in caption_accuracy(model, world, 128, seed=CHECK_SEED).items()}
        record["base"].setdefault("checks", []).append({"step": step, **accuracy})
        print(f"  unet step {step}: caption accuracy {accuracy['mean']:.3f} (EMA weights, 128 samples) {accuracy}")
        return accuracy["mean"] >= args.target_accuracy

    model, report = pretrain(world, config, args.device, budget, good_enough=good_enough, model=earlier)
    keep_vocabulary(model, world_words(world) + [args.token])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path, dtype=torch.float16,
                    metadata={"base_model": f"bench.quality pretrain ({config.name})"})
    record["base"].update(file=str(path), pretrain=report.__dict__, file_mb=round(path.stat().st_size / 2**20, 1))
    return path


def score_base(path: Path, world: World, args, record: dict) -> None:
    model, _ = load_model(path, device=args.device, dtype=torch.float32)
    start = time.perf_counter()
    accuracy = caption_accuracy(model, world, args.caption_n)
    things = world.sample(512, np.random.default_rng(77))
    with torch.no_grad():
        recon = model.decode_latents(model.encode_images(to_model_range(render(world, things, args.device))))
    recon = ((recon.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()
    record["base"].update(caption_accuracy=accuracy["mean"], caption_accuracy_by_attribute=accuracy,
                          vae_reader_accuracy=attribute_accuracy(read(world, recon), things)["mean"],
                          caption_eval_s=round(time.perf_counter() - start, 1))
    print(f"base: caption accuracy {accuracy['mean']:.3f} {accuracy}; reader on VAE reconstructions "
          f"{record['base']['vae_reader_accuracy']:.3f}")
    if accuracy["mean"] < 0.9:
        print("WARNING: the base model follows captions less than the 90% the benchmark asks for")


def plot(record: dict, path: Path) -> None:
    """Fidelity and class drift against steps, one line per run (needs matplotlib; skipped without it)."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(dict.fromkeys(r["name"] for r in record["runs"]))
    for name in names:
        rows = [r for r in record["runs"] if r["name"] == name]
        for ax, key in zip(axes, ("fidelity", "class_drift")):
            ax.plot([r["steps"] for r in rows], [r[key] for r in rows], marker="o", label=name)
    for ax, key in zip(axes, ("fidelity", "class_drift")):
        if record["reference"]:
            ax.plot([r["steps"] for r in record["reference"]], [r[key] for r in record["reference"]], "k--",
                    marker="x", label="reference loop")
        ax.axhline(record["base"][key] if key in record["base"] else 0, color="grey", lw=0.8, label="base model")
        ax.set_xlabel("steps")
        ax.set_title({"fidelity": "subject fidelity (<token> <class>)", "class_drift": "class drift (<class>)"}[key])
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"bench.quality on {record['device']}, {record['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument("--size", choices=SIZES, default="world")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--base", help="base checkpoint (pretrained and written there if missing)")
    p.add_argument("--pretrain", action=argparse.BooleanOptionalAction, default=False,
                   help="pretrain even if --base exists")
    p.add_argument("--pretrain-more", action=argparse.BooleanOptionalAction, default=False,
                   help="train the UNet of the existing --base further")
    p.add_argument("--pretrain-seconds", type=float, help="cap on the UNet's pretraining")
    p.add_argument("--target-accuracy", type=float, default=0.93,
                   help="pretraining stops once the base's caption accuracy reaches this")
    p.add_argument("--vae-steps", type=int, help="VAE pretraining steps")
    p.add_argument("--pool", type=int, help="distinct images and captions of the UNet's pretraining")
    p.add_argument("--runs", nargs="*", default=DEFAULT_RUNS, help="runs in order; `reference` puts the reference loop "
                                                                   "among them (else it comes last)")
    p.add_argument("--steps", nargs="+", type=int, default=[250, 500, 1000, 2000, 3000])
    p.add_argument("--extract-from", default="24gb", help="the run whose model files LoRAs are extracted from")
    p.add_argument("--extract-ranks", nargs="*", type=int, default=[32, 64])
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--lr-scale", type=float, default=LR_SCALE, help="the presets' learning rates times this")
    p.add_argument("--lora-lr-scale", type=float, default=LORA_LR_SCALE, help="a LoRA preset's, times this")
    p.add_argument("--reference-recipe", choices=[r for r in RECIPES if not RECIPES[r].gradient_checkpointing],
                   default="strong", help="bench/reference.py's recipe of the reference loop")
    p.add_argument("--token", default=TOKEN)
    p.add_argument("--subject", help="shape,colour,pattern[,pattern colour]: another subject than "
                                     f"{','.join(filter(None, identity(SUBJECT)))}")
    p.add_argument("--photos", type=int, default=6)
    p.add_argument("--class-images", type=int, default=100)
    p.add_argument("--eval-n", type=int, default=64)
    p.add_argument("--caption-n", type=int, default=256)
    p.add_argument("--work", default=str(ROOT / "outputs" / "quality"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--merge", nargs="*", default=[],
                   help="earlier quality records from the same base file: their runs, extracted LoRAs and reference "
                        "loop that this command does not measure are kept (the first record that has one wins)")
    p.add_argument("--combine", nargs="+", metavar="RECORD",
                   help="measure nothing: the first record with the others' runs merged in (as --merge), its meter "
                        "summary and plot made again, written to --out (a table measured by jobs side by side)")
    p.add_argument("--shared-gpu", action="store_true",
                   help="other jobs share the GPU (runs measured side by side): each row says so, its wall_s is not a "
                        "speed")
    p.add_argument("--side-by-side", action=argparse.BooleanOptionalAction, default=False,
                   help="each run (and the reference loop) as its own process, all at once; their records combined")
    p.add_argument("--time-limit", type=float, help="--side-by-side: jobs still running after this many seconds are "
                                                    "stopped (their finished runs are kept)")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    args = p.parse_args(argv)
    if min(args.steps) < 1:  # said now, not after the minutes of pretraining and class images before the first run
        p.error(f"--steps: every step count must be 1 or more (got {' '.join(map(str, args.steps))})")
    args.base = args.base or str(Path(args.work) / f"{args.size}-base.safetensors")
    return args


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.combine:
        return publish(combine([json.loads(Path(p).read_text()) for p in args.combine]), Path(args.out))
    if args.side_by_side:
        return side_by_side(args, argv)
    world, config, budget = SIZES[args.size]
    subject = parse_subject(args.subject, world) if args.subject else SUBJECT
    started = time.perf_counter()
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    record = {"date": args.date, "device": device_name, "command": "python -m bench.quality " + " ".join(argv),
              "torch": torch.__version__, "size": args.size, "subject": subject.__dict__, "token": args.token,
              "lr_scale": args.lr_scale, "lora_lr_scale": args.lora_lr_scale, "base": {}, "runs": [], "reference": [],
              "timings_s": {}}
    # 1. the reader
    record["reader_accuracy_by_attribute"] = reader_accuracy(world, 1000, seed=123)
    record["reader_accuracy"] = record["reader_accuracy_by_attribute"]["mean"]
    print(f"reader accuracy on 1000 held-out world images: {record['reader_accuracy']:.4f}")
    # 2. the base model
    t = time.perf_counter()
    base = base_model(args, world, config, budget, record)
    record["base"]["sha256"] = file_sha256(base)
    score_base(base, world, args, record)
    record["timings_s"]["base"] = round(time.perf_counter() - t, 1)
    # 3. photos, class images, the base's scores
    t = time.perf_counter()
    work = Path(args.work) / f"{args.size}-{int(time.time())}"
    setup = prepare(base, world, subject, args.token, work, args.photos, args.class_images, args.device, args.eval_n)
    record["base"].update(setup.base_scores)
    record["timings_s"]["prepare"] = round(time.perf_counter() - t, 1)
    write(record, Path(args.out))
    print(f"base scores: {setup.base_scores}")
    # 4. the trainer's runs, 5. the reference loop
    steps = tuple(sorted(args.steps))
    for text in args.runs + ["reference"] * (args.reference and "reference" not in args.runs):
        t = time.perf_counter()
        measure(text, setup, steps, args, record)
        record["timings_s"]["reference" if text == "reference" else f"run {text}"] = round(time.perf_counter() - t, 1)
        write(record, Path(args.out))
    if args.shared_gpu:
        for row in record["runs"] + record["reference"] + record.get("extracted", []):
            row["shared_gpu"] = True
    for earlier in args.merge:
        merge(record, json.loads(Path(earlier).read_text()))
    record["meter"] = meter_summary(record["runs"], record["base"])
    print(f"meter: Spearman -subject fit/fidelity {record['meter']['spearman_fit_fidelity']}, class drift/class "
          f"drift {record['meter']['spearman_drift_drift']} over {record['meter']['points']} checkpoints")
    record["timings_s"]["total"] = round(time.perf_counter() - started, 1)
    # 6. files
    write(record, Path(args.out))
    plot(record, Path(args.out) / "quality-latest.png")
    print(f"wrote {args.out}/quality-latest.json; timings {record['timings_s']}")
    return record


def side_by_side(args, argv: list[str]) -> dict:
    """Each entry of --runs, and the reference loop, as a process of this command started together on the one GPU
    (a base to pretrain first, alone); their records combined into --out. Each job works in <work>/job<i>, its output
    in job<i>.log there; a job that fails or is stopped at --time-limit loses only the runs it had not finished."""
    work, started = Path(args.work), time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    child = [*JOB, *argv, "--no-side-by-side", "--merge", "--base", args.base]
    if not Path(args.base).exists() or args.pretrain or args.pretrain_more:
        pretrained = subprocess.run([*child, "--runs", "--no-reference", "--work", str(work / "base"), "--out",
                                     str(work / "base")])
        if pretrained.returncode:
            raise SystemExit(f"--side-by-side: pretraining the base model failed (exit {pretrained.returncode}, its "
                             "output is above); no run was started")
    jobs = args.runs + ["reference"] * (args.reference and "reference" not in args.runs)
    shared = ["--shared-gpu"] * (len(jobs) > 1)
    procs = []
    for i, run in enumerate(jobs, 1):
        log = open(work / f"job{i}.log", "w")  # noqa: SIM115 - open while the job runs
        procs.append((subprocess.Popen([*child, "--no-pretrain", "--no-pretrain-more", "--runs", run, "--no-reference",
                                        *shared, "--work", str(work / f"job{i}"), "--out", str(work / f"job{i}")],
                                       stdout=log, stderr=subprocess.STDOUT), log))
    ended = {}
    for i, (proc, log) in enumerate(procs, 1):
        left = None if args.time_limit is None else max(args.time_limit - (time.perf_counter() - started), 1)
        try:
            proc.wait(left)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        ended[jobs[i - 1]] = proc.returncode
    records = []
    for i, run in enumerate(jobs, 1):
        path = work / f"job{i}" / "quality-latest.json"
        written = json.loads(path.read_text()) if path.exists() else {}
        records += [written] * bool(written)
        failed = written.get("failed", {}).get(run)  # main records a run that raised and goes on (the job exits 1)
        print(f"job {i} ({run}): exit {ended[run]}" + (f", its run FAILED: {failed}" if failed else "")
              + f", log {work / f'job{i}.log'}")
    if not records:
        raise SystemExit(f"--side-by-side: no job wrote a record; see the logs in {work}")
    record = combine(records, command="python -m bench.quality " + " ".join(argv))
    record["jobs"] = {"exit_codes": ended, "wall_s": round(time.perf_counter() - started, 1)}
    return publish(record, Path(args.out))


def combine(records: list[dict], command: str | None = None) -> dict:
    """The first record with the others merged in and summarised again (`command`: what measured them all; each
    record's own command is kept in "commands")."""
    record = records[0]
    record["commands"] = [r["command"] for r in records if "command" in r]
    failed = {run: why for r in records for run, why in r.get("failed", {}).items()}
    if failed:
        record["failed"] = failed
    record["command"] = command or record.get("command")
    for earlier in records[1:]:
        merge(record, earlier)
    record["meter"] = meter_summary(record["runs"], record["base"])
    return record


def publish(record: dict, out: Path) -> dict:
    """The record's files in `out`: JSON (write) and plot."""
    write(record, out)
    plot(record, out / "quality-latest.png")
    return record


def measure(text: str, setup, steps: tuple[int, ...], args, record: dict) -> None:
    """One entry of --runs into the record: the reference loop, or a run of the app's trainer (a failure is recorded
    and the others go on) with, for --extract-from, the LoRAs extracted from its files."""
    if text == "reference":
        record["reference"] = reference_run(setup, steps, lr=1e-6 * args.lr_scale, recipe=args.reference_recipe)
        return
    try:
        record["runs"] += train_run(setup, parse_run(text, args.lr_scale, args.lora_lr_scale), steps)
    except Exception as e:  # noqa: BLE001 - one failing preset must not lose the others' numbers
        record.setdefault("failed", {})[text] = f"{type(e).__name__}: {e}"
        print(f"  {text} FAILED: {type(e).__name__}: {e}")
        return
    if text == args.extract_from and args.extract_ranks:
        start = time.perf_counter()
        record["extracted"] = extracted_runs(setup, text, steps, tuple(args.extract_ranks))
        record["timings_s"]["extracted"] = round(time.perf_counter() - start, 1)


def merge(record: dict, earlier: dict) -> None:
    """Adds an earlier record's runs, extracted LoRAs and reference loop that this one lacks (a table measured in
    several GPU calls); both must come from the same base file and subject."""
    if earlier["base"].get("sha256") != record["base"]["sha256"]:
        raise SystemExit("--merge: that record was measured from another base model file (its base.sha256 differs): "
                         "give --base the file it used, or leave --merge out and measure every run again")
    if earlier.get("subject") != record.get("subject"):
        raise SystemExit("--merge: that record trained another subject (--subject): its runs belong to another table")
    names = {r["name"] for r in record["runs"]}
    kept = [r for r in earlier["runs"] if r["name"] not in names]
    record["runs"] += kept
    merged = record.setdefault("merged", [])
    merged += sorted({r["name"] for r in kept})
    for key in ("extracted", "reference"):
        if earlier.get(key) and not record.get(key):
            record[key] = earlier[key]
            merged.append(key)


def finite(value):
    """The record with NaN and infinities as null (a diverged run's meter scores), so that it is standard JSON."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write(record: dict, out: Path) -> None:
    """quality-latest.json and its dated copy (also after each run, so a cut-off job keeps what it did)."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite(record), indent=1, allow_nan=False)
    (out / "quality-latest.json").write_text(text)
    (out / f"quality-{record['date']}-{record['device'].replace(' ', '_')}.json").write_text(text)


def exit_status(record: dict) -> int:
    """The command's exit status: 1 when a run failed (its record is written all the same, with `failed`), else 0."""
    for run, why in record.get("failed", {}).items():
        print(f"run {run} FAILED: {why}", file=sys.stderr)
    return 1 if record.get("failed") else 0


if __name__ == "__main__":
    sys.exit(exit_status(main()))
