"""The token sampler: filtering like the reference, greedy at temperature 0, inverse-CDF draws that follow the
softmax, and uniforms that are a pure function of (seed, level, position)."""
from __future__ import annotations

import math

import pytest
import torch

from jukebox_dist.errors import InputError
from jukebox_dist.sampling.sampler import SamplingParams, filter_logits, inverse_cdf, sample, token_uniform


def _splitmix(x: int) -> int:  # the textbook splitmix64 finaliser in Python integers
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def test_uniform_matches_textbook_splitmix64():
    seeds = torch.tensor([0, 1, 2**40 + 7, -5])
    m = (1 << 64) - 1
    for position in (0, 12345):
        got = token_uniform(seeds, level=2, position=position)
        assert got.dtype == torch.float64 and got.shape == (4,)
        for row, seed in enumerate(seeds.tolist()):
            key = _splitmix(_splitmix(_splitmix(seed & m) ^ 2) ^ position)
            bits = _splitmix(key)
            assert got[row].item() == ((bits >> 11) + 0.5) / (1 << 53)


def test_uniform_depends_on_seed_level_and_position_only():
    a = token_uniform(torch.tensor([3, 4]), 1, 10)
    assert a[1].item() == token_uniform(torch.tensor([4]), 1, 10).item()
    assert torch.equal(token_uniform(torch.tensor([3, 4]), 1, torch.tensor([10, 11]))[0], a[0])  # per-row positions
    for other in (token_uniform(torch.tensor([3]), 0, 10), token_uniform(torch.tensor([3]), 1, 11),
                  token_uniform(torch.tensor([5]), 1, 10)):
        assert other.item() != a[0].item()
    window = token_uniform(torch.tensor([[3], [4]]), 1, torch.tensor([[9, 10, 11]]))  # (B, 1) x (1, n) -> (B, n)
    assert window.shape == (2, 3) and window[0, 1].item() == a[0].item() and window[1, 1].item() == a[1].item()
    many = token_uniform(torch.arange(20000), 0, 7)
    assert 0 < many.min() and many.max() < 1
    assert abs(many.mean().item() - 0.5) < 0.01


def test_inverse_cdf_picks_the_interval_of_u():
    x = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.0, 0.5]]))  # row 2: two zero-probability ids
    # CDFs: row 0 [0.1, 0.3, 0.6, 1.0]; row 1 [0.5, 0.5, 0.5, 1.0]
    cases = [(0.05, 0, 0), (0.15, 1, 0), (0.31, 2, 0), (0.49, 2, 0), (0.5, 2, 3), (0.61, 3, 3), (0.999999, 3, 3)]
    for u, row0, row1 in cases:
        got = inverse_cdf(x, torch.tensor([u, u], dtype=torch.float64))
        assert got.tolist() == [row0, row1], u


def test_reference_filter_logits_agrees(hf_jukebox):
    from transformers.models.jukebox.modeling_jukebox import filter_logits as ref_filter
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(0)) * 3
    for k, p in [(0, 0.0), (5, 0.0), (0, 0.9), (10, 0.5), (1, 0.0), (0, 1e-6)]:
        assert torch.equal(filter_logits(logits.clone(), k, p), ref_filter(logits, top_k=k, top_p=p))


def test_greedy_and_filters():
    logits = torch.tensor([[0.1, 3.0, 2.9, -1.0]])
    seeds = torch.tensor([1])
    assert sample(logits, SamplingParams(temperature=0.0), token_uniform(seeds, 0, 0)).item() == 1
    picks = {sample(logits, SamplingParams(1.0, top_k=2), token_uniform(torch.tensor([s]), 0, 0)).item() for s in range(200)}
    assert picks == {1, 2}
    picks = {sample(logits, SamplingParams(1.0, top_p=0.3), token_uniform(torch.tensor([s]), 0, 0)).item() for s in range(200)}
    assert picks == {1}


def test_draws_follow_the_softmax():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0])
    n = 20000
    tokens = sample(logits.expand(n, 4).clone(), SamplingParams(0.8), token_uniform(torch.arange(n), 0, 7))
    freq = torch.bincount(tokens, minlength=4).float() / n
    expected = torch.softmax(logits / 0.8, dim=0)
    assert (freq - expected).abs().max().item() < 4 * math.sqrt(0.25 / n)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature -1.0 is out of range"),
    (dict(temperature=float("nan")), "temperature nan is out of range"),
    (dict(temperature=2.5), "temperature 2.5 is out of range"),
    (dict(top_k=-3), "top_k -3 must be an integer >= 0"),
    (dict(top_p=2.0), r"top_p 2.0 must be in \[0, 1\]"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(InputError, match=message):
        SamplingParams(**kwargs)
