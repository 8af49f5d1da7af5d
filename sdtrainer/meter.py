"""The likeness and drift meter: three scores for every checkpoint of a run, and the step to pick.

    probes = probes_of(data, subjects)          # from the trainer's cached latents (trainer.CachedData)
    denoising_error(model, latents, token_ids)  # mean eps-MSE at TIMESTEPS, for any images and text
    reference = reference_of(base, probes)      # the base model's answers, once per run
    scores = score(model, probes, reference)    # Scores(subject_fit, class_drift, copying)
    rows = measure_run(Path("outputs/runs/joe"))  # any run's checkpoints, on demand (writes meter.json)
    recommend(rows).why                         # Message: "step 1500: the best subject fit of the run ..."

    python -m sdtrainer meter outputs/runs/joe [--json]

Every score is a ratio to the base model's answer on the same inputs, with the same noise (seeded), timesteps
and text, so scores compare across the steps of a run and across runs; the base model scores 1, 0, 0.

- **subject fit**: the checkpoint's denoising error (eps-MSE) on the subject's photos under their captions, divided
  by the base model's, at each of `IDENTITY_TIMESTEPS` (the noisy half of sampling, where a picture's subject is
  decided), averaged over them. Lower = learnt. With several subjects, the mean of their ratios.
- **class drift**: how much more the bare class word (`person` instead of `joepenna person`) now favours the
  subject's photos over other members of the class than in the base model: 1 minus the ratio of two ratios at
  `IDENTITY_TIMESTEPS`, the photos' error under the class word to the base model's, over the same for the base
  model's own pictures of the class word (`CLASS_SAMPLES`, fixed seeds, made once per run as the run's class images
  are made, through pixels: the same pictures for runs with and without prior preservation). 0 = as the base;
  above 0 the class word has taken on the subject ("every person looks like me"); below 0 it has moved away from it.
  A model that got better or worse at every picture (training the class on its class images; the first steps'
  damage) moves both errors alike, which the ratio of ratios cancels. The photos are noised with the same noise as
  for subject fit.
- **copying**: the subject fit of the photos moved by `SHIFT` latent pixel (8 px in SD v1; re-cropped, as a new
  photo of the same subject would frame it) divided by the subject fit of the photos themselves, minus 1, over all
  `TIMESTEPS` (a memorised photo shows at low noise too). A model that learnt the subject denoises a slightly
  re-framed photo about as well as the photo (0); one that memorised its photos pixel for pixel does much better on
  the exact photos (> 0). Why not the alternatives: mirrored photos are trained on (`flip_p` 0.5 in every preset),
  so they are not unseen; a held-out photo would take one of the 5-20 photos away from training. A shift costs
  nothing and exists for any number of photos.

Why these readings (bench/results/NOTES.md, 2026-12-03; the world's records bench/results/meter-*.json, three
subjects): the meter's first drift, any change of the class's predictions, read the first steps' damage to every
picture as drift, in whichever direction (Spearman with the world's class drift -0.47 on subject 1, -0.33 on the
star); this one reads +0.41, +0.73 and +0.55 on the three subjects, and subject fit -0.00, +0.84 and +0.84 with their
likeness. Subject 1's full-model runs are what no reading follows: their likeness changes from one checkpoint to the
next 10 steps later as much as across the run (neighbour correlation -0.04). Other readings of the same checkpoints
(all timesteps, timestep 900, re-cropped photos, guided, the caption's gain over the empty prompt; compared by
`python -m bench.quality.meter`) do no better on all three subjects.

The recommendation (`recommend`): the checkpoint with the lowest subject fit, with a one-line reason; see its
docstring for how it was chosen and what it is worth.
"""
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ldm.schedule import alphas_cumprod
from ldm.tokenizer import get_tokenizer
from sdtrainer.checkpoint import load_model, read_metadata
from sdtrainer.config import ConfigError, Method, load_config
from sdtrainer.lora import read_lora, with_lora
from sdtrainer.messages import Message, say_in
from sdtrainer.sampling import GenerationParams, sample_latents
from sdtrainer.seeds import seeded_generator

TIMESTEPS = (100, 300, 500, 700, 900)  # where the photos are noised
IDENTITY_TIMESTEPS = (500, 700, 900)  # those where subject fit and class drift are read
CLASS_SAMPLES = 4  # the base model's pictures of each class word
CLASS_SAMPLE_STEPS = 10  # euler steps of each
SHIFT = 1  # latent pixels the re-cropped photos move (right and down)
BATCH = {"cpu": 64, "cuda": 4}  # probes per UNet call: few calls on the CPU; little memory beside training on a GPU
NOISE_SEED = 20_261_202
METER_FILE = "meter.json"
REFERENCE_FILE = "meter-reference.pt"  # the base model's answers, kept so that a resumed run need not load it again
# The readings as defined here. Scores of another definition do not compare with these (the first meter's drift was
# any change of the class's predictions), so meter.json and meter-reference.pt written under another are not read:
# their checkpoints are measured again (`measure_run`), the base model answers again (the trainer's MeterRecorder).
DEFINITION = 2


@dataclass
class Probes:
    """What the meter shows every checkpoint: latents [n, C, h, w], their text (embeddings [n, 77, width], or
    token ids [n, 77] that each model encodes with its own text encoder), whose they are, and their subject's class
    word."""

    photos: torch.Tensor
    photo_text: torch.Tensor
    photo_subject: torch.Tensor  # [n] subject index of each photo
    class_words: list[str]  # the subjects' class words, each once
    photo_class: torch.Tensor  # [n] index in class_words of each photo's class word

    @property
    def class_text(self) -> torch.Tensor:
        """Token ids [n, 77]: each photo's bare class word."""
        return get_tokenizer()([self.class_words[c] for c in self.photo_class.tolist()])


@dataclass
class Reference:
    """The base model's answers: its pictures of each class word, and its errors (see `Errors`)."""

    class_samples: torch.Tensor  # [len(class_words) * CLASS_SAMPLES, C, h, w]
    photo_errors: torch.Tensor
    shifted_errors: torch.Tensor
    class_errors: torch.Tensor
    class_sample_errors: torch.Tensor


@dataclass
class Errors:
    """A model's eps-MSE per timestep and image: on the photos under their captions and re-cropped
    ([len(TIMESTEPS), n]), on the photos under their bare class word and on the base model's class pictures under
    theirs ([len(IDENTITY_TIMESTEPS), n or k])."""

    photo_errors: torch.Tensor
    shifted_errors: torch.Tensor
    class_errors: torch.Tensor
    class_sample_errors: torch.Tensor


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
    photo_class = torch.tensor([class_words.index(subjects[s][1]) for s in photo_subject.tolist()], dtype=torch.long)
    return Probes(data.instance_latents[:, 0].float(), data.conds[data.instance_rows], photo_subject, class_words,
                  photo_class)


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


def errors_by_timestep(model, latents: torch.Tensor, text: torch.Tensor, stream: int = 0,
                       timesteps: tuple[int, ...] = TIMESTEPS) -> torch.Tensor:
    """eps-MSE [len(timesteps), n] of each latent [n, C, h, w] at each of `timesteps` (some of TIMESTEPS) under its
    text (embeddings or token ids, one row per latent), with the meter's fixed noise of `stream` (a timestep's noise
    is the same whichever others are asked for)."""
    noisy, t, noise = noised(latents, stream, timesteps)
    eps = predict(model, noisy, t, text.repeat(len(timesteps), *[1] * (text.dim() - 1))).view(noise.shape)
    return (eps - noise).square().mean(dim=(2, 3, 4))


def noised(latents: torch.Tensor, stream: int, timesteps: tuple[int, ...] = TIMESTEPS):
    """The latents [n, C, h, w] noised with the meter's fixed noise of `stream` at each of `timesteps`:
    (noisy [len(timesteps) * n, C, h, w], their timesteps [len(timesteps) * n], the noise [len(timesteps), n, ...])."""
    noise = noise_like(latents, stream)[[TIMESTEPS.index(t) for t in timesteps]]
    a = alphas_cumprod().float()[list(timesteps)].view(-1, 1, 1, 1, 1)
    noisy = (a.sqrt() * latents + (1 - a).sqrt() * noise).flatten(0, 1)
    return noisy, torch.tensor(timesteps).repeat_interleave(len(latents)), noise


def denoising_error(model, latents: torch.Tensor, text: torch.Tensor) -> float:
    """Mean eps-MSE of the latents under their text at TIMESTEPS with the meter's fixed noise, for any set of images
    (bench/train.py's held-out error; the tests' measure of what a run learnt)."""
    return float(errors_by_timestep(model, latents, text).mean())


def picture_class(probes: Probes, pictures: torch.Tensor) -> torch.Tensor:
    """[k]: the index in probes.class_words of each of the base model's class pictures (as many of each word)."""
    words = len(probes.class_words)
    return torch.arange(words).repeat_interleave(len(pictures) // words)


def picture_text(probes: Probes, pictures: torch.Tensor) -> torch.Tensor:
    """Token ids [k, 77]: each class picture's bare class word."""
    return get_tokenizer()([probes.class_words[c] for c in picture_class(probes, pictures).tolist()])


@torch.no_grad()
def class_samples(base, probes: Probes) -> torch.Tensor:
    """The base model's pictures of each bare class word, seeds 0 .. CLASS_SAMPLES-1 (the meter's class pictures),
    as latents made the way the run's class images are: sampled, decoded to pixels, encoded again."""
    side = probes.photos.shape[-1] * base.cfg.latent_factor
    made = [sample_latents(base, GenerationParams(word, sampler="euler", steps=CLASS_SAMPLE_STEPS, seed=0,
                                                  width=side, height=side, batch_size=CLASS_SAMPLES))
            for word in probes.class_words]
    vae = next(base.vae.parameters())  # half on a GPU, where a run in fp32 (`classic`) has no autocast to cast for it
    return torch.cat([base.encode_images(base.decode_latents(latent.to(vae.dtype)).to(vae.dtype)).float().cpu()
                      for latents in made for latent in latents.split(1)])  # the VAE one picture at a time


def errors_of(model, probes: Probes, samples: torch.Tensor) -> Errors:
    """The model's errors on the probes and on the base model's class pictures `samples`."""
    return Errors(errors_by_timestep(model, probes.photos, probes.photo_text, 0),
                  errors_by_timestep(model, shifted(probes.photos), probes.photo_text, 1),
                  errors_by_timestep(model, probes.photos, probes.class_text, 0, IDENTITY_TIMESTEPS),
                  errors_by_timestep(model, samples, picture_text(probes, samples), 2, IDENTITY_TIMESTEPS))


def reference_of(base, probes: Probes) -> Reference:
    """The base model's answers to the probes (its class pictures drawn first)."""
    samples = class_samples(base, probes)
    return Reference(samples, **asdict(errors_of(base, probes, samples)))


def fit(errors: torch.Tensor, base_errors: torch.Tensor, subject: torch.Tensor) -> float:
    """Mean over subjects of (their photos' error) / (the base model's), errors summed over timesteps and photos."""
    ratios = [errors[:, subject == s].sum() / base_errors[:, subject == s].sum() for s in subject.unique()]
    return float(torch.stack(ratios).mean())


def fit_by_timestep(errors: torch.Tensor, base_errors: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """[len(timesteps), groups]: at each timestep, each group's (photos' error) / (the base model's)."""
    return torch.stack([errors[:, group == g].sum(1) / base_errors[:, group == g].sum(1) for g in group.unique()], 1)


def score(model, probes: Probes, reference: Reference) -> Scores:
    """The three scores of `model` (see the module docstring)."""
    now, subject = errors_of(model, probes, reference.class_samples), probes.photo_subject
    identity = [TIMESTEPS.index(t) for t in IDENTITY_TIMESTEPS]
    subject_fit = fit_by_timestep(now.photo_errors[identity], reference.photo_errors[identity], subject).mean()
    on_photos = fit_by_timestep(now.class_errors, reference.class_errors, subject)  # [t, subjects]
    on_pictures = fit_by_timestep(now.class_sample_errors, reference.class_sample_errors,
                                  picture_class(probes, reference.class_samples))  # [t, class words]
    subject_class = torch.stack([probes.photo_class[subject == s][0] for s in subject.unique()])
    drift = 1 - (on_photos / on_pictures[:, subject_class]).mean()
    copying = (fit(now.shifted_errors, reference.shifted_errors, subject)
               / fit(now.photo_errors, reference.photo_errors, subject) - 1)
    return Scores(float(subject_fit), float(drift), copying)


# ---------------------------------------------------------------------------------------------------
# The recommendation
# ---------------------------------------------------------------------------------------------------

def recommend(rows: list[MeterRow]) -> Recommendation | None:
    """The step to pick and why (None without checkpoints with finite scores: a run that diverged has none after it).
    - a single checkpoint: that one, "nothing to compare it with: save more often";
    - else the checkpoint with the lowest subject fit (the earliest of equals): "the best subject fit of the run", or,
      when that is the last checkpoint, "still improving: train longer if it does not look like the subject yet".
    Copying and class drift are shown, not used. Chosen in the quality world (bench/results/NOTES.md, 2026-12-03): on
    the 15 runs of the meter's records (bench/results/meter-*.json, three subjects) this pick is within 5% of the
    world's best trade-off in 8, the last checkpoint in 9, the checkpoint before copying rose 0.15 above the first's
    in 5. None reaches the issue's target: at the world's full-model learning rate its likeness moves by up to 0.66
    between checkpoints 10 steps apart, which no reading of the checkpoints has followed."""
    rows = sorted((r for r in rows if all(map(math.isfinite, (r.subject_fit, r.class_drift, r.copying)))),
                  key=lambda r: r.step)
    if not rows:
        return None
    last = rows[-1]
    if len(rows) == 1:
        return Recommendation(last.step, last.file, Message("meter_only_one", step=last.step))
    best = min(rows, key=lambda r: r.subject_fit)
    if best is last:
        return Recommendation(last.step, last.file, Message("meter_still_improving", step=last.step,
                                                            fit=last.subject_fit))
    return Recommendation(best.step, best.file, Message("meter_best_fit", step=best.step, fit=best.subject_fit,
                                                        last=last.step, last_fit=last.subject_fit))


# ---------------------------------------------------------------------------------------------------
# meter.json, and measuring a run's checkpoints on demand
# ---------------------------------------------------------------------------------------------------

def _written(run_dir: Path) -> dict | None:
    """The run's meter.json as written (None when it has none)."""
    path = Path(run_dir) / METER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_rows(run_dir: Path) -> list[MeterRow]:
    """The run's meter.json rows, by step ([] when it has none, or only rows of another DEFINITION); a score written
    as null (not a number: the checkpoint diverged) is NaN again."""
    written = _written(run_dir)
    if written is None or written.get("definition") != DEFINITION:
        return []
    rows = ({k: math.nan if v is None else v for k, v in row.items()} for row in written["checkpoints"])
    return sorted((MeterRow(**row) for row in rows), key=lambda r: r.step)


def earlier_definition(run_dir: Path) -> bool:
    """Whether the run's meter.json holds scores of another DEFINITION (which read_rows leaves out)."""
    written = _written(run_dir)
    return written is not None and written.get("definition") != DEFINITION


def row_record(row: MeterRow) -> dict:
    """A row as standard JSON: scores that are not numbers (a diverged checkpoint's NaN) as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(row).items()}


def write_rows(run_dir: Path, rows: list[MeterRow]) -> None:
    """meter.json: every checkpoint's scores (one per step, the newest measure wins) and the recommendation."""
    by_step = {r.step: r for r in rows}
    rows = [by_step[s] for s in sorted(by_step)]
    rec = recommend(rows)
    recommended = None if rec is None else {"step": rec.step, "file": rec.file, "why": rec.why,
                                            "why_fr": say_in(rec.why, "fr")}
    path = Path(run_dir) / METER_FILE
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps({"definition": DEFINITION, "checkpoints": [row_record(r) for r in rows],
                               "recommended": recommended}, indent=1, allow_nan=False))
    tmp.replace(path)


def file_moved(run_dir: Path, old: Path, new: Path) -> None:
    """meter.json's row of model file `old` now names `new` (the same model, renamed)."""
    rows = read_rows(run_dir)
    if any(Path(r.file).name == old.name for r in rows):
        write_rows(run_dir, [replace(r, file=str(new)) if Path(r.file).name == old.name else r for r in rows])


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
                again: bool = False, model: str | None = None) -> list[MeterRow]:
    """Scores the model files of a run that meter.json lacks (`again`: all of them) against the run's base model
    (`model`: the file where it is now, when it moved), writes meter.json, returns all its rows."""
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
    values = {"device": device, **({"model": model} if model else {})}
    cfg = load_config(yaml_path=run_dir / "config.yaml", values=values)
    if not Path(cfg.model).is_file():
        raise ConfigError(Message("meter_base_missing", path=cfg.model, run_dir=run_dir))
    base, _ = load_model(cfg.model, device=device, dtype=torch.float32)
    probes = run_probes(cfg, base)
    with evaluating(base):
        reference = reference_of(base, probes)
    lora = cfg.method is Method.LORA  # the run's files are LoRAs: each is measured on the base model
    if not lora:
        del base
    rows = []
    for n, path in enumerate(files):
        start = time.perf_counter()
        model = with_lora(base, read_lora(path), 1.0) if lora else load_model(path, device=device,
                                                                              dtype=torch.float32)[0]
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
