"""Which learning rate in the world moves its weights as a preset's rate moves SD v1's: the world's `LR_SCALE`.

    python -m bench.quality.calibrate                                  # the world's UNet at init against SD v1's
    python -m bench.quality.calibrate --base outputs/quality/world-base.safetensors   # and a pretrained world base

Adam changes each weight by about the learning rate per step, whatever the weight's size, so a tensor changes by
lr / RMS(tensor) of itself per step. The world's UNet is narrower than SD v1's: its weights start larger (PyTorch's
default init is ~1/sqrt(fan in)), so the same rate moves them by a smaller fraction. The rate that moves them by the
same fraction is the preset's times RMS(world) / RMS(SD v1), taken here over the UNet weights (matrices and
convolutions) the two share by name: the median and quartiles of that ratio. SD v1 is built at its init (its trained
weights are not on these machines), on the CPU, which takes ~4 GB of memory and ~15 s.
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from bench.quality.base import WORLD_SD
from ldm.model import SD_V1, SDConfig
from ldm.unet import UNetModel
from sdtrainer.checkpoint import load_model


def weight_rms(unet: torch.nn.Module) -> dict[str, float]:
    """RMS of each weight matrix and convolution kernel of a UNet, by name (biases and norms left out)."""
    return {name: float(p.detach().float().pow(2).mean().sqrt()) for name, p in unet.named_parameters()
            if p.dim() >= 2}


def init_rms(config: SDConfig, seed: int = 0) -> dict[str, float]:
    """weight_rms of config's UNet as built, at its init (seeded; the caller's random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return weight_rms(UNetModel(config.unet))


def rms_ratios(small: dict[str, float], large: dict[str, float]) -> np.ndarray:
    """RMS(small) / RMS(large) of every weight both have by name (and nonzero in `large`)."""
    return np.array([small[k] / large[k] for k in small.keys() & large.keys() if large[k] > 0])


def summary(ratios: np.ndarray) -> dict:
    q25, median, q75 = np.quantile(ratios, [0.25, 0.5, 0.75])
    return {"tensors": len(ratios), "median": round(float(median), 3), "q25": round(float(q25), 3),
            "q75": round(float(q75), 3)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", help="a pretrained world base file: its UNet against SD v1's at init too")
    args = p.parse_args(argv)
    sd = init_rms(SD_V1)
    result = {"world_init": summary(rms_ratios(init_rms(WORLD_SD), sd))}
    if args.base:
        unet = load_model(Path(args.base), device="cpu", dtype=torch.float32)[0].unet
        result["world_base"] = summary(rms_ratios(weight_rms(unet), sd))
    for name, s in result.items():
        print(f"RMS({name}) / RMS(SD v1 at init), over {s['tensors']} UNet weights: median {s['median']} "
              f"(quartiles {s['q25']}-{s['q75']})")
    return result


if __name__ == "__main__":
    main()
