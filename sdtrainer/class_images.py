"""Regularization ("class") images sampled from the base model, for prior preservation.

    paths = generate_class_images(model, "person", 200, Path("outputs/class_images/person"), seed=0,
                                  callback=lambda done, total, path: print(done, total),
                                  should_stop=lambda: False, batch_size=class_image_batch("24gb", "cuda"))

Image i is `class-{i:05d}.png`, sampled from the prompt = class word with seed + i. Files already
there are kept, so an interrupted call continues where it stopped and ends with the same files as an
uninterrupted one (with an ancestral sampler such as euler_a an image's pixels also depend on the batch
it was sampled in); each file is written under a hidden temporary name and renamed, so a stop never
leaves half an image. On a GPU the sampling runs under fp16 autocast (the training copy of the model
keeps fp32 weights). Images are sampled `batch_size` at a time (image i always starts from seed + i);
`class_image_batch` gives the most that fits beside a preset's training memory, and `Pace` the time left.
"""
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ldm.model import StableDiffusion
from ldm.samplers import SamplerName
from sdtrainer.sampling import GenerationParams, generate, save_png

CLASS_IMAGE_PATTERN = "class-{index:05d}.png"
# Class images sampled at once (classifier-free guidance doubles the UNet's batch), by training preset: the
# most that fits in the free VRAM the preset asks for, next to the fp32 training copy of the model that
# samples them. Measured at 512 px, 30 steps, on an H200 (bench/class_images.py, bench/results/
# class-images-2026-12-02-NVIDIA_H200.json): seconds per image 1.57 / 0.66 / 0.42 / 0.32 / 0.37 at batch
# 1 / 2 / 4 / 8 / 12, peak reserved 4.5 / 5.4 / 7.1 / 10.6 / 14.2 GiB. So 8 (4.9x faster than one by one)
# where 20 GiB are free, 4 under 11 GiB, 2 under 7.5 GiB.
CLASS_IMAGE_BATCH = {"24gb": 8, "classic": 8, "12gb": 4, "8gb": 2}
CPU_CLASS_IMAGE_BATCH = 4  # the demo model at 64 px: fewer, larger calls on the CPU
SAMPLING_CLASS_IMAGE_BATCH = 4  # outside training the model is loaded in fp16 for sampling alone: fits 8 GB cards


def class_image_batch(preset: str | None, device_type: str) -> int:
    """Class images per sampler call for a run of this preset on this device (1 for an unknown preset; None:
    the sampling model of the Dataset tab and the class-images command, not a training run)."""
    if device_type == "cpu":
        return CPU_CLASS_IMAGE_BATCH
    if preset is None:
        return SAMPLING_CLASS_IMAGE_BATCH
    return CLASS_IMAGE_BATCH.get(preset, 1)


class Pace:
    """The time left from the pace of this call's new images (the images already there took no time now)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock, self.started = clock, clock()
        self.first_done: int | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def eta(self, done: int, total: int) -> float | None:
        """Seconds left after `done` of `total` (None before the first new image); call it at each report."""
        if self.first_done is None:
            self.first_done = done
        made = done - self.first_done
        return self.elapsed() / made * (total - done) if made else None


def class_image_path(out_dir: Path, index: int) -> Path:
    return Path(out_dir) / CLASS_IMAGE_PATTERN.format(index=index)


def consecutive_runs(indices: list[int], size: int) -> list[list[int]]:
    """[0, 1, 2, 5, 6] with size 2 -> [[0, 1], [2], [5, 6]]: batches whose seeds follow each other."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < size:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


@torch.no_grad()
def generate_class_images(model: StableDiffusion, class_word: str, count: int, out_dir: str | Path, seed: int = 0,
                          callback: Callable[[int, int, Path | None], None] | None = None,
                          should_stop: Callable[[], bool] | None = None, *, resolution: int = 512, steps: int = 30,
                          sampler: str = SamplerName.EULER_A.value, cfg_scale: float = 7.0,
                          batch_size: int = 1) -> list[Path]:
    """Make sure class-00000.png .. class-{count-1}.png exist; returns those that do (all unless stopped).

    callback(done, count, None) comes first (done: the images already there), then callback(done, count, path)
    after each new image; should_stop() is asked before each batch.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not class_image_path(out_dir, i).exists()]
    done = count - len(missing)
    device = next(model.unet.parameters()).device
    if callback is not None:
        callback(done, count, None)
    with torch.autocast(device.type, torch.float16, enabled=device.type == "cuda"):
        for run in consecutive_runs(missing, max(1, batch_size)):
            if should_stop is not None and should_stop():
                break
            params = GenerationParams(prompt=class_word, sampler=sampler, steps=steps, cfg_scale=cfg_scale,
                                      seed=seed + run[0], width=resolution, height=resolution, batch_size=len(run))
            for index, result in zip(run, generate(model, params, model_name="sdtrainer class images")):
                path = write_atomic(result.image, result.infotext, class_image_path(out_dir, index))
                done += 1
                if callback is not None:
                    callback(done, count, path)
    return [p for p in (class_image_path(out_dir, i) for i in range(count)) if p.exists()]


def write_atomic(image, infotext: str, path: Path) -> Path:
    """Save under a hidden name (list_images skips it), then rename into place."""
    tmp = path.with_name(f".{path.stem}.tmp.png")
    save_png(image, infotext, tmp)
    os.replace(tmp, path)
    return path
