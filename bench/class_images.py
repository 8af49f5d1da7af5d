"""Class-image sampling speed and memory by batch size: the full SD v1 architecture (random weights) as a
training run holds it (fp32 UNet under fp16 autocast, fp16 VAE and text encoder), at 512x512, through
`sdtrainer.class_images.generate_class_images`.

    python bench/class_images.py [--batches 1 2 4 8 12] [--images 16] [--steps 30] [--out bench/results]

Writes bench/results/class-images-<date>-<gpu>.json: per batch size, seconds per image and the peak
allocated and reserved memory; `CLASS_IMAGE_BATCH` in sdtrainer/class_images.py is chosen from it.
"""
import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.sampling import no_zero_weights_  # noqa: E402
from ldm.model import SD_V1, StableDiffusion  # noqa: E402
from sdtrainer.class_images import generate_class_images  # noqa: E402

GIB = 1024**3


def training_copy() -> StableDiffusion:
    """As trainer.load_base_model leaves it on a GPU: fp32 UNet, fp16 VAE and text encoder."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = no_zero_weights_(StableDiffusion(SD_V1))
    model.vae.half()
    model.text_encoder.half()
    return model.eval().requires_grad_(False)


def measure(model: StableDiffusion, batch: int, images: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        generate_class_images(model, "person", batch, out, steps=2, batch_size=batch)  # warm-up
        for p in Path(out).glob("*.png"):
            p.unlink()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        generate_class_images(model, "person", images, out, steps=steps, batch_size=batch)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"seconds_per_image": round(seconds / images, 4), "images": images, "steps": steps,
            "peak_alloc_gib": round(torch.cuda.max_memory_allocated() / GIB, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 12])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    model = training_copy()
    weights_gib = torch.cuda.memory_allocated() / GIB
    results = {}
    for batch in args.batches:
        results[str(batch)] = measure(model, batch, max(args.images, batch), args.steps)
        print(batch, results[str(batch)], flush=True)
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    report = {"date": datetime.date.today().isoformat(), "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "model_gib": round(weights_gib, 2), "by_batch": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"class-images-{report['date']}-{gpu}.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
