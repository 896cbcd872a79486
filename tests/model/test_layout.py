"""The input-major CPU weight layout changes strides only: same values, same outputs bit for bit, contiguous
checkpoints, tied embeddings left alone, and undone for tensor-parallel sharding."""
from __future__ import annotations

import torch
from torch import nn

from jukebox_dist.model import Jukebox
from jukebox_dist.model.layout import use_contiguous_weights, use_input_major_weights
from jukebox_dist.sampling.generate import sample_window
from jukebox_dist.sampling.sampler import SamplingParams


def test_linear_outputs_are_identical_and_storage_is_input_major():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 48), nn.Linear(48, 64))
    x = torch.randn(16, 5, 64)
    before = net(x)
    assert use_input_major_weights(net) == 2
    w = net[0].weight
    assert w.shape == (48, 64) and w.stride() == (1, 48) and w.t().is_contiguous()
    assert torch.equal(net(x), before)
    assert use_input_major_weights(net) == 0  # already done
    use_contiguous_weights(net)
    assert all(p.is_contiguous() for p in net.parameters()) and torch.equal(net(x), before)


def test_tied_output_head_stays_row_major():
    emb = nn.Embedding(10, 8)
    head = nn.Linear(8, 10, bias=False)
    head.weight = emb.weight
    net = nn.ModuleDict({"emb": emb, "head": head, "other": nn.Linear(8, 8)})
    assert use_input_major_weights(net) == 1 and emb.weight.is_contiguous()


def test_loaded_priors_sample_the_same_tokens_as_row_major_ones(tmp_path):
    """from_pretrained (CPU) uses the layout; a model built with Jukebox.random keeps row-major weights: both give
    the same logits bit for bit and the same sampled tokens; the saved checkpoint is contiguous and loads back."""
    row_major = Jukebox.random(Jukebox.from_pretrained("tiny5b").config, seed=0)
    loaded = Jukebox.from_pretrained("tiny5b")
    q = loaded.priors[1].prior.transformer._attn_mods[0].attn.q_proj.weight
    assert not q.is_contiguous() and q.t().is_contiguous()
    assert all(p.is_contiguous() for p in row_major.parameters())
    labels = torch.randint(0, 3, (16, 4 + row_major.config.max_nb_genres + 20))
    labels[:, 4:] = 0
    for level in range(3):
        a, b = row_major.priors[level], loaded.priors[level]
        n_ctx = a.cfg.n_ctx
        up = None if level == 0 else torch.randint(0, a.cfg.music_vocab_size, (16, n_ctx // 4))
        tokens = torch.randint(0, a.cfg.music_vocab_size, (16, n_ctx // 2))
        total = n_ctx * a.raw_to_tokens * 2
        with torch.no_grad():
            assert torch.equal(a.logits(tokens, labels, total_length=total, upper=up),
                               b.logits(tokens, labels, total_length=total, upper=up)), level
            outs = []
            for prior in (a, b):
                wc = prior.condition(labels, total_length=total, upper=up)
                outs.append(sample_window(prior, wc, tokens[:, :5], 12, SamplingParams(1.0), torch.arange(16), 0))
        assert torch.equal(*outs), level
    loaded.save_pretrained(tmp_path / "m")
    again = Jukebox.from_pretrained(tmp_path / "m")
    for (name, p), (_, r) in zip(again.named_parameters(), row_major.named_parameters()):
        assert torch.equal(p, r), name
