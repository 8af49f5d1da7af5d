"""The meter (sdtrainer.meter) against the world's exact numbers: issue 14's proof, from issue 11's runs.

    rows = with_meter(rows, run_dir)               # each world row gets the meter's scores of its checkpoint
    record["meter"] = meter_summary(record["runs"], record["base"])
    python -m bench.quality.meter bench/results/meter-*.json   # other readings of the same checkpoints, compared

Every run of `python -m bench.quality` goes through the app's trainer, whose meter scores each saved checkpoint
into the run's meter.json; `with_meter` puts those scores beside the world's fidelity and drift of the same
checkpoint. `meter_summary` says how well they track each other (Spearman's rank correlation over every checkpoint
of every run, the base model included as the meter's (1, 0, 0)) and how the recommended step of each run compares
with the world's best trade-off: the step with the most fidelity net of class drift. `readings_table` does the
same for other readings the meter could take (READINGS, from the raw errors FitDiagnostics keeps in each row), so that
a change of the meter's definitions is judged on the records, not on the run it was read off.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from bench.quality.metrics import EVAL
from ldm.tokenizer import get_tokenizer
from sdtrainer.meter import TIMESTEPS, MeterRow, Probes, noised, picture_text, predict, read_rows, recommend, shifted

TARGET_SPEARMAN = 0.8  # issue 14: the scores track the world's fidelity and drift at least this well
TARGET_GAP = 0.05  # and the recommended step's fidelity and drift are within this of the best trade-off's


def with_meter(rows: list[dict], run_dir: Path) -> list[dict]:
    """The world's rows of one run, each with the meter's scores of the same step and whether it is recommended."""
    measured = {r.step: r for r in read_rows(run_dir)}
    rec = recommend(list(measured.values()))
    return [{**row, "meter_subject_fit": measured[row["steps"]].subject_fit,
             "meter_class_drift": measured[row["steps"]].class_drift, "meter_copying": measured[row["steps"]].copying,
             "meter_recommended": rec is not None and rec.step == row["steps"]} if row["steps"] in measured else row
            for row in rows]


class FitDiagnostics:
    """The meter's readings at every timestep, and others it might take, measured beside its scores so that the world
    can say which timesteps and which readings track fidelity and drift. Each of READINGS is an eps-MSE at every one
    of TIMESTEPS: the subject's photos (plain, and re-cropped: `shifted`) under their captions, the bare class word and
    the empty prompt, and the meter's class pictures (the base's samples of the class word, as the run's meter drew
    them: its meter-reference.pt) under that word and the empty prompt; each also as the sampler sees it, guided at
    the world's cfg scale (empty + scale * (text - empty)).

        diag = FitDiagnostics(base, probes, reference.class_samples)
        diag(model)   # {"fit_by_t": [5 ratios to the base at TIMESTEPS], "shifted_fit_by_t": [...],
                      #  "class_caption_fit_by_t": [...], "class_images_fit_by_t": [...], "timesteps": [...],
                      #  "raw": {reading: [5 mean errors]}, "raw_base": {the base's}}
    """

    KEYS = {"fit_by_t": "photo_caption", "shifted_fit_by_t": "shifted_caption",
            "class_caption_fit_by_t": "photo_class", "class_images_fit_by_t": "pictures_class"}
    READINGS = ("photo_caption", "photo_empty", "photo_caption_guided", "photo_class", "photo_class_guided",
                "shifted_caption", "shifted_empty", "shifted_caption_guided", "pictures_class", "pictures_empty",
                "pictures_class_guided")

    def __init__(self, base, probes: Probes, class_samples: torch.Tensor, cfg_scale: float = EVAL.cfg_scale):
        self.probes, self.class_samples, self.cfg_scale = probes, class_samples, cfg_scale
        self.base = self.errors(base)

    def errors(self, model) -> dict[str, torch.Tensor]:
        """READINGS -> mean eps-MSE [len(TIMESTEPS)] over the photos (or class pictures), with the meter's noise
        streams."""
        p, s = self.probes, self.cfg_scale
        photo = guided_errors(model, p.photos, p.photo_text, s, 0)
        photo_class = guided_errors(model, p.photos, p.class_text, s, 0)
        moved = guided_errors(model, shifted(p.photos), p.photo_text, s, 1)
        pictures = guided_errors(model, self.class_samples, picture_text(p, self.class_samples), s, 2)
        found = (photo[0], photo[1], photo[2], photo_class[0], photo_class[2], *moved, *pictures)
        return {name: e.mean(1) for name, e in zip(self.READINGS, found)}

    def __call__(self, model) -> dict:
        now = self.errors(model)
        rounded = lambda e: [round(float(x), 5) for x in e]  # noqa: E731
        return {**{key: [round(float(x), 4) for x in now[name] / self.base[name]] for key, name in self.KEYS.items()},
                "timesteps": list(TIMESTEPS), "raw": {k: rounded(v) for k, v in now.items()},
                "raw_base": {k: rounded(v) for k, v in self.base.items()}}


def guided_errors(model, latents: torch.Tensor, text: torch.Tensor, cfg_scale: float, stream: int):
    """eps-MSE [len(TIMESTEPS), n] of the latents under `text` (token ids, one row per latent), under the empty
    prompt, and guided (empty + cfg_scale * (text - empty)), with the meter's noise of `stream`."""
    noisy, t, noise = noised(latents, stream)
    cond = predict(model, noisy, t, text.repeat(len(TIMESTEPS), 1)).view(noise.shape)
    empty = predict(model, noisy, t, get_tokenizer()([""]).expand(len(noisy), -1)).view(noise.shape)
    guided = empty + cfg_scale * (cond - empty)
    return tuple((e - noise).square().mean(dim=(2, 3, 4)) for e in (cond, empty, guided))


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson's on the ranks); None with fewer than 3 points or a constant side."""
    if len(a) < 3:
        return None
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va, vb = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va and vb else None


def scored(row: dict) -> bool:
    """Whether the meter's three scores of a world row are numbers (a diverged checkpoint's are NaN, or null once
    written as JSON)."""
    return all(isinstance(row[k], float) and math.isfinite(row[k])
               for k in ("meter_subject_fit", "meter_class_drift", "meter_copying"))


def recommended_against_best(rows: list[dict]) -> dict | None:
    """One run: the step sdtrainer.meter.recommend picks among the checkpoints the world scored (from the meter's
    scores in the rows, so that a record measured under an earlier rule is judged by today's), its fidelity and
    drift, and those of the world's best trade-off. None when no checkpoint has finite scores."""
    pick = recommend([MeterRow(r["steps"], "", r["meter_subject_fit"], r["meter_class_drift"], r["meter_copying"], 0.0)
                      for r in rows if scored(r)])
    if pick is None:
        return None
    best = max(rows, key=lambda r: r["fidelity"] - r["class_drift"])
    rec = next(r for r in rows if r["steps"] == pick.step)
    return {"name": rec["name"], "recommended_step": rec["steps"], "fidelity": rec["fidelity"],
            "class_drift": rec["class_drift"], "best_step": best["steps"], "best_fidelity": best["fidelity"],
            "best_class_drift": best["class_drift"],
            "within_target": best["fidelity"] - rec["fidelity"] <= TARGET_GAP
            and rec["class_drift"] - best["class_drift"] <= TARGET_GAP}


def meter_summary(runs: list[dict], base: dict) -> dict:
    """Spearman of -subject fit with fidelity and of the meter's class drift with the world's, and each run's
    recommended step against its best trade-off."""
    rows = [r for r in runs if "meter_subject_fit" in r]
    points = [(1.0, 0.0, base["fidelity"], base["class_drift"])] if "fidelity" in base else []
    points += [(r["meter_subject_fit"], r["meter_class_drift"], r["fidelity"], r["class_drift"]) for r in rows
               if scored(r)]
    fit, drift, fidelity, world_drift = (list(column) for column in zip(*points)) if points else ([], [], [], [])
    names = list(dict.fromkeys(r["name"] for r in rows))
    picks = [p for name in names if (p := recommended_against_best([r for r in rows if r["name"] == name]))]
    return {"points": len(points), "spearman_fit_fidelity": spearman([-f for f in fit], fidelity),
            "spearman_drift_drift": spearman(drift, world_drift), "target_spearman": TARGET_SPEARMAN,
            "target_gap": TARGET_GAP, "recommended": picks}


# Readings the meter could take of a checkpoint, from FitDiagnostics' raw mean errors (`raw`: the checkpoint's,
# `raw_base`: the base's; arrays over TIMESTEPS), each in the direction of the world's number it is compared with.
_AT = {"500-900": [2, 3, 4], "900": [4], "all": [0, 1, 2, 3, 4]}


def _ratio(r, b, name, at):
    return float(np.mean(r[name][_AT[at]] / b[name][_AT[at]]))


def _gain(r, at):
    """The share of the photos' error under the empty prompt that their caption takes away."""
    return float(np.mean(((r["photo_empty"] - r["photo_caption"]) / r["photo_empty"])[_AT[at]]))


def _drift(r, b, at, guided=""):
    return 1 - float(np.mean(((r[f"photo_class{guided}"] / b[f"photo_class{guided}"])
                              / (r[f"pictures_class{guided}"] / b[f"pictures_class{guided}"]))[_AT[at]]))


FIDELITY_READINGS = {  # higher = more like the subject
    "-subject fit 500-900 (the meter)": lambda r, b: -_ratio(r, b, "photo_caption", "500-900"),
    "-subject fit, all timesteps": lambda r, b: -_ratio(r, b, "photo_caption", "all"),
    "-subject fit at 900": lambda r, b: -_ratio(r, b, "photo_caption", "900"),
    "-re-cropped fit 500-900": lambda r, b: -_ratio(r, b, "shifted_caption", "500-900"),
    "-guided fit 500-900": lambda r, b: -_ratio(r, b, "photo_caption_guided", "500-900"),
    "caption's gain over the empty prompt, all": lambda r, b: _gain(r, "all"),
    "caption's gain over the empty prompt, 900": lambda r, b: _gain(r, "900"),
}
DRIFT_READINGS = {  # higher = more drifted
    "class drift 500-900 (the meter)": lambda r, b: _drift(r, b, "500-900"),
    "class drift at 900": lambda r, b: _drift(r, b, "900"),
    "class drift, all timesteps": lambda r, b: _drift(r, b, "all"),
    "class drift, guided, 500-900": lambda r, b: _drift(r, b, "500-900", "_guided"),
    "1 - class word's fit on the photos 500-900": lambda r, b: 1 - _ratio(r, b, "photo_class", "500-900"),
}


def readings_table(runs: list[dict]) -> dict[str, dict[str, float | None]]:
    """For each reading of FIDELITY_READINGS (against the world's fidelity) and DRIFT_READINGS (against its class
    drift): Spearman over every checkpoint whose row has raw diagnostics ("pooled") and its mean within runs ("within",
    runs of 3 checkpoints or more with a defined correlation; None without any)."""
    rows = [r for r in runs if "raw" in r.get("meter_diagnostics", {})]
    arrays = [({k: np.array(v) for k, v in r["meter_diagnostics"]["raw"].items()},
               {k: np.array(v) for k, v in r["meter_diagnostics"]["raw_base"].items()}) for r in rows]
    table = {}
    for world_key, readings in (("fidelity", FIDELITY_READINGS), ("class_drift", DRIFT_READINGS)):
        truth = [r[world_key] for r in rows]
        for name, reading in readings.items():
            values = [reading(r, b) for r, b in arrays]
            within = [spearman([v for v, r in zip(values, rows) if r["name"] == run],
                               [t for t, r in zip(truth, rows) if r["name"] == run])
                      for run in dict.fromkeys(r["name"] for r in rows)]
            within = [w for w in within if w is not None]
            table[name] = {"against": world_key, "points": len(rows), "pooled": spearman(values, truth),
                           "within": sum(within) / len(within) if within else None}
    return table


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Spearman of the meter's possible readings with the world's fidelity and "
                                            "drift, per record (bench.quality records whose rows have raw diagnostics)")
    p.add_argument("records", nargs="+")
    args = p.parse_args(argv)
    tables = {Path(path).stem.split("-20")[0]: readings_table(json.loads(Path(path).read_text())["runs"])
              for path in args.records}
    number = lambda x: "   -" if x is None else f"{x:+.2f}"  # noqa: E731
    print(f"{'reading':44s}" + "".join(f" | {name[:28]:28s}" for name in tables))
    print(f"{'':44s}" + " | pooled / within runs       " * len(tables))
    for reading in (*FIDELITY_READINGS, *DRIFT_READINGS):
        print(f"{reading:44s}" + "".join(f" | {number(t[reading]['pooled'])} / {number(t[reading]['within'])}"
                                         f" ({t[reading]['points']:3d})        " for t in tables.values()))


if __name__ == "__main__":
    main()
