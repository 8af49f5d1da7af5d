"""Data order: micro-batch k of a run is a pure function of (seed, k), so a resumed run draws what an
uninterrupted one would.

    plan = BatchPlan(instance_counts=(5,), class_counts=(7,), repeats=(1,), batch_size=2, flip_p=0.5,
                     latent_shape=(4, 64, 64), noise_offset=0.0, seed=3)
    batch_for(plan, k)   # {"instance", "class", "flip", "timesteps", "noise"}: which cached latents, and the rest

Subjects take turns by their repeats; each subject's images come in shuffle epochs; on several processes each
takes its `share` of every micro-batch.
"""
import functools
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset

from ldm.schedule import NUM_TIMESTEPS
from sdtrainer.config import TrainConfig
from sdtrainer.seeds import seeded_generator
from sdtrainer.trainer.cache import CachedData

INSTANCE_STREAM, CLASS_STREAM, STEP_STREAM, SUBJECT_STREAM = 0, 1, 2, 3  # independent random streams of batch_for


@functools.lru_cache(maxsize=64)
def epoch_order(seed: int, stream: int, subject: int, epoch: int, n: int) -> torch.Tensor:
    """Item order of one shuffle epoch of a subject's n items."""
    return torch.randperm(n, generator=seeded_generator(seed, stream, subject, epoch))


def draw(seed: int, stream: int, subject: int, n: int, j: int) -> int:
    """Item j of a subject's endless sequence of shuffle epochs of its n items: each item equally often."""
    return int(epoch_order(seed, stream, subject, j // n, n)[j % n])


@functools.lru_cache(maxsize=64)
def subject_round(seed: int, repeats: tuple[int, ...], rnd: int) -> torch.Tensor:
    """The subjects of one round of picks: subject c repeats[c] times, shuffled."""
    pool = torch.repeat_interleave(torch.arange(len(repeats)), torch.tensor(repeats))
    return pool[torch.randperm(len(pool), generator=seeded_generator(seed, SUBJECT_STREAM, rnd))]


def subject_at(seed: int, repeats: tuple[int, ...], p: int) -> tuple[int, int]:
    """(subject of pick p, how many picks of that subject came before it): balanced by repeats, since
    every round of sum(repeats) picks holds subject c exactly repeats[c] times."""
    if len(repeats) == 1:
        return 0, p
    rnd, r = divmod(p, sum(repeats))
    order = subject_round(seed, repeats, rnd)
    c = int(order[r])
    return c, rnd * repeats[c] + int((order[:r] == c).sum())


@dataclass(frozen=True)
class BatchPlan:
    instance_counts: tuple[int, ...]  # distinct instance images of each subject, stored subject after subject
    class_counts: tuple[int, ...]  # class images of each subject, same order (all 0 without prior preservation)
    repeats: tuple[int, ...]  # each subject's share of the picks: repeats[c] / sum(repeats)
    batch_size: int  # instance images per micro-batch of all processes together; as many class images (of the
    #                  same subjects) join them. Process r of n takes its share (see `share`)
    flip_p: float
    latent_shape: tuple[int, int, int]
    noise_offset: float
    seed: int

    def __post_init__(self):
        if not len(self.instance_counts) == len(self.class_counts) == len(self.repeats) or not all(
                self.instance_counts) or (any(self.class_counts) and not all(self.class_counts)):
            raise RuntimeError(f"Every subject needs images (and class images when one has them): {self}")

    @functools.cached_property
    def first_instance(self) -> list[int]:
        """Index of each subject's first instance latent (they are stored subject after subject)."""
        return [sum(self.instance_counts[:c]) for c in range(len(self.instance_counts))]

    @functools.cached_property
    def first_class(self) -> list[int]:
        return [sum(self.class_counts[:c]) for c in range(len(self.class_counts))]


def batch_for(plan: BatchPlan, k: int) -> dict[str, torch.Tensor]:
    """Micro-batch k: which cached latents (instance then class), mirrored or not, timesteps and noise.
    Each class latent is one of the class images of the subject of the instance latent it pairs with."""
    b, g = plan.batch_size, seeded_generator(plan.seed, STEP_STREAM, k)
    picks = [subject_at(plan.seed, plan.repeats, p) for p in range(k * b, k * b + b)]
    instance = torch.tensor([plan.first_instance[c] + draw(plan.seed, INSTANCE_STREAM, c, plan.instance_counts[c], j)
                             for c, j in picks])
    classes = torch.tensor([plan.first_class[c] + draw(plan.seed, CLASS_STREAM, c, plan.class_counts[c], j)
                            for c, j in picks] if all(plan.class_counts) else [], dtype=torch.long)
    n = b + len(classes)
    noise = torch.randn((n, *plan.latent_shape), generator=g)
    if plan.noise_offset:
        noise += plan.noise_offset * torch.randn((n, plan.latent_shape[0], 1, 1), generator=g)
    return {"instance": instance, "class": classes, "flip": torch.rand(n, generator=g) < plan.flip_p,
            "timesteps": torch.randint(0, NUM_TIMESTEPS, (n,), generator=g), "noise": noise}


def share(batch: dict[str, torch.Tensor], rank: int, processes: int) -> dict[str, torch.Tensor]:
    """Process `rank`'s share of a micro-batch drawn for `processes` processes: its slice of the instance rows and
    the class rows paired with them, with their flips, timesteps and noise. The shares, in rank order, are the
    batch; the mean of their losses is the batch's loss, which is what DDP's averaged gradients descend."""
    if processes == 1:
        return batch
    total = len(batch["instance"])
    mine = slice(rank * total // processes, (rank + 1) * total // processes)
    rows = torch.arange(total)[mine]
    if len(batch["class"]):
        rows = torch.cat([rows, rows + total])
    return {"instance": batch["instance"][mine], "class": batch["class"][mine], "flip": batch["flip"][rows],
            "timesteps": batch["timesteps"][rows], "noise": batch["noise"][rows]}


def batch_plan(cfg: TrainConfig, data: CachedData, processes: int = 1) -> BatchPlan:
    """The plan of a run's cached data (one subject when the data does not say how many) on `processes` processes,
    each with cfg.batch_size instance images per micro-batch."""
    instance = data.instance_counts or (len(data.instance_latents),)
    classes = data.class_counts or (len(data.class_latents),)
    return BatchPlan(tuple(instance), tuple(classes), tuple(data.repeats or (1,) * len(instance)),
                     cfg.batch_size * processes, cfg.flip_p, tuple(data.instance_latents.shape[2:]),
                     cfg.noise_offset, cfg.seed)


class StepBatches(IterableDataset):
    """Process `rank`'s shares of micro-batches start .. stop-1 of a plan, in order (one Lightning epoch)."""

    def __init__(self, plan: BatchPlan, start: int, stop: int, rank: int = 0, processes: int = 1):
        self.plan, self.start, self.stop, self.rank, self.processes = plan, start, stop, rank, processes

    def __iter__(self):
        return (share(batch_for(self.plan, k), self.rank, self.processes) for k in range(self.start, self.stop))
