"""Parity with the reference (transformers==4.40.2 JukeboxModel): tiny models of both top-prior styles, built
and seeded with the reference, saved with save_pretrained (safetensors and pytorch_model.bin), loaded by us.

Tolerances: codes identical; decoded audio within 1e-5 (max abs); prior logits within 1e-4 (max abs).
"""
from __future__ import annotations

import math

import pytest
import torch

from jukebox_dist.model.config import tiny_config
from jukebox_dist.model.jukebox import Jukebox
from tests.model.reference import build_reference, reference_logits, save_reference

STYLES = ["merged", "separate"]  # 1b-style merged lyrics, 5b-style separate lyric encoder


@pytest.fixture(scope="module", params=[(s, safe) for s in STYLES for safe in (True, False)],
                ids=lambda p: f"{p[0]}-{'safetensors' if p[1] else 'bin'}")
def pair(request, hf_jukebox, tmp_path_factory):
    style, safe = request.param
    cfg = tiny_config(style)
    ref = build_reference(cfg, seed=11)
    folder = save_reference(ref, tmp_path_factory.mktemp(f"{style}-{safe}"), safe)
    expected = "model.safetensors" if safe else "pytorch_model.bin"
    assert (folder / expected).is_file()
    return cfg, ref, Jukebox.from_pretrained(folder)


def _labels(cfg, prior: int, lyrics: list[int]) -> torch.Tensor:
    """Batch 2: different artists and genres per row, the same lyrics (the reference uses row 0's lyrics for
    every row, so only identical lyrics are comparable; per-row lyrics are tested on their own below)."""
    g = cfg.max_nb_genres
    rows = [[0, 0, 0, 17, 3, 5][: 4 + g], [0, 0, 0, 4000, 101, -1][: 4 + g]]
    extra = lyrics if prior == 0 else []
    return torch.tensor([r + [-1] * (4 + g - len(r)) + extra for r in rows])


def _audio(n: int) -> torch.Tensor:
    t = torch.arange(n) / 44100
    a = 0.6 * torch.sin(2 * math.pi * 330 * t) * torch.sin(2 * math.pi * 3 * t)
    b = 0.3 * torch.sin(2 * math.pi * 97 * t) + 0.05 * torch.randn(n, generator=torch.Generator().manual_seed(5))
    return torch.stack([a, b]).unsqueeze(-1)  # (2, n, 1)


def test_vqvae_codes_and_audio(pair):
    cfg, ref, ours = pair
    audio = _audio(128 * 40)
    with torch.no_grad():
        ref_codes = ref.vqvae.encode(audio)
    codes = ours.vqvae.encode(audio)
    for level, (a, b) in enumerate(zip(ref_codes, codes)):
        assert torch.equal(a, b), f"level {level} codes differ"
        assert a.unique().numel() > 4, "codes are trivially constant: the test would prove nothing"
        with torch.no_grad():
            ref_audio = ref.vqvae.decode([a], start_level=level)
        ours_audio = ours.vqvae.decode([b], start_level=level)
        assert ours_audio.shape == (2, 128 * 40, 1)
        assert (ref_audio - ours_audio).abs().max().item() <= 1e-5


@pytest.mark.parametrize("prior", [0, 1, 2])
@pytest.mark.parametrize("start", [0, 24])
def test_prior_logits(pair, prior, start):
    cfg, ref, ours = pair
    gen = torch.Generator().manual_seed(prior * 10 + start)
    p = cfg.priors[prior]
    tokens = torch.randint(0, p.music_vocab_size, (2, p.n_ctx), generator=gen)
    upper = torch.randint(0, p.music_vocab_size, (2, p.n_ctx // 4), generator=gen) if prior else None
    lyrics = torch.randint(1, 79, (50,), generator=gen).tolist()
    labels = _labels(cfg, prior, lyrics)
    total = 128 * 200  # a song of 200 top tokens; the window starts at `start` tokens of this level
    with torch.no_grad():
        expected = reference_logits(ref.priors[prior], tokens, labels, total, start=start, upper=upper)
        got = ours.priors[prior].logits(tokens, labels, total_length=total, start=start, upper=upper)
    assert got.shape == (2, p.n_ctx, p.music_vocab_size)
    assert expected.abs().max() > 0.05, "logits too small for the comparison to mean anything"
    assert (got - expected).abs().max().item() <= 1e-4
    assert not torch.allclose(got[0], got[1], atol=1e-3), "rows with different labels should score differently"


def test_each_row_uses_its_own_lyrics(pair):
    """The reference conditions every row on row 0's lyrics (notes section 7); each of our rows uses its own.
    Checked two ways: batch rows equal the same rows run alone, and a lone row equals the reference at batch 1."""
    cfg, ref, ours = pair
    gen = torch.Generator().manual_seed(9)
    p = cfg.priors[0]
    tokens = torch.randint(0, p.music_vocab_size, (2, p.n_ctx), generator=gen)
    lyr_a = torch.randint(1, 79, (60,), generator=gen).tolist()
    lyr_b = torch.randint(1, 79, (23,), generator=gen).tolist()  # shorter than the window: left-padded
    head = [0, 0, 0, 17] + [3] + [-1] * (cfg.max_nb_genres - 1)
    rows = [torch.tensor(head + lyr_a), torch.tensor(head + lyr_b)]
    total = 128 * 100
    with torch.no_grad():
        both = ours.priors[0].logits(tokens, rows, total_length=total, start=16)
        for i, row in enumerate(rows):
            alone = ours.priors[0].logits(tokens[i:i + 1], row[None], total_length=total, start=16)
            assert (both[i] - alone[0]).abs().max().item() <= 1e-5
            expected = reference_logits(ref.priors[0], tokens[i:i + 1], row[None], total, start=16)
            assert (alone - expected).abs().max().item() <= 1e-4
    assert not torch.allclose(both[0], both[1], atol=1e-4), "different lyrics must change the scores"
