"""A procedural world of coloured shapes, where every attribute of an image is known exactly.

    world = WORLD                                   # or TINY_WORLD for CPU tests
    things = world.sample(256, np.random.default_rng(0))
    pixels = render(world, things)                  # uint8 [256, 3, 64, 64]
    captions = [world.caption(t) for t in things]   # "a big red star with stripes on grass"
    photos = world.photos(SUBJECT, 6, seed=1)       # one subject in varied places, like photos of one dog

A `Thing` is one object on a plain background: its class (the shape), fill colour, pattern (plain,
stripes, spots) in a second colour, size, position and background colour. A subject is one particular
instance: the shape, colours and pattern stay, the rest varies from photo to photo. Its identity is
`identity(thing)`, and `bench.quality.reader` reads the same attributes back from pixels.
Everything is a function of a seed.
"""
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 225),
    "yellow": (235, 215, 40), "purple": (140, 50, 190), "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle", "star")
PATTERNS = ("plain", "striped", "spotted")
PATTERN_NOUNS = {"striped": "stripes", "spotted": "spots"}
# Captions name each attribute with words of its own: the background by a place (as "a dog on the beach"),
# never by a colour word that could also be the fill's. The pattern's colour is not named: like the
# details of one dog that "dog" does not say, it is part of a subject's identity that only training
# can teach (a frozen text encoder leaves the UNet to bind a shared colour word to its role from word
# order, which the first base models had not learnt after 4000 steps: backgrounds at chance).
BACKGROUND_PHRASES = {"red": "on bricks", "green": "on grass", "blue": "on water", "yellow": "on sand",
                      "purple": "on velvet", "white": "on snow"}
SIZES = {"small": 10.0, "big": 15.0}  # half the side of the bounding box, pixels at 64 px
# Where the object is varies, as in photos, but captions do not say it: the UNet is made of convolutions and
# attention without any position embedding, so it can only tell left from right by the zero padding at the
# borders. Captioned ("at the left", ...), the third base model drew positions at chance after 5900 steps
# while it learnt the other attributes (bench/results/NOTES.md); SD v1 is known to follow such words poorly too.
POSITIONS = {"middle": (0, 0), "left": (-15, 0), "right": (15, 0), "top": (0, -15), "bottom": (0, 15)}
PATTERN_PERIOD = 6.0  # pixels between stripes or spots, at 64 px
STRIPE_WIDTH = 2.0
SPOT_HALF_SIDE = 1.5  # spots are 3x3 pixel squares on the pixel grid: no blended colours at their edges
# Named individuals: as a text-to-image model has seen photos of people under their names, some pretraining images
# are one of a few particular things, captioned with its name before the class ("a bob star"; `World.named`). A
# shared name (`World.shared_names`) stands for SHARED_BY things of other classes than the subject's: a word the base
# model knows, weakly, as SD v1's CLIP knows "sks" (a rifle), which is why DreamBooth picks such tokens. WORLD uses
# one, "sks", the subject's token. Why: the fourth base never saw "sks", and its text encoder mapped "sks circle"
# 0.04 (relative L2) from "a circle", so DreamBooth could only change what the class word draws, and prior
# preservation, which holds the class word back, held the subject back with it (bench/results/NOTES.md, 2026-12-02).
# WORLD also has 8 named individuals, as SD v1 knows many people and things by name.
NAMES = ("bob", "ann", "max", "leo", "kim", "zoe", "ray", "eve", "ian", "ada", "joe", "amy", "tom", "sam", "liz", "ned")
NAMED_SEED = 7
SHARED_BY = 3  # things a shared name stands for
JITTER = 2  # pixels of random shift of the position, and of the size
OPTIONAL = ("size", "colour", "pattern", "background")  # what a caption may leave out
CAPTIONED = ("shape", *OPTIONAL)  # what a full caption says (not the pattern's colour)


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str  # fill
    pattern: str  # plain, striped or spotted
    pattern_colour: str | None  # None when plain
    background: str
    size: str
    position: str
    dx: int = 0  # jitter of the position, pixels at 64 px
    dy: int = 0
    dr: int = 0  # jitter of the size
    name: str | None = None  # a named individual's name (said in every caption of it)


def identity(thing: Thing) -> tuple:
    """What makes a subject itself: its class, colour and pattern (not where or how big it is)."""
    return (thing.shape, thing.colour, thing.pattern, thing.pattern_colour)


@dataclass(frozen=True)
class World:
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(PALETTE)
    patterns: tuple[str, ...] = PATTERNS
    sizes: tuple[str, ...] = tuple(SIZES)
    positions: tuple[str, ...] = tuple(POSITIONS)
    image_size: int = 64
    mention_p: float = 0.6  # chance that a caption names each optional attribute
    empty_caption_p: float = 0.1  # unconditional captions, for classifier-free guidance
    named: int = 0  # named individuals among the things (the first of NAMES)
    named_p: float = 0.0  # chance that a random thing is one of them
    shared_names: tuple[str, ...] = ()  # names each shared by SHARED_BY things: words with a weak prior (as "sks")

    @cached_property
    def individuals(self) -> dict[str, tuple[tuple, ...]]:
        """The identities (shape, colour, pattern, pattern colour) each name stands for: one for NAMES, SHARED_BY for
        shared names (none of the subject's class); seeded, all different, none the subject's."""
        rng, out, taken = np.random.default_rng(NAMED_SEED), {}, {identity(SUBJECT)}
        for name, count in [(n, 1) for n in NAMES[:self.named]] + [(n, SHARED_BY) for n in self.shared_names]:
            out[name] = []
            while len(out[name]) < count:
                thing = self._one(rng, {})
                other_class = count == 1 or thing.shape != SUBJECT.shape  # a shared name: SD's "sks" is a rifle
                if identity(thing) not in taken and other_class:
                    taken.add(identity(thing))
                    out[name].append(identity(thing))
            out[name] = tuple(out[name])
        return out

    def sample(self, n: int, rng: np.random.Generator, **fixed) -> list[Thing]:
        """n random things of the world; `fixed` attributes (e.g. shape="star") are held. Without `fixed`, each is a
        named individual with chance `named_p`."""
        named = self.individuals if self.named_p and not fixed else {}
        return [self._named(rng, named) if named and rng.random() < self.named_p else self._one(rng, fixed)
                for _ in range(n)]

    def _named(self, rng: np.random.Generator, named: dict[str, tuple[tuple, ...]]) -> Thing:
        name = list(named)[rng.integers(len(named))]
        keys = ("shape", "colour", "pattern", "pattern_colour")
        which = named[name][rng.integers(len(named[name]))]
        return replace(self._one(rng, dict(zip(keys, which))), name=name)

    def _one(self, rng: np.random.Generator, fixed: dict) -> Thing:
        pick = lambda name, options: fixed[name] if name in fixed else options[rng.integers(len(options))]  # noqa: E731
        shape, colour = pick("shape", self.shapes), pick("colour", self.colours)
        pattern = pick("pattern", self.patterns)
        others = [c for c in self.colours if c != colour]
        pattern_colour = None if pattern == "plain" else pick("pattern_colour", others)
        background = pick("background", [c for c in others if c != pattern_colour])
        jitter = rng.integers(-JITTER, JITTER + 1, 3)
        return Thing(shape, colour, pattern, pattern_colour, background, pick("size", self.sizes),
                     pick("position", self.positions), *(int(j) for j in jitter))

    def caption(self, thing: Thing, mention: frozenset[str] | None = None) -> str:
        """The caption naming the shape and the attributes in `mention` (default: all)."""
        said = set(OPTIONAL if mention is None else mention)
        words = ["a"]
        if "size" in said:
            words.append(thing.size)
        if "pattern" in said and thing.pattern == "plain":
            words.append("plain")
        if "colour" in said:
            words.append(thing.colour)
        if thing.name:
            words.append(thing.name)
        words.append(thing.shape)
        if "pattern" in said and thing.pattern != "plain":
            words += ["with", PATTERN_NOUNS[thing.pattern]]
        if "background" in said:
            words.append(BACKGROUND_PHRASES[thing.background])
        return " ".join(words)

    def training_caption(self, thing: Thing, rng: np.random.Generator) -> str:
        """A caption as pretraining sees it: some attributes named, sometimes none at all ("")."""
        if rng.random() < self.empty_caption_p:
            return ""
        return self.caption(thing, frozenset(a for a in OPTIONAL if rng.random() < self.mention_p))

    def photos(self, subject: Thing, n: int, seed: int) -> list[Thing]:
        """n photos of one subject: same identity, each with its own background, size and position,
        chosen so that no two photos look alike."""
        rng = np.random.default_rng(seed)
        keep = dict(shape=subject.shape, colour=subject.colour, pattern=subject.pattern,
                    pattern_colour=subject.pattern_colour)
        backgrounds = rng.permutation([c for c in self.colours if c not in (subject.colour, subject.pattern_colour)])
        positions = rng.permutation(self.positions)
        return [self._one(rng, {**keep, "background": str(backgrounds[i % len(backgrounds)]),
                                "position": str(positions[i % len(positions)])}) for i in range(n)]


# A quarter of pretraining images are named: 8 individuals and "sks" (three things), each ~2.8% of images. On the tiny
# world (CPU, 2000 steps, 300 DreamBooth steps, 48 samples): caption accuracy 0.75 against 0.69 without names, and with
# prior preservation fidelity 0.25 / class drift 0.19 against 0.10 / 0.17 (bench/results/NOTES.md, 2026-12-03).
WORLD = World(named=8, named_p=0.25, shared_names=("sks",))
# The CPU tests' world: fewer classes, colours and places, same code.
TINY_WORLD = World(shapes=("circle", "square", "triangle", "star"), colours=("red", "green", "blue", "yellow"),
                   patterns=("plain", "striped"), positions=("middle", "left", "right"))
# The subject of the benchmark: one yellow circle with blue stripes ("sks circle").
SUBJECT = Thing("circle", "yellow", "striped", "blue", "green", "big", "middle")
TOKEN = "sks"


# ---------------------------------------------------------------------------------------------------
# Rendering: all things of a batch at once, as tensors, on any device
# ---------------------------------------------------------------------------------------------------

def _columns(world: World, things: list[Thing], device) -> dict[str, torch.Tensor]:
    scale = world.image_size / 64
    f = lambda values: torch.tensor(values, dtype=torch.float32, device=device)  # noqa: E731
    colour = lambda name: PALETTE[name] if name else (0, 0, 0)  # noqa: E731
    return {
        "cx": f([(world.image_size / 2 + (POSITIONS[t.position][0] + t.dx) * scale) for t in things]),
        "cy": f([(world.image_size / 2 + (POSITIONS[t.position][1] + t.dy) * scale) for t in things]),
        "r": f([(SIZES[t.size] + t.dr / 2) * scale for t in things]),
        "shape": torch.tensor([SHAPES.index(t.shape) for t in things], device=device),
        "pattern": torch.tensor([PATTERNS.index(t.pattern) for t in things], device=device),
        "fill": f([colour(t.colour) for t in things]), "second": f([colour(t.pattern_colour) for t in things]),
        "background": f([colour(t.background) for t in things]),
    }


def _inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether (u, v), in units of the half-side r around the centre (v down), is inside each shape."""
    circle = u**2 + v**2 <= 1
    square = (u.abs() <= 0.9) & (v.abs() <= 0.9)
    triangle = (v <= 0.9) & (v >= -1 + 2 * u.abs() * 1.9 / 1.8 - 0.1)
    # star: fold the angle into one tenth of a turn, then test against the edge from an outer to an inner tip
    rho, phi = torch.sqrt(u**2 + (v + 0.1) ** 2), torch.atan2(u, -(v + 0.1))
    sector = 2 * np.pi / 10
    phi = torch.remainder(phi, 2 * sector)
    phi = torch.minimum(phi, 2 * sector - phi)
    outer, inner = 1.05, 0.42
    x, y = rho * torch.cos(phi), rho * torch.sin(phi)
    ax, ay, bx, by = outer, 0.0, inner * np.cos(sector), inner * np.sin(sector)
    star = (bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0
    return _pick(torch.stack([circle, square, triangle, star]), shape)


def _pick(options: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """options [k, n, H, W], index [n] -> options[index[i], i] for each i."""
    k, n, h, w = options.shape
    return options.gather(0, index.view(1, n, 1, 1).expand(1, n, h, w))[0]


@torch.no_grad()
def render(world: World, things: list[Thing], device: str | torch.device = "cpu", supersample: int = 2) -> torch.Tensor:
    """uint8 images [n, 3, size, size] of the things (edges antialiased by supersampling)."""
    c = _columns(world, things, device)
    n, side = len(things), world.image_size * supersample
    grid = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) / supersample
    gy, gx = grid.view(1, side, 1), grid.view(1, 1, side)
    cx, cy, r = (c[k].view(n, 1, 1) for k in ("cx", "cy", "r"))
    u, v = (gx - cx) / r, (gy - cy) / r
    inside = _inside(c["shape"], u, v)
    scale = world.image_size / 64
    period = PATTERN_PERIOD * scale
    stripes = torch.remainder(gy - cy, period) < STRIPE_WIDTH * scale
    du, dv = (torch.remainder(g - c - 0.5 * scale, period) - period / 2 for g, c in ((gx, cx), (gy, cy)))
    spots = torch.maximum(du.abs(), dv.abs()) < SPOT_HALF_SIDE * scale
    plain = torch.zeros_like(stripes)
    pattern = torch.stack([x.expand(n, side, side) for x in (plain, stripes, spots)])
    second = inside & _pick(pattern, c["pattern"])
    image = c["background"].view(n, 3, 1, 1).expand(n, 3, side, side)
    image = torch.where(inside[:, None], c["fill"].view(n, 3, 1, 1), image)
    image = torch.where(second[:, None], c["second"].view(n, 3, 1, 1), image)
    return F.avg_pool2d(image, supersample).round().clamp(0, 255).to(torch.uint8)


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [-1, 1], what the VAE takes."""
    return pixels.float() / 127.5 - 1


def save_pngs(pixels: torch.Tensor, folder, prefix: str) -> list:
    """Write uint8 images [n, 3, H, W] as prefix-NNN.png; returns the paths."""
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(pixels.permute(0, 2, 3, 1).cpu().numpy()):
        paths.append(folder / f"{prefix}-{i:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths
