"""Training and sampling speed of each preset against a diffusers-style reference, with what each preset
learns (issue 10).

    python bench/train.py                          # on the GPU: full SD v1, 512 px, every job, 3 processes each
    python bench/train.py --tiny --device cpu      # the same code on the tiny model, seconds, no GPU
    python bench/train.py --jobs train:24gb+compile=false reference:strong   # chosen jobs (+key=value overrides)

Jobs (each in its own process on the GPU, so peaks and compile caches don't leak between them; each
repeated --repeat times, the median kept and the spread recorded):
  train:<preset>      our training path: DreamBoothModule + the Trainer from build_trainer, on synthetic
                      cached latents (5 instance, 20 class; batch 1 + 1 class image), random weights
  train:fp32          the 24gb preset with fp32 weights and math: the learning yardstick
  train:<preset>+devices=N+cuda_graphs=false
                      the same on N GPUs, one process each (Lightning's ddp, as the trainer runs it): each
                      step trains N times the batch; images_per_s counts them (not in the default jobs)
  reference:default   bench/reference.py with train_dreambooth.py's defaults (fp32, AdamW)
  reference:strong    its fastest 24 GB recipe (bf16 autocast, TF32, fused AdamW): paired with 24gb
  reference:lowmem    its low-memory recipe (+ gradient checkpointing, AdamW8bit): paired with 12gb, 8gb
  ceiling             the UNet's forward and backward alone, bf16 weights, one CUDA graph, batch 2: the
                      fastest a step could be (no optimizer, no data)
  sampling[:graph]    our sampler, fp16, CFG 7, euler_a 20 steps, VAE decode ([:graph]: CUDA graph)
  reference:sampling  diffusers UNet + VAE in fp16, the same loop as StableDiffusionPipeline

Learning: every train job starts from the same random weights and data order; after its steps its first
process reports the share of UNet weights that changed and the relative drop of a held-out denoising error
(subject latents, fixed noise and timesteps, evaluated in fp32), set against train:fp32's.
Throughput in TFLOP/s counts the useful work of a step: forward and backward of the UNet on 2 images
(2.47 TFLOP per 512 px image), not the recomputation of gradient checkpointing.

Peak VRAM is PyTorch's maximum reserved memory over the job (what the card must hold, without the
~0.5 GiB CUDA context); max allocated is in the details file. Writes <out>/latest.json and
<out>/train-<date>-<device>.json, and <out>/train-<date>-<device>-details.json (every process's raw
numbers, the command). `python bench/readme_table.py` puts latest.json in the README.
`--merge DETAILS` keeps the jobs of an earlier run on the same device that this run does not repeat
(after a change that touches one preset, re-run its job alone); they are listed under merged_jobs.
"""
import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import reference  # noqa: E402
from bench.reference import peaks, reset_peak, synchronize  # noqa: E402

PRESETS = ("24gb", "12gb", "8gb", "lora-8gb")
RESULT_MARK = "BENCH-RESULT "
# lora-8gb against the low-memory recipe: what an 8 GB card runs with the reference script (its LoRA script,
# train_dreambooth_lora.py, is not among the references)
REFERENCE_FOR = {"24gb": "reference:strong", "12gb": "reference:lowmem", "8gb": "reference:lowmem",
                 "lora-8gb": "reference:lowmem"}
FP32_JOB = "train:fp32"
TFLOP_PER_IMAGE = 2.47  # SD v1 UNet forward + backward on one 512 px image (latent 64x64, 77 tokens)


def default_jobs(device: str) -> list[str]:
    sampling = ["sampling:graph"] if device == "cuda" else ["sampling"]
    references = ["reference:default", "reference:strong", "reference:lowmem"]
    return ([f"train:{p}" for p in PRESETS] + [FP32_JOB] + references + ["ceiling"] * (device == "cuda")
            + sampling + ["reference:sampling"])


# ---------------------------------------------------------------------------------------------------
# Our training path
# ---------------------------------------------------------------------------------------------------

def synthetic_data(sd_cfg, size: int):
    """CachedData as cache_data makes it: 5 instance and 20 class latents (plain and mirrored), 2 captions."""
    from sdtrainer.trainer import CachedData

    g = torch.Generator().manual_seed(0)
    shape = (sd_cfg.unet.in_channels, size // sd_cfg.latent_factor, size // sd_cfg.latent_factor)
    return CachedData(instance_latents=torch.randn((5, 2, *shape), generator=g),
                      class_latents=torch.randn((20, 2, *shape), generator=g),
                      instance_rows=torch.zeros(5, dtype=torch.long), class_rows=torch.ones(20, dtype=torch.long),
                      conds=torch.randn((2, 77, sd_cfg.text.width), generator=g))


def bench_config(preset: str, device: str, size: int, total_steps: int, overrides: list[str]):
    from sdtrainer.config import load_config

    values = {"model": "(random weights)", "images": "(synthetic latents)", "token": "sks", "class_word": "person",
              "device": device, "resolution": size, "steps": total_steps, "save_every": 0, "preview_every": 0,
              "preview_prompts": []}
    return load_config(preset, values=values, overrides=overrides)


def cpu_fallbacks(cfg, device: str) -> list[str]:
    """On the CPU only: settings a laptop may lack (bitsandbytes) are swapped, and said so."""
    notes = []
    if device == "cpu" and cfg.optimizer.value == "adamw8bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            notes.append("optimizer=adamw")
    return notes


def build_training_model(sd_cfg, device: str):
    """Random fp32 weights; on a GPU the frozen VAE and text encoder in fp16, as load_base_model does."""
    from ldm.model import StableDiffusion

    from bench.sampling import no_zero_weights_

    torch.manual_seed(0)
    with torch.device(device):
        model = no_zero_weights_(StableDiffusion(sd_cfg))
    if torch.device(device).type == "cuda":
        model.vae.half()
        model.text_encoder.half()
    return model.eval()


def step_timer(warmup: int):
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        """Wall time at the end of every optimizer step (after a device sync), and the first losses."""

        def __init__(self):
            self.marks, self.losses, self.started = [], [], 0.0

        def on_train_start(self, trainer, module):
            synchronize(module.device)
            self.started = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if module.stepped:
                synchronize(module.device)
                self.marks.append(time.perf_counter())
                self.losses.append(float(outputs["loss"]))

        def result(self, steps: int) -> dict:
            return {"it_per_s": steps / (self.marks[-1] - self.marks[warmup - 1]),
                    "first_step_s": self.marks[0] - self.started, "losses": self.losses[:5]}

    return StepTimer()


def time_training(preset: str, overrides: list[str], args) -> dict:
    """A preset's training speed and learning, in this process or (devices above 1) in one process per device."""
    from sdtrainer.config import process_count
    from sdtrainer.ddp import launch
    from sdtrainer.trainer import RunControl

    if preset == FP32_JOB.partition(":")[2]:
        preset, overrides = "24gb", ["precision=32", *overrides]
    cfg = bench_config(preset, args.device, args.size, args.warmup + args.steps, overrides)
    notes = cpu_fallbacks(cfg, args.device)
    if notes:
        cfg = bench_config(preset, args.device, args.size, args.warmup + args.steps, overrides + notes)
    processes = process_count(cfg, torch.cuda.device_count() if args.device == "cuda" else 1)
    if processes == 1:
        result = fit_and_time(cfg, args)
    else:
        result = launch(processes, timed_process, (cfg, args), lambda event: None, RunControl())[0]
    return {**result, "cpu_fallbacks": notes, "devices": processes,
            "images_per_s": result["it_per_s"] * processes * cfg.batch_size * cfg.grad_accum}


def timed_process(channel, cfg, args) -> dict:
    """One process of a job on several devices (sdtrainer.ddp starts it); process 0's numbers are the job's."""
    device = f"cuda:{channel.rank}" if args.device == "cuda" else "cpu"
    if args.device == "cuda":
        torch.cuda.set_device(device)
    return fit_and_time(cfg, args, device, channel.processes)


def fit_and_time(cfg, args, device: str | None = None, processes: int = 1) -> dict:
    """Fit the synthetic data with the trainer's module and callbacks: steps per second, peak memory, learning."""
    import pytorch_lightning as pl

    from sdtrainer.trainer import (Controller, DreamBoothModule, MetricsReporter, PreviewMaker, RunControl, RunPaths,
                                   build_trainer, quiet_lightning)

    device = device or args.device
    model = build_training_model(args.sd_cfg, device)
    data = synthetic_data(args.sd_cfg, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        paths = RunPaths(Path(tmp) / "bench")
        paths.make()
        timer = step_timer(args.warmup)
        callbacks = [MetricsReporter(paths.metrics, lambda e: None, cfg.steps),
                     PreviewMaker(cfg, paths, lambda e: None), Controller(RunControl(), lambda e: None), timer]
        quiet_lightning()
        pl.seed_everything(cfg.seed, verbose=False)
        trainer = build_trainer(cfg, callbacks, processes)
        module = DreamBoothModule(cfg, model, data, processes=processes)
        trainer.precision_plugin.convert_module(module)  # bf16-true: learning is measured from the rounded start
        if args.learning:
            start, error_before = trained_weights(module), heldout_error(model, data)
        reset_peak(torch.device(device))
        fit_started = time.perf_counter()
        trainer.fit(module)
        fit_s = time.perf_counter() - fit_started
        memory = peaks(torch.device(device))
    learnt = {}
    if args.learning:
        learnt = {"share_changed": (trained_weights(module) != start).float().mean().item(),
                  "error_drop": (error_before - heldout_error(model, data)) / error_before}
    return {**timer.result(args.steps), **memory, **learnt, "fit_s": fit_s,
            "precision": cfg.precision.value, "optimizer": cfg.optimizer.value,
            "gradient_checkpointing": cfg.gradient_checkpointing, "cuda_graphs": cfg.cuda_graphs,
            "compile": cfg.compile, "learning_rate": cfg.learning_rate}


def trained_weights(module) -> torch.Tensor:
    """The weights a run trains as one flat tensor on the CPU, as stored (bf16 stays bf16): the UNet's, or with
    method lora the LoRA's factors (its model's UNet stays as loaded)."""
    params = module.lora.parameters() if module.lora is not None else module.sd.unet.parameters()
    return torch.cat([p.detach().flatten().cpu() for p in params])


@torch.no_grad()
def heldout_error(model, data) -> float:
    """sdtrainer.meter's denoising error of the subject latents under their caption (fixed noise no step drew), in
    fp32 (a bf16 UNet is widened for the call and narrowed back, exactly)."""
    from sdtrainer.meter import denoising_error

    dtype = next(model.unet.parameters()).dtype
    model.unet.float()
    error = denoising_error(model, data.instance_latents[:, 0].float().cpu(), data.conds[data.instance_rows].cpu())
    model.unet.to(dtype)
    return error


def time_ceiling(args) -> dict:
    """The UNet alone, bf16 weights, forward + backward captured as CUDA graphs, batch 2, no optimizer."""
    from ldm.cuda_graph import graphed_training_call

    device = torch.device(args.device)
    model = build_training_model(args.sd_cfg, args.device)
    unet = model.unet.to(torch.bfloat16).train().requires_grad_(True)
    latent = args.size // args.sd_cfg.latent_factor
    x = torch.randn((2, args.sd_cfg.unet.in_channels, latent, latent), device=device, dtype=torch.bfloat16)
    t = torch.tensor([100, 700], device=device)
    cond = torch.randn((2, 77, args.sd_cfg.text.width), device=device, dtype=torch.bfloat16)
    call = graphed_training_call(unet, x, t, cond) if device.type == "cuda" else unet
    reset_peak(device)
    marks = []
    for _ in range(args.warmup + args.steps):
        call(x, t, cond).float().square().mean().backward()
        synchronize(device)
        marks.append(time.perf_counter())
    result = {"it_per_s": args.steps / (marks[-1] - marks[args.warmup - 1]), **peaks(device)}
    return {**result, **step_parts_ms(unet, args)}


def step_parts_ms(unet, args) -> dict:
    """What the 24gb preset adds to the ceiling's forward and backward, each timed alone on the UNet's
    parameters in fp32 (its master weights): the fused AdamW step, the gradient clipping (norm and scale),
    and the casts of the weights to bf16 that autocast makes each step. A profile of the step, in parts."""
    device = torch.device(args.device)
    params = [p.detach().float().requires_grad_(True) for p in unet.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.AdamW(params, lr=1e-6, fused=device.type == "cuda" or None)
    parts = {"adamw_fused": lambda: optimizer.step(),
             "clip_grad_norm": lambda: torch.nn.utils.clip_grad_norm_(params, 1.0),
             "bf16_casts": lambda: [p.to(torch.bfloat16) for p in params]}
    times = {}
    for name, part in parts.items():
        for _ in range(3):
            part()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            part()
        synchronize(device)
        times[f"{name}_ms"] = 1000 * (time.perf_counter() - start) / args.steps
    return times


# ---------------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------------

def run_job(job: str, args) -> dict:
    """One measurement, in this process."""
    name, *overrides = job.split("+")
    kind, _, variant = name.partition(":")
    device = torch.device(args.device)
    if kind == "train":
        return time_training(variant, overrides, args)
    if kind == "ceiling":
        return time_ceiling(args)
    if kind == "sampling":
        from bench.sampling import build_model, measure

        model = build_model(args.sd_cfg, args.device)
        reset_peak(device)
        return {**measure(model, args.sample_steps, args.images, args.size, cuda_graph=variant == "graph"),
                **peaks(device)}
    ref_cfg = reference.TINY_DIFFUSERS if args.tiny else reference.SD_V1_DIFFUSERS
    unet, vae, text = reference.build_reference(ref_cfg, args.device)
    if variant in reference.RECIPES:
        return reference.time_reference_training(unet, vae, text, reference.RECIPES[variant], steps=args.steps,
                                                 warmup=args.warmup, size=args.size)
    if variant == "sampling":
        return reference.time_reference_sampling(unet, vae, text, args.sample_steps, args.images, args.size)
    raise ValueError(f"Unknown job {job!r}; see `python bench/train.py --help`.")


def run_isolated(job: str, argv: list[str], timeout: float) -> dict:
    """run_job in a child process; a failure comes back as {"error": ...} and the other jobs go on."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *argv, "--job", job], stdout=subprocess.PIPE, text=True,
                          timeout=timeout, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode or not lines:
        return {"error": f"exit code {proc.returncode}", "output_tail": proc.stdout[-2000:]}
    return {**json.loads(lines[-1][len(RESULT_MARK):]), "job_seconds": time.perf_counter() - started}


def run_safely(job: str, args) -> dict:
    try:
        return run_job(job, args)
    except Exception as e:  # noqa: BLE001 - a failed job is recorded; the others still run
        return {"error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------

def combine(runs: list[dict]) -> dict:
    """One job's processes as one result: the median process (by it/s; of an even number, the slower of the two in
    the middle: a speed claim errs low), with every process's it/s kept, and what the first process learnt (only
    it measures learning: the others start from the same weights and data)."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["it_per_s"])
    if not ok:
        return runs[0]
    learnt = {k: runs[0][k] for k in ("share_changed", "error_drop") if k in runs[0]}
    return {**ok[(len(ok) - 1) // 2], **learnt, "it_per_s_runs": [r["it_per_s"] for r in ok],
            "failed_runs": len(runs) - len(ok)}


def summarize(jobs: dict[str, dict], date: str, device_name: str, size: int) -> dict:
    """Per preset: median it/s and spread, peak (reserved) GiB, TFLOP/s, the like-for-like reference and the
    default one, and what the preset learnt against fp32 weights; the ceiling; sampling."""
    def speedup(ours: float | None, ref: float | None) -> float | None:
        return round(ours / ref, 2) if ours and ref else None

    def tflops(it_per_s: float | None) -> float | None:  # 2 images a step, at 512 px only
        return rounded(it_per_s * 2 * TFLOP_PER_IMAGE, 1) if it_per_s and size == 512 else None

    fp32, default = jobs.get(FP32_JOB, {}), jobs.get("reference:default", {})
    train = {}
    for preset in PRESETS:
        ours, ref = jobs.get(f"train:{preset}", {}), jobs.get(REFERENCE_FOR[preset], {})
        runs = ours.get("it_per_s_runs") or [None]
        train[preset] = {
            "it_per_s": rounded(ours.get("it_per_s")), "it_per_s_spread": [rounded(runs[0]), rounded(runs[-1])],
            "processes": len(ours.get("it_per_s_runs", [])), "peak_vram_gib": rounded(ours.get("peak_reserved_gib")),
            "tflops": tflops(ours.get("it_per_s")), "reference": REFERENCE_FOR[preset],
            "reference_it_per_s": rounded(ref.get("it_per_s")),
            "speedup_vs_reference": speedup(ours.get("it_per_s"), ref.get("it_per_s")),
            "default_reference_it_per_s": rounded(default.get("it_per_s")),
            "speedup_vs_default": speedup(ours.get("it_per_s"), default.get("it_per_s")),
            "learning": learning(ours, fp32)}
    ceiling = jobs.get("ceiling", {})
    ours = jobs.get("sampling:graph") or jobs.get("sampling", {})
    ref = jobs.get("reference:sampling", {})
    sampling = {"it_per_s": rounded(ours.get("it_per_s")), "reference_it_per_s": rounded(ref.get("it_per_s")),
                "speedup_vs_reference": speedup(ours.get("it_per_s"), ref.get("it_per_s")),
                "seconds_per_image": rounded(ours.get("seconds_per_image"), 3)}
    return {"date": date, "device": device_name, "torch": torch.__version__, "train": train,
            "fp32": {"it_per_s": rounded(fp32.get("it_per_s")), "learning": learning(fp32, fp32)},
            "ceiling": {"it_per_s": rounded(ceiling.get("it_per_s")), "tflops": tflops(ceiling.get("it_per_s"))},
            "sampling": sampling}


def learning(ours: dict, fp32: dict) -> dict:
    """Share of UNet weights changed, held-out denoising error drop, and that drop relative to fp32's."""
    drop, fp32_drop = ours.get("error_drop"), fp32.get("error_drop")
    return {"share_changed": rounded(ours.get("share_changed"), 4), "error_drop": rounded(drop, 6),
            "vs_fp32": rounded(drop / fp32_drop, 3) if drop is not None and fp32_drop else None}


def rounded(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def write_results(summary: dict, details: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train-{summary['date']}-{summary['device'].replace(' ', '_')}"
    paths = [out / "latest.json", out / f"{stem}.json", out / f"{stem}-details.json"]
    for path, data in zip(paths, (summary, summary, details)):
        path.write_text(json.dumps(data, indent=1) + "\n")
    return paths


def table(summary: dict) -> str:
    rows = [f"{p:>6}: {r['it_per_s']} it/s {r['it_per_s_spread']} ({r['reference']} {r['reference_it_per_s']}, "
            f"x{r['speedup_vs_reference']}; default x{r['speedup_vs_default']}), peak {r['peak_vram_gib']} GiB, "
            f"{r['tflops']} TFLOP/s, learning {r['learning']}" for p, r in summary["train"].items()]
    rows.append(f"  fp32: {summary['fp32']}; ceiling: {summary['ceiling']}")
    s = summary["sampling"]
    rows.append(f"sample: {s['it_per_s']} it/s (reference {s['reference_it_per_s']}, x{s['speedup_vs_reference']}), "
                f"{s['seconds_per_image']} s/image")
    return "\n".join(rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--tiny", action="store_true", help="the tiny model (64 px) instead of SD v1 (512 px)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--jobs", nargs="*", help="default: every job of the docstring")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default 30; tiny 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 8; tiny 1)")
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=3, help="timed sampling images (after one warm-up)")
    parser.add_argument("--in-process", action="store_true", help="run the jobs in this process (CPU tests)")
    parser.add_argument("--repeat", type=int, default=None, help="processes per job (default 3 on cuda, else 1)")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--merge", help="a details file of an earlier run on the same device: its jobs that this run "
                                        "does not repeat are kept (listed under merged_jobs)")
    parser.add_argument("--no-learning", dest="learning", action="store_false",
                        help="time only (the repeats of a job: learning is measured by its first process)")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # one job, in a child process
    args = parser.parse_args(argv)
    args.steps = args.steps or (3 if args.tiny else 30)
    args.warmup = args.warmup or (1 if args.tiny else 8)
    args.size = 64 if args.tiny else 512
    args.repeat = args.repeat or (3 if args.device == "cuda" and not args.in_process else 1)
    from ldm.model import SD_V1, TINY

    args.sd_cfg = TINY if args.tiny else SD_V1
    return args


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.job:
        print(RESULT_MARK + json.dumps(run_job(args.job, args)), flush=True)
        return {}
    child_argv = ["--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
                  "--sample-steps", str(args.sample_steps), "--images", str(args.images)] + ["--tiny"] * args.tiny
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    earlier = json.loads(Path(args.merge).read_text()) if args.merge else {"jobs": {}}
    jobs = {}
    for job in args.jobs or default_jobs(args.device):
        print(f"[bench] {job} ...", file=sys.stderr, flush=True)
        runs = [run_safely(job, args) if args.in_process else
                run_isolated(job, child_argv + ["--no-learning"] * (i > 0), timeout=480) for i in range(args.repeat)]
        jobs[job] = combine(runs)
        print(f"[bench] {job}: {json.dumps(jobs[job])[:400]}", file=sys.stderr, flush=True)
        kept = {k: v for k, v in {**earlier.get("merged_jobs", {}), **earlier["jobs"]}.items() if k not in jobs}
        summary = summarize({**kept, **jobs}, args.date, device_name, args.size)
        details = {**summary, "command": "python bench/train.py " + " ".join(argv), "model": args.sd_cfg.name,
                   "size": args.size, "timed_steps": args.steps, "warmup_steps": args.warmup,
                   "processes_per_job": args.repeat, "jobs": jobs,
                   "merged_jobs": {k: {"command": earlier.get("command"), **v} for k, v in kept.items()}}
        paths = write_results(summary, details, Path(args.out))  # after every job: a killed run keeps its numbers
    print(f"[bench] wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    print(table(summary))
    return details


if __name__ == "__main__":
    main()
