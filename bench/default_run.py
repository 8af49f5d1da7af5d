"""The wall time of a whole default run (issue 10): what a user waits for, from the click to the last file,
against the reference script's flow.

    python bench/default_run.py                       # GPU: SD v1 with random weights, the 24gb preset as it is
    python bench/default_run.py --preset 8gb
    python bench/default_run.py --tiny --device cpu --set steps=4 class_images=2 save_every=2 preview_every=2

1. a base checkpoint of random weights (fp16) and 5 photos of a synthetic subject are written to a temp folder;
2. `run_training` (what the app and `sdtrainer train` run) trains with the preset's own settings (on the GPU:
   200 class images made by the base model, caching, CUDA-graph capture, 2000 steps, a model file every 500
   and previews every 250), and its events give each phase's wall time;
3. the reference script's flow (diffusers' train_dreambooth.py: class images from StableDiffusionPipeline at
   its 50 default steps, then its training loop with VAE and text encoder every step) is timed in parts, in
   this process: the seconds of one class image and the steps per second of bench/reference.py's "strong"
   recipe, multiplied by the same counts. Its model loading and saves are not counted: a lower bound.

Writes <out>/default-run-<date>-<device>.json.
"""
import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import reference  # noqa: E402
from bench.sampling import build_model  # noqa: E402
from ldm.model import SD_V1, TINY  # noqa: E402
from sdtrainer.checkpoint import save_checkpoint  # noqa: E402
from sdtrainer.config import load_config  # noqa: E402
from sdtrainer.trainer import EventKind, RunControl, run_training  # noqa: E402

REFERENCE_SAMPLE_STEPS = 50  # StableDiffusionPipeline's default, which train_dreambooth.py keeps for class images


def write_inputs(folder: Path, sd_cfg, size: int, device: str) -> tuple[Path, Path]:
    """A random-weight base checkpoint and 5 photos (stripes of one colour pair at varied places and angles)."""
    base = save_checkpoint(build_model(sd_cfg, device), folder / "base.safetensors", dtype=torch.float16)
    photos = folder / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    for i in range(5):
        angle, shift = rng.uniform(0, np.pi), rng.uniform(0, size)
        stripes = np.sin((x * np.cos(angle) + y * np.sin(angle) + shift) / size * 12 * np.pi) > 0
        pixels = np.where(stripes[..., None], (200, 60, 40), (30, 90, 200)).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"photo{i}.png")
    return base, photos


class PhaseClock:
    """The time of each event of a run, and from them the phases a user sees."""

    def __init__(self):
        self.start, self.marks, self.counts = time.perf_counter(), {}, {"checkpoint": 0, "preview": 0}
        self.meter_s = None  # what the meter says it spent scoring the model files (the base's answers included)

    def __call__(self, event) -> None:
        now = time.perf_counter() - self.start
        kind = event.kind
        logged = getattr(event.data.get("message"), "key", None) if kind is EventKind.LOG else None
        if kind is EventKind.CLASS_IMAGES:
            self.mark("class_images_start", now)
            if event.data.get("done") == event.data.get("total"):
                self.mark("class_images_end", now)
        elif logged == "train_cached":
            self.mark("cached", now)
        elif logged == "meter_cost":
            self.meter_s = event.data["message"].fields["seconds"]
        elif kind is EventKind.PROGRESS and event.step >= 1:
            self.mark("first_step", now)
        elif kind in (EventKind.CHECKPOINT, EventKind.PREVIEW):
            self.counts[kind.value] += 1

    def mark(self, name: str, now: float) -> None:
        """The first time of `name`, printed as it comes (a run cut off by a time limit still says how far it got)."""
        if name not in self.marks:
            self.marks[name] = now
            print(f"[default run] {name} at {now:.1f} s", flush=True)

    def phases(self) -> dict:
        """Seconds of each phase; called when run_training has returned (its last file written)."""
        m = {**self.marks, "finished": time.perf_counter() - self.start}
        before_data = m.get("class_images_start", m["cached"])
        after_classes = m.get("class_images_end", before_data)
        return {"load_and_checks_s": before_data, "class_images_s": after_classes - before_data,
                "caching_s": m["cached"] - after_classes, "first_step_s": m["first_step"] - m["cached"],
                "steps_saves_previews_s": m["finished"] - m["first_step"], "total_s": m["finished"],
                "model_and_state_files": self.counts["checkpoint"], "previews": self.counts["preview"],
                "meter_s": self.meter_s, "meter_share": None if self.meter_s is None else self.meter_s / m["finished"]}


def our_run(args, folder: Path) -> tuple[dict, dict]:
    """The preset's whole run through run_training: (its phases, the settings that shape them)."""
    base, photos = write_inputs(folder, args.sd_cfg, args.size, args.device)
    values = {"model": str(base), "images": str(photos), "token": "sks", "class_word": "person",
              "device": args.device, "resolution": args.size}
    cfg = load_config(args.preset, values=values, overrides=args.set)
    clock = PhaseClock()
    result = run_training(cfg, folder / "run", clock, RunControl())
    if result.step != cfg.steps:
        raise RuntimeError(f"The run ended at step {result.step} of {cfg.steps}")
    settings = {k: getattr(cfg, k) for k in ("steps", "class_images", "class_image_steps", "save_every",
                                            "preview_every", "preview_steps", "cuda_graphs", "resolution")
                if hasattr(cfg, k)}
    return clock.phases(), {k: getattr(v, "value", v) for k, v in settings.items()}


def reference_flow(args, steps: int, class_images: int) -> dict:
    """train_dreambooth.py's flow, timed in parts: one class image at 50 steps, and steps per second of its loop."""
    cfg = reference.TINY_DIFFUSERS if args.tiny else reference.SD_V1_DIFFUSERS
    unet, vae, text = reference.build_reference(cfg, args.device)
    sampling = reference.time_reference_sampling(unet, vae, text, REFERENCE_SAMPLE_STEPS, images=2, size=args.size)
    unet, vae, text = reference.build_reference(cfg, args.device)
    training = reference.time_reference_training(unet, vae, text, reference.RECIPES["strong"], steps=args.ref_steps,
                                                 warmup=3, size=args.size)
    class_s, train_s = sampling["seconds_per_image"] * class_images, steps / training["it_per_s"]
    return {"seconds_per_class_image": sampling["seconds_per_image"], "it_per_s": training["it_per_s"],
            "class_images_s": class_s, "steps_s": train_s, "total_s": class_s + train_s,
            "note": "lower bound: parts timed and multiplied; model loading and saves not counted"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--preset", default="24gb")
    p.add_argument("--tiny", action="store_true", help="the tiny model at 64 px instead of SD v1 at 512 px")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="settings over the preset's")
    p.add_argument("--ref-steps", type=int, default=20, help="timed steps of the reference loop")
    p.add_argument("--no-reference", dest="reference", action="store_false")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args(argv)
    args.sd_cfg, args.size = (TINY, 64) if args.tiny else (SD_V1, 512)
    return args


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        phases, settings = our_run(args, Path(tmp))
    record = {"date": args.date, "device": device_name, "torch": torch.__version__, "preset": args.preset,
              "command": "python bench/default_run.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "model": args.sd_cfg.name, "settings": settings, "ours": phases}
    path = Path(args.out) / f"default-run-{args.date}-{device_name.replace(' ', '_')}.json"
    write(record, path)  # before the reference's part: a call cut off there keeps our run
    if args.reference:
        record["reference"] = reference_flow(args, settings["steps"], settings["class_images"])
        record["speedup_total"] = round(record["reference"]["total_s"] / phases["total_s"], 2)
        write(record, path)
    print(json.dumps(record, indent=1))
    return record


def write(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
