"""sdtrainer/seeds.py: streams that are pure functions of their keys."""
import torch

from sdtrainer.seeds import hashed_seed, seeded_generator, seeded_uniform


def test_a_seed_depends_on_every_key_and_their_order():
    seeds = {hashed_seed(*keys) for keys in [(1, 2, 3), (1, 3, 2), (1, 2), (2, 2, 3), (1, 2, 4)]}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert hashed_seed(1, 2, 3) == hashed_seed(1, 2, 3)


def test_generators_reproduce_and_differ_by_key():
    a, b = torch.randn(8, generator=seeded_generator(42, 1, 7)), torch.randn(8, generator=seeded_generator(42, 1, 7))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.randn(8, generator=seeded_generator(42, 1, 8)))


def test_uniform_draws_are_spread_over_zero_to_one():
    draws = torch.tensor([seeded_uniform(7, 0, i) for i in range(4000)], dtype=torch.float64)
    assert 0 <= draws.min() and draws.max() < 1
    assert abs(draws.mean().item() - 0.5) < 0.02 and abs((draws < 0.25).double().mean().item() - 0.25) < 0.03
