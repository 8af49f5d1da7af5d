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
PRESET_SETUP = {  # what each preset runs, for the table's first column
    "en": {"24gb": "`24gb`: fp32 weights, bf16 autocast, fused AdamW, UNet as CUDA graphs",
           "12gb": "`12gb`: bf16 weights with stochastic rounding, 8-bit AdamW, UNet as CUDA graphs",
           "8gb": "`8gb`: `12gb` + gradient checkpointing",
           "lora-8gb": "`lora-8gb`: a rank-16 LoRA (fp32, 8-bit AdamW, lr 1e-4) on the frozen bf16 UNet, gradient "
                       "checkpointing, UNet as CUDA graphs"},
    "fr": {"24gb": "`24gb` : poids fp32, autocast bf16, AdamW fusionné, UNet en graphes CUDA",
           "12gb": "`12gb` : poids bf16 à arrondi stochastique, AdamW 8 bits, UNet en graphes CUDA",
           "8gb": "`8gb` : `12gb` + gradient checkpointing",
           "lora-8gb": "`lora-8gb` : un LoRA de rang 16 (fp32, AdamW 8 bits, lr 1e-4) sur le UNet gelé en bf16, "
                       "gradient checkpointing, UNet en graphes CUDA"},
}
REFERENCE_SETUP = {  # bench/reference.py's recipes, as train_dreambooth.py flags
    "en": {"reference:strong": "strong: bf16, TF32, fused AdamW", "reference:lowmem": "low-memory: bf16, TF32, "
           "checkpointing, 8-bit AdamW"},
    "fr": {"reference:strong": "forte : bf16, TF32, AdamW fusionné", "reference:lowmem": "basse mémoire : bf16, TF32, "
           "checkpointing, AdamW 8 bits"},
}
HEADERS = {
    "en": ("| preset (training 512×512, 1 instance + 1 class image per step) | it/s (min–max) | peak VRAM | TFLOP/s | "
           "diffusers-style reference, like for like | its it/s | speedup | speedup vs the script's defaults | "
           "learning vs fp32 weights |",
           "UNet forward + backward alone (bf16, CUDA graph): the ceiling",
           "sampling 512×512, CFG 7, euler_a 20 steps, fp16, UNet as a CUDA graph", "UNet it/s", "s per image",
           "Measured on {device} on {date} (torch {torch}) with `{command}`: each preset the median of {processes} "
           "processes (the number of every job's processes, and the date of jobs kept from an earlier run, are in "
           "`bench/results/`); peak VRAM is PyTorch's maximum reserved memory (add ~0.5 GiB of CUDA context). Learning: "
           "the drop of a held-out denoising error after the same steps from the same weights, as a share of "
           "the fp32 run's; in brackets the share of UNet weights that changed (bf16 weights with stochastic "
           "rounding move by whole bf16 steps, so fewer of them change, by more). `lora-8gb` trains its LoRA's factors "
           "at its own learning rate, not the UNet's weights: its learning figure and the share in brackets (of its "
           "factors) say that it learns, not how it compares with full training (the quality world does that)."),
    "fr": ("| préréglage (entraînement 512×512, 1 image d'instance + 1 de classe par pas) | it/s (min–max) | VRAM max | "
           "TFLOP/s | référence façon diffusers, à réglages comparables | ses it/s | accélération | accélération "
           "face aux réglages par défaut du script | apprentissage face aux poids fp32 |",
           "UNet seul, aller + retour (bf16, graphe CUDA) : le plafond",
           "échantillonnage 512×512, CFG 7, euler_a 20 pas, fp16, UNet en graphe CUDA", "it/s UNet", "s par image",
           "Mesuré sur {device} le {date} (torch {torch}) avec `{command}` : chaque préréglage est la médiane "
           "de {processes} processus (le nombre de processus de chaque mesure, et la date des mesures reprises d'un passage "
           "précédent, sont dans `bench/results/`) ; la VRAM max est le maximum de mémoire réservée par PyTorch (ajouter ~0,5 Gio "
           "de contexte CUDA). Apprentissage : la baisse d'une erreur de débruitage mesurée à part, après les "
           "mêmes pas depuis les mêmes poids, rapportée à celle du calcul en fp32 ; entre crochets la part des "
           "poids du UNet qui ont changé (les poids bf16 à arrondi stochastique bougent par pas bf16 entiers : "
           "moins de poids changent, mais davantage). `lora-8gb` entraîne les facteurs de son LoRA à son propre taux "
           "d'apprentissage, pas les poids du UNet : son chiffre d'apprentissage et la part entre crochets (de ses "
           "facteurs) disent qu'il apprend, pas comment il se compare à l'entraînement complet (le monde de qualité "
           "le mesure)."),
}


GIB = {"en": " GiB", "fr": " Gio"}


def fmt(x, suffix: str = "") -> str:
    return "—" if x is None else f"{x:g}{suffix}"


def learnt(learning: dict) -> str:
    if learning.get("vs_fp32") is None:
        return "—"
    return f"{learning['vs_fp32'] * 100:.1f}% [{learning['share_changed'] * 100:.1f}%]"


def render(results: dict, lang: str) -> str:
    header, ceiling_label, sampling_label, unet_label, image_label, footer = HEADERS[lang]
    lines = [header, "| --- " * 9 + "|"]
    processes = 1
    for preset, r in results["train"].items():
        low, high = r["it_per_s_spread"]
        processes = max(processes, r["processes"])
        lines.append(f"| {PRESET_SETUP[lang][preset]} | {fmt(r['it_per_s'])} ({fmt(low)}–{fmt(high)}) | "
                     f"{fmt(r['peak_vram_gib'], GIB[lang])} | {fmt(r['tflops'])} | "
                     f"{REFERENCE_SETUP[lang][r['reference']]} | {fmt(r['reference_it_per_s'])} | "
                     f"{fmt(r['speedup_vs_reference'], '×')} | {fmt(r['speedup_vs_default'], '×')} | "
                     f"{learnt(r['learning'])} |")
    c = results["ceiling"]
    lines.append(f"| {ceiling_label} | {fmt(c['it_per_s'])} | | {fmt(c['tflops'])} | | | | | |")
    s = results["sampling"]
    lines.append(f"| {sampling_label} ({unet_label}; {fmt(s['seconds_per_image'])} {image_label}) | "
                 f"{fmt(s['it_per_s'])} | | | diffusers UNet fp16 | {fmt(s['reference_it_per_s'])} | "
                 f"{fmt(s['speedup_vs_reference'], '×')} | | |")
    lines += ["", footer.format(command=COMMAND, processes=processes, **results)]
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
