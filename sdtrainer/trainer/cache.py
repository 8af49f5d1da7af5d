"""Encoding every image once: the frozen VAE's latents of each photo and class image, plain and mirrored, and
each caption's row (its embedding, or its token ids when the text encoder trains).

    data = cache_data(model, instances, classes, train_text_encoder=False, repeats=(1,))
"""
from dataclasses import dataclass

import torch

from ldm.model import StableDiffusion
from ldm.tokenizer import get_tokenizer
from sdtrainer.dataset import ImageSet
from sdtrainer.images import to_tensor

ENCODE_BATCH = 4  # images per VAE call while caching latents


@dataclass
class CachedData:
    instance_latents: torch.Tensor  # [N, 2, C, h, w]: as loaded, mirrored
    class_latents: torch.Tensor  # [M, 2, C, h, w]; M = 0 without prior preservation
    instance_rows: torch.Tensor  # [N] row of `conds` holding each instance image's caption
    class_rows: torch.Tensor  # [M]
    conds: torch.Tensor  # [P, 77, width] text embeddings, or [P, 77] token ids when the text encoder trains
    instance_counts: tuple[int, ...] = ()  # images of each subject, stored subject after subject; (): one subject
    class_counts: tuple[int, ...] = ()  # class images of each subject, same order
    repeats: tuple[int, ...] = ()  # each subject's share of the picks; (): equal shares

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, torch.Tensor)}


@torch.no_grad()
def encode_images(model: StableDiffusion, images: ImageSet) -> torch.Tensor:
    """[N, 2, C, h, w] posterior-mean latents of every image of the set, plain and mirrored (the flips training
    draws pick one of the two)."""
    vae_weight = next(model.vae.parameters())
    out = []
    for start in range(0, len(images.paths), ENCODE_BATCH):
        pixels = torch.stack([to_tensor(images.square(i)) for i in range(start, min(start + ENCODE_BATCH,
                                                                                   len(images.paths)))])
        both = torch.cat([pixels, pixels.flip(-1)]).to(vae_weight.device, vae_weight.dtype)
        latents = model.encode_images(both).float().cpu()
        out.append(torch.stack(latents.chunk(2), dim=1))
    return torch.cat(out)


@torch.no_grad()
def caption_table(model: StableDiffusion, captions: list[str], token_ids_only: bool) -> tuple[torch.Tensor, list[int]]:
    """(one row per distinct caption: embedding or token ids, the row of each caption)."""
    unique = list(dict.fromkeys(captions))
    ids = get_tokenizer()(unique)
    if token_ids_only:
        table = ids
    else:
        device = next(model.text_encoder.parameters()).device
        table = model.text_encoder(ids.to(device)).float().cpu()
    return table, [unique.index(c) for c in captions]


def cache_data(model: StableDiffusion, instances: list[ImageSet], classes: list[ImageSet | None],
               train_text_encoder: bool, repeats: tuple[int, ...]) -> CachedData:
    """Latents and caption rows of every subject's photos and class images (one list entry per subject; a
    class entry is None without prior preservation), stored subject after subject."""
    encoded: dict[int, torch.Tensor] = {}  # a class set shared by subjects of one class word is encoded once
    for images in instances + [d for d in classes if d is not None]:
        if id(images) not in encoded:
            encoded[id(images)] = encode_images(model, images)
    instance_latents = torch.cat([encoded[id(d)] for d in instances])
    present = [d for d in classes if d is not None]
    class_latents = (torch.cat([encoded[id(d)] for d in present]) if present
                     else instance_latents.new_zeros((0, *instance_latents.shape[1:])))
    captions = [c for d in instances + present for c in d.captions]
    conds, rows = caption_table(model, captions, train_text_encoder)
    n = len(instance_latents)
    return CachedData(instance_latents, class_latents, torch.tensor(rows[:n]), torch.tensor(rows[n:], dtype=torch.long),
                      conds, tuple(len(d.paths) for d in instances),
                      tuple(len(d.paths) if d is not None else 0 for d in classes), tuple(repeats))
