"""Sampling speed of the full-size SD v1 architecture (random weights) on the GPU.

    python bench/sampling.py [--steps 20] [--images 3] [--cuda-graph] [--out bench/results]

Measures UNet iterations per second at 512x512 with classifier-free guidance (one batched
cond + uncond call per step) and seconds per image including text encoding and VAE decode,
with fp16 weights as the app uses them. `--cuda-graph` replays the UNet from a CUDA graph
(ldm/cuda_graph.py). Writes bench/results/sampling-<date>-<gpu>.json. bench/train.py reuses
`build_model` and `measure` for the sampling part of the full benchmark.
"""
import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.reference import synchronize  # noqa: E402
from ldm.cuda_graph import CUDAGraphUNet  # noqa: E402
from ldm.model import SD_V1, SDConfig, StableDiffusion  # noqa: E402
from sdtrainer.sampling import GenerationParams, generate  # noqa: E402


def no_zero_weights_(model: torch.nn.Module) -> torch.nn.Module:
    """Small random values in the layers that CompVis' init zeroes: a bench must not time multiplications
    by zeros, which can run faster than real weights do."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 1e-3)
    return model


def build_model(cfg: SDConfig = SD_V1, device: str = "cuda") -> StableDiffusion:
    """Random weights; fp16 on a GPU as the app runs them, fp32 on the CPU."""
    torch.manual_seed(0)
    with torch.device(device):
        model = no_zero_weights_(StableDiffusion(cfg))
    if device != "cpu":
        model.half()
    return model.eval().requires_grad_(False)


def time_one(model: StableDiffusion, params: GenerationParams, unet=None) -> tuple[float, float]:
    """(seconds for the whole image, seconds per sampler step)."""
    device = next(model.parameters()).device
    marks: list[float] = []

    def on_step(_):
        synchronize(device)
        marks.append(time.perf_counter())

    synchronize(device)
    start = time.perf_counter()
    generate(model, params, "bench", callback=on_step, unet=unet)
    synchronize(device)
    end = time.perf_counter()
    # marks[i] is taken after step i-1's UNet call finished; steps-1 intervals between the first and last mark
    return end - start, (marks[-1] - marks[0]) / (len(marks) - 1)


def measure(model: StableDiffusion, steps: int, images: int, size: int = 512, cuda_graph: bool = False) -> dict:
    """UNet it/s with CFG and seconds per image, medians over `images` after one warm-up image."""
    params = GenerationParams(prompt="a photo of joepenna person", sampler="euler_a", steps=steps,
                              cfg_scale=7.0, seed=1, width=size, height=size)
    unet = CUDAGraphUNet(model.unet) if cuda_graph else None
    time_one(model, params, unet)  # warm-up: cuDNN autotuning, allocator, graph capture
    runs = [time_one(model, params, unet) for _ in range(images)]
    per_image = sorted(r[0] for r in runs)[len(runs) // 2]
    per_step = sorted(r[1] for r in runs)[len(runs) // 2]
    return {"size": f"{size}x{size}", "sampler": "euler_a", "steps": steps, "cfg_scale": 7.0,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), "cuda_graph": cuda_graph,
            "it_per_s": round(1 / per_step, 2), "seconds_per_image": round(per_image, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--cuda-graph", action="store_true", help="replay the UNet from a CUDA graph")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    model = build_model()
    sampling = measure(model, args.steps, args.images, cuda_graph=args.cuda_graph)
    result = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "command": "python bench/sampling.py " + " ".join(sys.argv[1:]),
        "sampling": {**sampling, "peak_vram_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"sampling-{result['date']}-{result['device'].replace(' ', '_')}.json"
    (out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
