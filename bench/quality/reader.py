"""Reads a world image's attributes back from its pixels, analytically (no learnt weights).

    readings = read(WORLD, pixels)             # uint8 [n, 3, H, W] -> one Reading per image
    readings[0].identity                       # ("circle", "yellow", "striped", "blue"), comparable to identity(thing)
    accuracy = reader_accuracy(WORLD, 500, seed=123)   # per attribute, on fresh world images

Background: the palette colour nearest the median of the border. Object: the pixels far from it.
Colours: the palette colours of the object's interior, by count (the most frequent is the fill, a
second one above PATTERN_SHARE is the pattern's). Stripes against spots: stripes fill whole rows.
Shape and size: the object's fill ratio of its bounding box and the height of its centre of mass,
against the same numbers measured on clean renders of each shape (`templates`). Position: the
bounding box's centre, nearest of the world's places.
"""
import functools
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from bench.quality.world import PALETTE, POSITIONS, SIZES, Thing, World, render

OBJECT_DISTANCE = 70.0  # RGB distance from the background above which a pixel belongs to the object
MIN_OBJECT_PIXELS = 12  # at 64 px; fewer: no object
PATTERN_SHARE = 0.1  # share of the interior in a second colour above which the object is patterned
STRIPE_ROW_SHARE = 0.75  # the rows of a pattern's pixels are on average at least this much in the pattern
#                          colour: stripes (whole rows; spots fill about half of theirs)


@dataclass(frozen=True)
class Reading:
    shape: str | None
    colour: str | None
    pattern: str | None
    pattern_colour: str | None
    background: str | None
    size: str | None
    position: str | None

    @property
    def identity(self) -> tuple:
        return (self.shape, self.colour, self.pattern, self.pattern_colour)


ATTRIBUTES = tuple(f.name for f in fields(Reading))


def truth(thing: Thing) -> Reading:
    """What a perfect reader says about a thing."""
    return Reading(**{k: v for k, v in asdict(thing).items() if k in ATTRIBUTES})


def _nearest(colours: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour of each RGB row, and its distance."""
    d = np.linalg.norm(colours[:, None, :] - palette[None], axis=-1)
    return d.argmin(1), d.min(1)


def _erode(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def _geometry(mask: np.ndarray) -> tuple[float, float, float, float, float]:
    """(fill ratio of the bounding box, centre of mass below the box's centre / height, half of the box's
    larger side, box centre x, box centre y) of an object mask."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    return (len(ys) / (h * w), (ys.mean() + 0.5 - (y0 + y1) / 2) / h, max(h, w) / 2, (x0 + x1) / 2, (y0 + y1) / 2)


@functools.cache
def templates(world: World) -> dict[str, dict]:
    """Each shape's fill ratio and centre of mass, and its half-extent when small and big, from clean renders."""
    out = {}
    for shape in world.shapes:
        geo = {}
        for size in SIZES:
            thing = Thing(shape, "white", "plain", None, "blue", size, "middle")
            mask = render(world, [thing])[0].permute(1, 2, 0).numpy().astype(float)
            geo[size] = _geometry(np.linalg.norm(mask - PALETTE["blue"], axis=-1) > OBJECT_DISTANCE)
        out[shape] = {"fill": np.mean([g[0] for g in geo.values()]), "mass": np.mean([g[1] for g in geo.values()]),
                      "extent": {size: g[2] for size, g in geo.items()}}
    return out


def read_one(world: World, image: np.ndarray) -> Reading:
    """The attributes of one RGB image [H, W, 3] (uint8 or float 0-255)."""
    image = image.astype(float)
    palette = np.array([PALETTE[c] for c in world.colours], dtype=float)
    border = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3), image[:, :2].reshape(-1, 3),
                             image[:, -2:].reshape(-1, 3)])
    bg_index, _ = _nearest(np.median(border, 0)[None], palette)
    background = world.colours[bg_index[0]]
    mask = np.linalg.norm(image - palette[bg_index[0]], axis=-1) > OBJECT_DISTANCE
    scale = image.shape[0] / 64
    if mask.sum() < MIN_OBJECT_PIXELS * scale**2:
        return Reading(None, None, None, None, background, None, None)
    colour, pattern, pattern_colour = _colours(world, image, mask, palette, bg_index[0])
    shape, size, position = _shape_size_position(world, mask, scale)
    return Reading(shape, colour, pattern, pattern_colour, background, size, position)


def _colours(world: World, image: np.ndarray, mask: np.ndarray, palette: np.ndarray, bg: int):
    interior = _erode(mask) if _erode(mask).sum() >= MIN_OBJECT_PIXELS else mask
    others = [i for i in range(len(palette)) if i != bg]
    labels, _ = _nearest(image[interior], palette[others])
    counts = np.bincount(labels, minlength=len(others))
    order = counts.argsort()[::-1]
    colour = world.colours[others[order[0]]]
    if counts[order[1]] < PATTERN_SHARE * interior.sum() or len(world.patterns) == 1:
        return colour, "plain", None
    second = np.zeros(image.shape[:2], bool)
    second[interior] = labels == order[1]
    rows, hits = interior.sum(1), second.sum(1)
    row_share = np.sum(hits * hits / np.maximum(rows, 1)) / hits.sum()  # of a pattern pixel's row, on average
    striped = row_share >= STRIPE_ROW_SHARE
    pattern = "striped" if striped or "spotted" not in world.patterns else "spotted"
    return colour, pattern, world.colours[others[order[1]]]


def _shape_size_position(world: World, mask: np.ndarray, scale: float):
    fill, mass, extent, x, y = _geometry(mask)
    shapes = templates(world)
    shape = min(shapes, key=lambda s: (fill - shapes[s]["fill"]) ** 2 + (2 * (mass - shapes[s]["mass"])) ** 2)
    small, big = (shapes[shape]["extent"][s] for s in ("small", "big"))
    size = "big" if extent / scale > (small + big) / 2 else "small"
    centre = np.array([x, y]) / scale - 32
    position = min(world.positions, key=lambda p: np.sum((centre - np.array(POSITIONS[p])) ** 2))
    return shape, size if size in world.sizes else None, position


def read(world: World, pixels: torch.Tensor) -> list[Reading]:
    """Readings of a batch of uint8 images [n, 3, H, W]."""
    return [read_one(world, image) for image in pixels.permute(0, 2, 3, 1).cpu().numpy()]


def attribute_accuracy(readings: list[Reading], things: list[Thing],
                       attributes: tuple[str, ...] = ATTRIBUTES) -> dict[str, float]:
    """Share of images whose each of `attributes` was read right (pattern colour: only of patterned things),
    `mean` over them and `all`: all of them right."""
    out = {}
    for name in attributes:
        pairs = [(getattr(r, name), getattr(t, name)) for r, t in zip(readings, things)
                 if not (name == "pattern_colour" and t.pattern == "plain")]
        out[name] = float(np.mean([a == b for a, b in pairs])) if pairs else 1.0
    out["mean"] = float(np.mean([out[a] for a in attributes]))
    out["all"] = float(np.mean([all(getattr(r, a) == getattr(t, a) for a in attributes)
                                for r, t in zip(readings, things)]))
    return out


def reader_accuracy(world: World, n: int, seed: int) -> dict[str, float]:
    """The reader's accuracy on n fresh world images (seeds apart from any training data)."""
    things = world.sample(n, np.random.default_rng(seed))
    return attribute_accuracy(read(world, render(world, things)), things)
