"""Command line: `python -m sdtrainer COMMAND ...` (run with --help for the list).

Each command is an `add_*` function that declares its arguments and the function that runs it.
Errors a user can fix (ValueError and its subclasses, missing files) print one line and exit 2.
"""
import argparse
import sys
from pathlib import Path

from ldm.samplers import SamplerName


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
    from sdtrainer.models import ModelCache
    from sdtrainer.sampling import GenerationParams, generate, save_images

    if not Path(args.model).is_file():
        raise ValueError(f"model file not found: {args.model}")
    model, info = ModelCache().get(Path(args.model))
    params = GenerationParams(prompt=args.prompt, negative_prompt=args.negative, sampler=args.sampler,
                              steps=args.steps, cfg_scale=args.cfg, seed=args.seed, width=args.width,
                              height=args.height, batch_size=args.batch, eta=args.eta)
    results = generate(model, params, model_name=Path(args.model).stem)
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
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.set_defaults(run=run_generate)


COMMANDS = [add_demo_model, add_generate]


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
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
