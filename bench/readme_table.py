"""Write bench/results/latest.json into the README's performance tables (English and French).

    python bench/readme_table.py [--results bench/results/latest.json] [--readme README.md] [--check]

Each table sits between `<!-- bench:train:en -->` / `<!-- bench:train:fr -->` and `<!-- /bench -->`;
everything between the markers is replaced. `--check` changes nothing and exits 1 if the README is stale.
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python bench/train.py"
PRESET_SETUP = {  # what each preset and its reference run, for the table's first column
    "en": {"24gb": ("`24gb`: bf16 autocast, fused AdamW, UNet as CUDA graphs", "fp32, AdamW"),
           "12gb": ("`12gb`: bf16 autocast, gradient checkpointing, 8-bit AdamW", "fp32, AdamW"),
           "8gb": ("`8gb`: bf16 weights, gradient checkpointing, 8-bit AdamW, UNet as CUDA graphs",
                   "bf16 autocast, checkpointing, 8-bit AdamW")},
    "fr": {"24gb": ("`24gb` : autocast bf16, AdamW fusionné, UNet en graphes CUDA", "fp32, AdamW"),
           "12gb": ("`12gb` : autocast bf16, gradient checkpointing, AdamW 8 bits", "fp32, AdamW"),
           "8gb": ("`8gb` : poids bf16, gradient checkpointing, AdamW 8 bits, UNet en graphes CUDA",
                   "autocast bf16, checkpointing, AdamW 8 bits")},
}
HEADERS = {
    "en": ("| preset (training 512×512, 1 instance + 1 class image per step) | it/s | peak VRAM | diffusers-style "
           "reference | it/s | speedup |", "sampling 512×512, CFG 7, euler_a 20 steps, fp16, UNet as a CUDA graph", "UNet it/s", "s per image",
           "Measured on {device} on {date} (torch {torch}) with `{command}`; peak VRAM is PyTorch's maximum reserved "
           "memory (add ~0.5 GiB of CUDA context)."),
    "fr": ("| préréglage (entraînement 512×512, 1 image d'instance + 1 de classe par pas) | it/s | VRAM max | "
           "référence façon diffusers | it/s | accélération |", "échantillonnage 512×512, CFG 7, euler_a 20 pas, fp16, UNet en graphe CUDA",
           "it/s UNet", "s par image",
           "Mesuré sur {device} le {date} (torch {torch}) avec `{command}` ; la VRAM max est le maximum de mémoire "
           "réservée par PyTorch (ajouter ~0,5 Gio de contexte CUDA)."),
}


GIB = {"en": " GiB", "fr": " Gio"}


def fmt(x, suffix: str = "") -> str:
    return "—" if x is None else f"{x:g}{suffix}"


def render(results: dict, lang: str) -> str:
    header, sampling_label, unet_label, image_label, footer = HEADERS[lang]
    lines = [header, "| --- | --- | --- | --- | --- | --- |"]
    for preset, r in results["train"].items():
        ours, ref = PRESET_SETUP[lang][preset]
        lines.append(f"| {ours} | {fmt(r['it_per_s'])} | {fmt(r['peak_vram_gib'], GIB[lang])} | {ref} | "
                     f"{fmt(r['reference_it_per_s'])} | {fmt(r['speedup_vs_reference'], '×')} |")
    s = results["sampling"]
    lines.append(f"| {sampling_label} ({unet_label}; {fmt(s['seconds_per_image'])} {image_label}) | "
                 f"{fmt(s['it_per_s'])} | | diffusers UNet fp16 | {fmt(s['reference_it_per_s'])} | "
                 f"{fmt(s['speedup_vs_reference'], '×')} |")
    lines += ["", footer.format(command=COMMAND, **results)]
    return "\n".join(lines)


def update(readme: str, results: dict) -> str:
    for lang in HEADERS:
        pattern = re.compile(rf"(<!-- bench:train:{lang} -->\n).*?(<!-- /bench -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README has no `<!-- bench:train:{lang} -->` ... `<!-- /bench -->` block; add one.")
        readme = pattern.sub(lambda m: m.group(1) + render(results, lang) + "\n" + m.group(2), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is not up to date")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    old = path.read_text(encoding="utf-8")
    new = update(old, json.loads(Path(args.results).read_text(encoding="utf-8")))
    if args.check:
        return int(new != old)
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
