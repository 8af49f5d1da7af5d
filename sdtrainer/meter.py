"""The likeness and drift meter: three scores for every checkpoint of a run, and the step to pick.

    probes = probes_of(data, subjects)          # from the trainer's cached latents (trainer.CachedData)
    denoising_error(model, latents, token_ids)  # the number behind subject fit, for any images and text
    reference = reference_of(base, probes)      # the base model's answers, once per run
    scores = score(model, probes, reference)    # Scores(subject_fit, class_drift, copying)
    rows = measure_run(Path("outputs/runs/joe"))  # any run's checkpoints, on demand (writes meter.json)
    recommend(rows).why                         # Message: "step 1500: subject fit has levelled off, ..."

    python -m sdtrainer meter outputs/runs/joe [--json]

Every score is a ratio to the base model's answer on the same inputs, with the same noise (seeded), timesteps
and text, so scores compare across the steps of a run and across runs; the base model scores 1, 0, 0.

- **subject fit**: the checkpoint's denoising error (eps-MSE) on the subject's photos under their captions at
  `TIMESTEPS`, divided by the base model's. Lower = learnt. With several subjects, the mean of their ratios.
- **class drift**: how far the checkpoint's noise predictions for the class moved from the base model's,
  ||eps - eps_base||^2 / ||eps_base||^2, over `CLASS_PROMPTS` of each class word: from pure noise at the first
  sampling step (what every `<class>` picture starts from), and on class images under their prompt noised at
  `TIMESTEPS`. The class images are the base model's own samples of those prompts (`CLASS_SAMPLE_STEPS` steps,
  fixed seeds), made once per run, not the run's class images: so the drift of runs with and without prior
  preservation, or with different class image folders, is measured on the same images and compares. Higher =
  drifted.
- **copying**: the subject fit of the photos moved by `SHIFT` latent pixel (8 px in SD v1; re-cropped, as a new
  photo of the same subject would frame it) divided by the subject fit of the photos themselves, minus 1. A model
  that learnt the subject denoises a slightly re-framed photo about as well as the photo (0); one that memorised
  its photos pixel for pixel does much better on the exact photos (> 0). Why not the alternatives: mirrored photos
  are trained on (`flip_p` 0.5 in every preset), so they are not unseen; a held-out photo would take one of the
  5-20 photos away from training. A shift costs nothing and exists for any number of photos. That it tracks copying
  is to be shown in the quality world (`python -m bench.quality`, meter keys of its record).

The recommendation (`recommend`): the latest checkpoint before the model starts copying its photos (its copying score
risen more than `COPYING_RISE` above the run's first checkpoint's), with a one-line reason; see its docstring. Chosen
in the quality world's fifth base (bench/results/NOTES.md, 2026-12-03): there, subject fit keeps improving while the
samples lose the subject's likeness past the best step, because the model denoises its own photos ever better as
it copies them; the rule "subject fit has levelled off" picked the best step in 0 of 6 runs, this one in 4 (and a
step within 0.04 of the best in a fifth). It was read off those runs: runs it was not chosen on have yet to confirm it.
"""
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ldm.schedule import NUM_TIMESTEPS, alphas_cumprod
from ldm.tokenizer import get_tokenizer
from sdtrainer.checkpoint import load_model, read_metadata
from sdtrainer.config import ConfigError, load_config
from sdtrainer.messages import Message, say_in
from sdtrainer.sampling import GenerationParams, sample_latents
from sdtrainer.seeds import seeded_generator

TIMESTEPS = (100, 300, 500, 700)  # where photos and class images are noised
CLASS_PROMPTS = ("{}", "a photo of a {}")  # a class's prompts from noise
PROMPT_SEEDS = 2  # class images (and pure-noise inputs) per class prompt
CLASS_SAMPLE_STEPS = 10  # euler steps of the base model's class images
SHIFT = 1  # latent pixels the re-cropped photos move (right and down)
BATCH = {"cpu": 64, "cuda": 4}  # probes per UNet call: few calls on the CPU; little memory beside training on a GPU
NOISE_SEED = 20_261_202
COPYING_RISE = 0.15  # copying this far above the run's first checkpoint's: the model has started to copy its photos
METER_FILE = "meter.json"
REFERENCE_FILE = "meter-reference.pt"  # the base model's answers, kept so that a resumed run need not load it again


@dataclass
class Probes:
    """What the meter shows every checkpoint: latents [n, C, h, w], their text (embeddings [n, 77, width], or
    token ids [n, 77] that each model encodes with its own text encoder) and whose they are."""

    photos: torch.Tensor
    photo_text: torch.Tensor
    photo_subject: torch.Tensor  # [n] subject index of each photo
    class_prompts: list[str]  # CLASS_PROMPTS of every class word


@dataclass
class Reference:
    """The base model's answers: its photo errors (plain and re-cropped, per probe), its samples of the class
    prompts and its class predictions."""

    photo_errors: torch.Tensor  # [len(TIMESTEPS), n]
    shifted_errors: torch.Tensor
    class_samples: torch.Tensor  # [p * PROMPT_SEEDS, C, h, w]: the base model's pictures of the class prompts
    class_eps: torch.Tensor  # [(len(TIMESTEPS) + 1) * p * PROMPT_SEEDS, C, h, w]


@dataclass
class Scores:
    subject_fit: float
    class_drift: float
    copying: float


@dataclass
class MeterRow:
    """One checkpoint's line of meter.json."""

    step: int
    file: str
    subject_fit: float
    class_drift: float
    copying: float
    seconds: float  # what measuring it took


@dataclass
class Recommendation:
    step: int
    file: str
    why: Message  # one line, English; `why.said("fr")` in French


# ---------------------------------------------------------------------------------------------------
# Probes and scores
# ---------------------------------------------------------------------------------------------------

def probes_of(data, subjects: list[tuple[str, str]]) -> Probes:
    """The probes of a run's cached data (trainer.CachedData: plain and mirrored latents, caption rows; the
    photos of each subject in turn) and of its subjects' (token, class word) pairs."""
    counts = data.instance_counts or (len(data.instance_latents),)
    photo_subject = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    class_words = list(dict.fromkeys(c for _, c in subjects))
    return Probes(data.instance_latents[:, 0].float(), data.conds[data.instance_rows], photo_subject,
                  [p.format(c) for c in class_words for p in CLASS_PROMPTS])


def shifted(latents: torch.Tensor) -> torch.Tensor:
    """The latents moved SHIFT pixels right and down, the edge repeated into the gap: a re-cropped photo."""
    padded = torch.nn.functional.pad(latents, (SHIFT, 0, SHIFT, 0), mode="replicate")
    return padded[..., : latents.shape[-2], : latents.shape[-1]]


def noise_like(latents: torch.Tensor, stream: int) -> torch.Tensor:
    """Fixed noise for each timestep: [len(TIMESTEPS), *latents.shape] (the same for every checkpoint)."""
    return torch.randn((len(TIMESTEPS), *latents.shape), generator=seeded_generator(NOISE_SEED, stream))


@torch.no_grad()
def predict(model, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The UNet's eps for inputs on the CPU, in batches of BATCH, on the model's device and dtype; float32 out."""
    weight = next(model.unet.parameters())
    n, out = BATCH.get(weight.device.type, BATCH["cuda"]), []
    for i in range(0, len(x), n):
        context = text[i:i + n].to(weight.device)
        if not context.is_floating_point():  # token ids: this model's own text encoder reads them
            context = model.text_encoder(context)
        eps = model.unet(x[i:i + n].to(weight.device, weight.dtype), t[i:i + n].to(weight.device),
                         context.to(weight.dtype))
        out.append(eps.float().cpu())
    return torch.cat(out) if out else x.new_zeros((0, *x.shape[1:]))


def noised_eps(model, latents: torch.Tensor, text: torch.Tensor, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, noise) [len(TIMESTEPS), n, C, h, w] of the latents noised at each of TIMESTEPS with fixed noise."""
    acp, noise = alphas_cumprod().float(), noise_like(latents, stream)
    a = acp[list(TIMESTEPS)].view(-1, 1, 1, 1, 1)
    noisy = (a.sqrt() * latents + (1 - a).sqrt() * noise).flatten(0, 1)
    t = torch.tensor(TIMESTEPS).repeat_interleave(len(latents))
    eps = predict(model, noisy, t, text.repeat(len(TIMESTEPS), *[1] * (text.dim() - 1)))
    return eps.view(noise.shape), noise


def errors_by_timestep(model, latents: torch.Tensor, text: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """eps-MSE [len(TIMESTEPS), n] of each latent [n, C, h, w] at each timestep under its text (embeddings or token
    ids, one row per latent), with the meter's fixed noise of `stream`."""
    eps, noise = noised_eps(model, latents, text, stream)
    return (eps - noise).square().mean(dim=(2, 3, 4))


def denoising_error(model, latents: torch.Tensor, text: torch.Tensor) -> float:
    """Mean eps-MSE of the latents under their text at TIMESTEPS with the meter's fixed noise: what subject fit is
    the ratio of, for any set of images."""
    return float(errors_by_timestep(model, latents, text).mean())


def photo_errors(model, probes: Probes) -> tuple[torch.Tensor, torch.Tensor]:
    """eps-MSE [len(TIMESTEPS), n] of each photo at each timestep, plain and re-cropped."""
    return (errors_by_timestep(model, probes.photos, probes.photo_text, 0),
            errors_by_timestep(model, shifted(probes.photos), probes.photo_text, 1))


def class_ids(probes: Probes) -> torch.Tensor:
    """Token ids of every class probe: each class prompt PROMPT_SEEDS times."""
    return get_tokenizer()([p for p in probes.class_prompts for _ in range(PROMPT_SEEDS)])


@torch.no_grad()
def class_samples(base, probes: Probes) -> torch.Tensor:
    """The base model's latents of each class prompt with seeds 0 .. PROMPT_SEEDS-1 (the meter's class images)."""
    side = probes.photos.shape[-1] * base.cfg.latent_factor
    samples = [sample_latents(base, GenerationParams(prompt, sampler="euler", steps=CLASS_SAMPLE_STEPS, seed=0,
                                                     width=side, height=side, batch_size=PROMPT_SEEDS)).float().cpu()
               for prompt in probes.class_prompts]
    return torch.cat(samples)


def class_eps(model, probes: Probes, samples: torch.Tensor) -> torch.Tensor:
    """The model's eps on every class probe: the class samples noised at TIMESTEPS, and pure noise at the first
    sampling step, each under its prompt."""
    ids = class_ids(probes)
    eps, _ = noised_eps(model, samples, ids, 2)
    noise = torch.randn(samples.shape, generator=seeded_generator(NOISE_SEED, 3))
    from_noise = predict(model, noise, torch.full((len(noise),), NUM_TIMESTEPS - 1), ids)
    return torch.cat([eps.flatten(0, 1), from_noise])


def reference_of(base, probes: Probes) -> Reference:
    """The base model's answers to the probes (its class samples drawn first)."""
    plain, moved = photo_errors(base, probes)
    samples = class_samples(base, probes)
    return Reference(plain, moved, samples, class_eps(base, probes, samples))


def fit(errors: torch.Tensor, base_errors: torch.Tensor, subject: torch.Tensor) -> float:
    """Mean over subjects of (their photos' error) / (the base model's)."""
    ratios = [errors[:, subject == s].sum() / base_errors[:, subject == s].sum() for s in subject.unique()]
    return float(torch.stack(ratios).mean())


def score(model, probes: Probes, reference: Reference) -> Scores:
    """The three scores of `model` (see the module docstring)."""
    plain, moved = photo_errors(model, probes)
    subject_fit = fit(plain, reference.photo_errors, probes.photo_subject)
    change = class_eps(model, probes, reference.class_samples) - reference.class_eps
    drift = change.square().sum() / reference.class_eps.square().sum()
    copying = fit(moved, reference.shifted_errors, probes.photo_subject) / subject_fit - 1
    return Scores(subject_fit, float(drift), copying)


# ---------------------------------------------------------------------------------------------------
# The recommendation
# ---------------------------------------------------------------------------------------------------

def recommend(rows: list[MeterRow]) -> Recommendation | None:
    """The step to pick and why (None without checkpoints with finite scores: a run that diverged has none after it).
    - a single checkpoint: that one, "nothing to compare it with: save more often";
    - else the checkpoint before the first whose copying rose more than COPYING_RISE above the first checkpoint's:
      "the last before copying"; when none rose, the last checkpoint: "no copying yet" (train longer if it does not
      look like the subject yet).
    Class drift is shown, not used: the meter's drift reading has not tracked the world's class drift (Spearman 0.12
    on the fourth base's runs; on the fifth's the world's drift stayed at 0-0.04, nothing to track), and a note
    relative to the run's highest drift fired on every last checkpoint of a run whose drift rises."""
    rows = sorted((r for r in rows if all(map(math.isfinite, (r.subject_fit, r.class_drift, r.copying)))),
                  key=lambda r: r.step)
    if not rows:
        return None
    last = rows[-1]
    if len(rows) == 1:
        return Recommendation(last.step, last.file, Message("meter_only_one", step=last.step))
    start = rows[0].copying
    copies = next((i for i, r in enumerate(rows) if r.copying - start > COPYING_RISE), None)  # first that copies
    if copies is None:
        return Recommendation(last.step, last.file, Message("meter_no_copying", step=last.step))
    chosen, copier = rows[copies - 1], rows[copies]
    return Recommendation(chosen.step, chosen.file, Message("meter_before_copying", step=chosen.step,
                                                            next=copier.step, copying=copier.copying))


# ---------------------------------------------------------------------------------------------------
# meter.json, and measuring a run's checkpoints on demand
# ---------------------------------------------------------------------------------------------------

def read_rows(run_dir: Path) -> list[MeterRow]:
    """The run's meter.json rows, by step ([] when it has none)."""
    path = Path(run_dir) / METER_FILE
    if not path.is_file():
        return []
    return sorted((MeterRow(**row) for row in json.loads(path.read_text())["checkpoints"]), key=lambda r: r.step)


def write_rows(run_dir: Path, rows: list[MeterRow]) -> None:
    """meter.json: every checkpoint's scores (one per step, the newest measure wins) and the recommendation."""
    by_step = {r.step: r for r in rows}
    rows = [by_step[s] for s in sorted(by_step)]
    rec = recommend(rows)
    recommended = None if rec is None else {"step": rec.step, "file": rec.file, "why": rec.why,
                                            "why_fr": say_in(rec.why, "fr")}
    path = Path(run_dir) / METER_FILE
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps({"checkpoints": [asdict(r) for r in rows], "recommended": recommended}, indent=1))
    tmp.replace(path)


def recommendation_of(run_dir: Path) -> Recommendation | None:
    """The recommendation for a run's meter.json (None when it has none)."""
    return recommend(read_rows(run_dir))


def checkpoint_step(path: Path, metadata: dict[str, str]) -> int:
    """A model file's training step, from its metadata (every file the trainer writes has it)."""
    if "steps" not in metadata:
        raise ValueError(Message("meter_no_step", path=path))
    return int(metadata["steps"])


def run_files(run_dir: Path) -> list[Path]:
    """The run's model files: checkpoints/*, then <run>-final."""
    run_dir = Path(run_dir)
    steps = [p for p in sorted((run_dir / "checkpoints").glob("*")) if p.suffix in (".safetensors", ".ckpt")]
    return [p for p in steps if not p.name.startswith(".")] + sorted(run_dir.glob(f"{run_dir.name}-final.*"))


def measure_run(run_dir: Path, device: str = "cpu", progress: Callable[[int, int], None] | None = None,
                again: bool = False) -> list[MeterRow]:
    """Scores the model files of a run that meter.json lacks (`again`: all of them) against the run's base model,
    writes meter.json, returns all its rows."""
    from sdtrainer.trainer import run_probes  # the trainer imports this module: import it only when called

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(Message("meter_not_a_run", run_dir=run_dir))
    files = run_files(run_dir)
    if not files:
        raise ConfigError(Message("meter_no_files", run_dir=run_dir, name=run_dir.name))
    known = set() if again else {Path(r.file).name for r in read_rows(run_dir)}
    files = [f for f in files if f.name not in known]
    if not files:
        return read_rows(run_dir)
    cfg = load_config(yaml_path=run_dir / "config.yaml", values={"device": device})
    base, _ = load_model(cfg.model, device=device, dtype=torch.float32)
    probes = run_probes(cfg, base)
    with evaluating(base):
        reference = reference_of(base, probes)
    del base
    rows = []
    for n, path in enumerate(files):
        start = time.perf_counter()
        model, _ = load_model(path, device=device, dtype=torch.float32)
        with evaluating(model):
            scores = score(model, probes, reference)
        rows.append(MeterRow(checkpoint_step(path, read_metadata(path)), str(path), **asdict(scores),
                             seconds=round(time.perf_counter() - start, 3)))
        if progress:
            progress(n + 1, len(files))
    write_rows(run_dir, read_rows(run_dir) + rows)
    return read_rows(run_dir)


@contextlib.contextmanager
def evaluating(model):
    """The model in eval mode for the block, its UNet and text encoder left as they were after it."""
    modes = [(m, m.training) for m in (model.unet, model.text_encoder)]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.train(training)
