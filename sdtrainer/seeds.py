"""Random streams that are pure functions of their keys, so a run reproduces and resumes exactly.

    g = seeded_generator(seed, STEP_STREAM, step)     # a torch CPU generator for one purpose and one step

The keys are hashed (blake2b), so streams for different keys never overlap.
"""
import hashlib

import torch


def hashed_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key and on their order."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded with hashed_seed(*keys)."""
    return torch.Generator().manual_seed(hashed_seed(*keys))
