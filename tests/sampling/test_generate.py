"""Windowed sampling of whole songs: greedy parity with the reference, reproducibility from seeds, and the
primed / continue / upsample modes keeping what they are given."""
from __future__ import annotations

import pytest
import torch

from jukebox_dist.errors import InputError
from jukebox_dist.model import Jukebox, JukeboxTokenizer, tiny_config
from jukebox_dist.sampling import generate as gen
from jukebox_dist.sampling.windows import hop_length, upper_span, windows
from tests.model.reference import build_reference, reference_sample_levels, reference_sample_window, save_reference

LYRICS = "Down the old road where the river bends\nwe sing it again"


@pytest.fixture(scope="module")
def pair(hf_jukebox, tmp_path_factory):
    """A 5b-style tiny model built by the reference, and ours loaded from its save_pretrained folder."""
    ref = build_reference(tiny_config("separate"), seed=21)
    folder = save_reference(ref, tmp_path_factory.mktemp("tiny5b"), safe=True)
    return ref, Jukebox.from_pretrained(folder)


def _labels(n_rows: int = 2):
    """Different artists and genres per row; the same lyrics (the reference uses row 0's lyrics for all rows)."""
    tok = JukeboxTokenizer.from_pretrained("tiny5b")
    a = tok("Alan Jackson", ["country"], LYRICS)["input_ids"]
    b = tok("The Beatles", ["rock", "pop"], LYRICS)["input_ids"]
    return [torch.cat([a[p], b[p]])[:n_rows] for p in range(3)]


def test_greedy_parity_every_level_one_window(pair):
    ref, ours = pair
    labels = _labels()
    total = 4096  # exactly one window at every level: 32 top, 128 middle, 512 bottom tokens
    expected = reference_sample_levels(ref, labels, [torch.zeros(2, 0, dtype=torch.long)] * 3, total, [0, 1, 2])
    got = ours.ancestral_sample(labels, n_samples=2, total_length=total, temperature=0.0, seed=0)
    for level in range(3):
        assert got[level].shape == expected[level].shape == (2, total // (128, 32, 8)[level])
        assert torch.equal(got[level], expected[level].long()), f"level {level} differs"
    assert got[2].unique().numel() > 3, "greedy codes should vary, or the comparison proves little"


def test_greedy_parity_top_level_over_many_windows(pair):
    ref, ours = pair
    labels = _labels()
    total = 128 * 80  # 80 top tokens: 13 windows of 32 with hops of 4
    assert len(windows(80, 32, hop_length(0.125, 32))) == 13
    expected = reference_sample_levels(ref, labels, [torch.zeros(2, 0, dtype=torch.long)] * 3, total, [0])
    got = ours.ancestral_sample(labels, n_samples=2, total_length=total, temperature=0.0, levels=[0])
    assert torch.equal(got[0], expected[0].long())
    assert got[1].shape == got[2].shape == (2, 0)


def test_upsampler_windows_see_exactly_their_span(pair):
    """The reference's multi-window upsampling conditions every window on the whole level above (notes 10.1).
    Ours: each window equals the reference's single-window sampling given exactly its span of the level above."""
    ref, ours = pair
    labels = _labels()
    total = 128 * 96  # middle: 384 tokens = windows [0,128) [64,192) ... [256,384)
    top = torch.randint(0, 64, (2, 96), generator=torch.Generator().manual_seed(1))
    got = ours.upsample([top], labels, total_length=total, temperature=0.0, levels=[1])
    middle = got[1]
    assert torch.equal(got[0], top)
    spans = windows(384, 128, 64)
    assert len(spans) == 5
    for w in spans:
        lo, hi = upper_span(w, 4)
        have = w.start + (64 if w.start else 0)  # the first window samples all 128; later ones prime 64
        known = middle[:, w.start:have]
        expected = reference_sample_window(ref, 1, labels[1], known, top[:, lo:hi], w.start, total)
        assert torch.equal(middle[:, have:w.end], expected.long()), f"window {w}"


def test_reproducible_whatever_the_batch():
    model = Jukebox.from_pretrained("tiny", seed=5)
    tok = JukeboxTokenizer.from_pretrained("tiny")
    rows = [tok(a, g, LYRICS)["input_ids"] for a, g in
            [("Alan Jackson", ["country"]), ("Celine Dion", ["pop"]), ("Zac Brown Band", ["country", "rock"])]]
    stack = lambda idx: [torch.cat([rows[i][p] for i in idx]) for p in range(3)]  # noqa: E731
    total = 128 * 40  # several windows at every level
    kw = dict(total_length=total, temperature=0.9, top_k=20)
    together = model.ancestral_sample(stack([0, 1, 2]), 3, seed=[7, 8, 9], **kw)
    reordered = model.ancestral_sample(stack([2, 0, 1]), 3, seed=[9, 7, 8], **kw)
    alone = model.ancestral_sample(stack([1]), 1, seed=[8], **kw)
    split = model.ancestral_sample(stack([0, 1, 2]), 3, seed=[7, 8, 9], max_batch_size=2, **kw)
    other_company = model.ancestral_sample(stack([1, 1]), 2, seed=[8, 123], **kw)
    for level in range(3):
        assert torch.equal(together[level][[2, 0, 1]], reordered[level])
        assert torch.equal(together[level][1:2], alone[level])
        assert torch.equal(together[level], split[level])
        assert torch.equal(together[level][1], other_company[level][0])
        assert not torch.equal(other_company[level][0], other_company[level][1]), "other seed, other song"


def test_a_lone_row_computes_exactly_what_it_computes_in_a_batch(monkeypatch):
    """Tokens alone cannot show it (a last-bit difference flips a draw only rarely), so compare every score the
    sampler sees: one row alone and the same row inside a batch of 3 must give bit-identical logits at every
    level and step. (MKL and oneDNN take other kernels for a single row; sample_batch runs it as two copies.)"""
    model = Jukebox.from_pretrained("tiny", seed=5)
    tok = JukeboxTokenizer.from_pretrained("tiny")
    rows = [tok(a, g, LYRICS)["input_ids"] for a, g in
            [("Alan Jackson", ["country"]), ("Celine Dion", ["pop"]), ("Zac Brown Band", ["country", "rock"])]]
    seen: list[torch.Tensor] = []
    for prior in model.priors:
        logits = prior.music_logits
        monkeypatch.setattr(prior, "music_logits", lambda h, f=logits: seen.append(f(h)) or seen[-1])
    kw = dict(total_length=128 * 24, temperature=0.9)
    batch = model.ancestral_sample([torch.cat([r[p] for r in rows]) for p in range(3)], 3, seed=[7, 8, 9], **kw)
    in_batch, seen[:] = list(seen), []
    alone = model.ancestral_sample([rows[1][p] for p in range(3)], 1, seed=[8], **kw)
    assert len(seen) == len(in_batch) > 0
    for a, b in zip(seen, in_batch):
        assert torch.equal(a[0], b[1])
    for level in range(3):
        assert torch.equal(alone[level][0], batch[level][1])


def test_primed_continue_and_upsample_keep_what_they_are_given():
    model = Jukebox.from_pretrained("tiny", seed=2)
    labels = JukeboxTokenizer.from_pretrained("tiny")("Alan Jackson", ["country"], LYRICS)["input_ids"]
    total = 128 * 48
    t = torch.arange(128 * 20) / 44100
    prime = (0.5 * torch.sin(2 * torch.pi * 220 * t)).view(1, -1, 1)
    primed = model.primed_sample(prime, labels, total_length=total, seed=1)
    prime_codes = model.vqvae.encode(prime)[::-1]
    for level in range(3):
        n = prime_codes[level].shape[1]
        assert primed[level].shape[1] == total // (128, 32, 8)[level]
        assert torch.equal(primed[level][:, :n], prime_codes[level]), "priming codes come back unchanged"

    short = model.ancestral_sample(labels, total_length=128 * 16, seed=4)
    longer = model.continue_sample(short, labels, total_length=128 * 40, seed=4)
    for level in range(3):
        assert torch.equal(longer[level][:, :short[level].shape[1]], short[level])
        assert longer[level].shape[1] == 128 * 40 // (128, 32, 8)[level]

    top_only = model.ancestral_sample(labels, total_length=total, seed=3, levels=[0])
    up = model.upsample(top_only, labels, seed=3)
    assert torch.equal(up[0], top_only[0])
    assert [c.shape[1] for c in up] == [48, 192, 768]
    assert model.decode(up).shape == (1, total, 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(total_length=(441000 // 128 + 1) * 128), r"outside what this model supports.*under 10 s"),
    (dict(total_length=0), r"outside what this model supports: at least 128 samples"),
    (dict(total_length=1000), r"must be a whole number of top-level tokens \(a multiple of 128 samples\)"),
    (dict(total_length=1280, temperature=3.0), r"temperature 3.0 is out of range"),
    (dict(total_length=1280, temperature=-0.1), r"temperature -0.1 is out of range"),
    (dict(total_length=1280, temperature=[0.9, 0.9]), r"temperature has 2 values; expected one number or one per level"),
    (dict(total_length=1280, top_p=1.5), r"top_p 1.5 must be in \[0, 1\]"),
    (dict(total_length=1280, levels=[3]), r"levels \[3\] out of range"),
    (dict(total_length=1280, seed=[1, 2]), r"2 seeds for 1 samples"),
])
def test_bad_input_is_rejected_before_sampling(kwargs, message, monkeypatch):
    model = Jukebox.from_pretrained("tiny")
    labels = JukeboxTokenizer.from_pretrained("tiny")("Alan Jackson", ["country"], "")["input_ids"]
    monkeypatch.setattr(gen, "sample_window", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InputError, match=message):
        model.ancestral_sample(labels, **kwargs)


def test_upsample_needs_complete_top_codes():
    model = Jukebox.from_pretrained("tiny")
    labels = JukeboxTokenizer.from_pretrained("tiny")("Alan Jackson", ["country"], "")["input_ids"]
    with pytest.raises(InputError, match=r"level 1 is conditioned on level 0, which has 10 of its 20 tokens"):
        model.upsample([torch.zeros(1, 10, dtype=torch.long)], labels, total_length=128 * 20)
