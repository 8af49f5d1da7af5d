"""Sampling speed of the full-size SD v1 architecture (random weights) on the GPU.

    python bench/sampling.py [--steps 20] [--images 3] [--out bench/results]

Measures UNet iterations per second at 512x512 with classifier-free guidance (one batched
cond + uncond call per step) and seconds per image including text encoding and VAE decode,
with fp16 weights as the app uses them. Writes bench/results/sampling-<date>-<gpu>.json.
"""
import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ldm.model import SD_V1, StableDiffusion  # noqa: E402
from sdtrainer.sampling import GenerationParams, generate  # noqa: E402


def build_model() -> StableDiffusion:
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = StableDiffusion(SD_V1)
    return model.half().eval().requires_grad_(False)


def time_one(model: StableDiffusion, params: GenerationParams) -> tuple[float, float]:
    """(seconds for the whole image, seconds spent in the sampler loop)."""
    marks: list[float] = []

    def on_step(_):
        torch.cuda.synchronize()
        marks.append(time.perf_counter())

    torch.cuda.synchronize()
    start = time.perf_counter()
    generate(model, params, "bench", callback=on_step)
    torch.cuda.synchronize()
    end = time.perf_counter()
    # marks[i] is taken after step i-1's UNet call finished; steps-1 intervals between the first and last mark
    return end - start, (marks[-1] - marks[0]) / (len(marks) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    model = build_model()
    params = GenerationParams(prompt="a photo of joepenna person", sampler="euler_a", steps=args.steps,
                              cfg_scale=7.0, seed=1, width=512, height=512)
    time_one(model, params)  # warm-up: cuDNN autotuning, allocator
    runs = [time_one(model, params) for _ in range(args.images)]
    per_image = sorted(r[0] for r in runs)[len(runs) // 2]
    per_step = sorted(r[1] for r in runs)[len(runs) // 2]
    result = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "command": "python bench/sampling.py " + " ".join(sys.argv[1:]),
        "sampling": {"size": "512x512", "sampler": "euler_a", "steps": args.steps, "cfg_scale": 7.0,
                     "dtype": "float16", "it_per_s": round(1 / per_step, 2),
                     "seconds_per_image": round(per_image, 3),
                     "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"sampling-{result['date']}-{result['device'].replace(' ', '_')}.json"
    (out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
