"""sdtrainer/seeds.py: streams that are pure functions of their keys."""
import torch

from sdtrainer.seeds import hashed_seed, seeded_generator


def test_a_seed_depends_on_every_key_and_their_order():
    seeds = {hashed_seed(*keys) for keys in [(1, 2, 3), (1, 3, 2), (1, 2), (2, 2, 3), (1, 2, 4)]}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert hashed_seed(1, 2, 3) == hashed_seed(1, 2, 3)


def test_generators_reproduce_and_differ_by_key():
    a, b = torch.randn(8, generator=seeded_generator(42, 1, 7)), torch.randn(8, generator=seeded_generator(42, 1, 7))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.randn(8, generator=seeded_generator(42, 1, 8)))
