"""Cached decoding equals teacher forcing: token by token, and chunked prefill of any chunk size, for every
attention pattern the released priors use (block, transpose-block, previous-block, dense, prime, cross).
Tolerance: 1e-5 max abs on the logits."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from jukebox_dist.model.config import AttentionKind, tiny_config
from jukebox_dist.model.jukebox import Jukebox
from jukebox_dist.model.prior import Prior

TOL = 1e-5


def _dense_merged_prior() -> Prior:
    """The merged top prior with 48 layers: enc_dec_with_lyrics puts prime at 15 and 31 and dense at 47."""
    cfg = replace(tiny_config("merged").priors[0], num_layers=48)
    assert AttentionKind.DENSE in cfg.layer_kinds()
    model = Jukebox.random(replace(tiny_config("merged"), priors=(cfg, *tiny_config("merged").priors[1:])), seed=4)
    return model.priors[0]


PRIORS = {
    "merged-top": lambda: Jukebox.random(tiny_config("merged"), seed=1).priors[0],
    "merged-top-dense": _dense_merged_prior,
    "separate-top": lambda: Jukebox.random(tiny_config("separate"), seed=2).priors[0],
    "middle": lambda: Jukebox.random(tiny_config("merged"), seed=3).priors[1],
    "bottom": lambda: Jukebox.random(tiny_config("separate"), seed=5).priors[2],
}


def _inputs(prior: Prior, batch: int, length: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    cfg = prior.cfg
    tokens = torch.randint(0, cfg.music_vocab_size, (batch, length), generator=gen)
    head = [[0, 0, 0, 11 + i] + [i + 2] + [-1] * (cfg.max_nb_genres - 1) for i in range(batch)]
    lyrics = torch.randint(1, 79, (40,), generator=gen).tolist() if cfg.has_lyrics else []
    labels = torch.tensor([h + lyrics for h in head])
    upper = None
    if cfg.is_upsampler:
        upper = torch.randint(0, cfg.music_vocab_size, (batch, cfg.n_ctx // 4), generator=gen)
    return tokens, labels, upper


@pytest.mark.parametrize("name", list(PRIORS))
@pytest.mark.parametrize("chunk", [1, 3, 7, 10_000])
def test_cached_decoding_matches_teacher_forcing(name, chunk):
    prior = PRIORS[name]()
    kinds = set(prior.cfg.layer_kinds())
    n = prior.cfg.n_ctx
    tokens, labels, upper = _inputs(prior, 2, n, seed=chunk)
    with torch.no_grad():
        expected = prior.logits(tokens, labels, total_length=128 * 300, start=32, upper=upper)
        wc = prior.condition(labels, total_length=128 * 300, start=32, upper=upper)
        seq = prior.sequence(tokens, wc)
        cache = prior.new_cache(2)
        outs, pos = [], 0
        while pos < seq.shape[1]:
            c = min(chunk, seq.shape[1] - pos)
            outs.append(prior.run(seq, pos, c, wc, cache))
            pos += c
        got = prior.music_logits(torch.cat(outs, dim=1)[:, prior.prefix_len:])
    assert (got - expected).abs().max().item() <= TOL, f"{name} chunk {chunk} kinds {kinds}"


@pytest.mark.parametrize("name", list(PRIORS))
@pytest.mark.parametrize("chunk, known", [(3, 5), (10_000, None)])
def test_prefill_and_steps_are_exactly_run(name, chunk, known):
    """`Prior.prefill` skips the last layer's attention output and MLP, and `Prior.step` is the 2-D decoding path:
    every layer's cache must equal the one `run` leaves, and every following step's scores must equal `run`'s
    for that position, exactly."""
    prior = PRIORS[name]()
    tokens, labels, upper = _inputs(prior, 2, prior.cfg.n_ctx, seed=chunk)
    with torch.no_grad():
        wc = prior.condition(labels, total_length=128 * 300, start=32, upper=upper)
        seq = prior.sequence(tokens, wc)
        known = seq.shape[1] // 2 if known is None else prior.prefix_len + known
        caches = prior.new_cache(2), prior.new_cache(2)
        for pos in range(0, known, chunk):
            c = min(chunk, known - pos)
            prior.run(seq, pos, c, wc, caches[0])
            prior.prefill(seq, pos, c, wc, caches[1])
        for i, (ran, filled) in enumerate(zip(*caches)):
            assert torch.equal(ran.k, filled.k) and torch.equal(ran.v, filled.v), f"{name} layer {i}"
        for j in range(known, seq.shape[1]):
            ran = prior.music_logits(prior.run(seq, j, 1, wc, caches[0]))[:, 0]
            stepped = prior.music_logits(prior.step(seq, j, wc, caches[1]))
            assert torch.equal(ran, stepped), f"{name} position {j}"


def test_every_pattern_is_covered():
    kinds = set()
    for make in PRIORS.values():
        kinds |= set(make().cfg.layer_kinds())
    assert kinds == set(AttentionKind)


def test_partial_window_prefix_is_causal():
    """Scores of the first T tokens don't depend on the tokens after them (what windowed sampling relies on)."""
    prior = PRIORS["separate-top"]()
    tokens, labels, _ = _inputs(prior, 1, prior.cfg.n_ctx, seed=0)
    changed = tokens.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % prior.cfg.music_vocab_size
    with torch.no_grad():
        a = prior.logits(tokens, labels, total_length=128 * 100)
        b = prior.logits(changed, labels, total_length=128 * 100)
        c = prior.logits(tokens[:, :20], labels, total_length=128 * 100)
    assert torch.equal(a[:, :21], b[:, :21])
    assert not torch.allclose(a[:, 21:], b[:, 21:])
    assert (a[:, :20] - c).abs().max().item() <= TOL
