"""Build tiny reference models (transformers==4.40.2 JukeboxModel) with seeded weights, saved the way users
get them (save_pretrained), for the parity tests. Test-only: the package never imports transformers."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from jukebox_dist.model.config import JukeboxConfig


def build_reference(config: JukeboxConfig, seed: int = 0):
    """A reference JukeboxModel for `config`, every parameter and codebook set from `seed`.
    The reference never initialises properly on its own (notes section 10.9)."""
    from transformers import JukeboxConfig as HFConfig, JukeboxModel

    hf = HFConfig(**{k: v for k, v in config.to_hf_dict().items() if k != "model_type"})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = JukeboxModel(hf).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("pos_emb.pos_emb"):
                # Strong positional embeddings keep greedy decoding of a random model from collapsing into
                # one repeated token, so greedy parity compares varied codes.
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif name.startswith("vqvae") or ("conditioner_blocks.upsampler" in name):
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(1, p[0].numel())))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen) * (5.0 if "emb" in name else 1.0))
        # Codebooks from encoded noise so that codes are varied (reference training init does the same).
        n = config.vqvae.nb_discrete_codes * config.vqvae.hop_lengths[-1] // 2
        t = torch.arange(n) / config.sampling_rate
        audio = (0.5 * torch.sin(2 * math.pi * torch.tensor([[110.0], [440.0], [220.0], [880.0]]) * t)
                 + 0.1 * torch.randn(4, n, generator=gen)).unsqueeze(1)
        for level, block in enumerate(model.vqvae.bottleneck.level_blocks):
            z = model.vqvae.encoders[level](audio)[-1]
            flat = z.permute(0, 2, 1).reshape(-1, z.shape[1])
            block.codebook.copy_(flat[torch.randperm(flat.shape[0], generator=gen)[: block.codebook.shape[0]]])
    return model


def save_reference(model, folder: Path, safe: bool) -> Path:
    """save_pretrained as users do. Safetensors trips on the tied output heads (notes 10.12): declare them tied,
    so only embed_tokens is written, as HF does for its own tied models."""
    if safe:
        tied = [f"priors.{i}.prior.fc_proj_out.weight" for i, p in enumerate(model.priors)
                if p.prior.fc_proj_out.weight is p.prior.embed_tokens.weight]
        model._tied_weights_keys = tied
    model.save_pretrained(folder, safe_serialization=safe)
    return folder


def reference_logits(prior, tokens, labels, total_length, start=0, upper=None):
    """Teacher-forced scores over music tokens from the reference's own modules. Its forward_tokens raises for
    priors without lyrics and for the separate-encoder prior at batch > 1 (notes 10.2), so this calls the
    pieces it is made of, in its order."""
    metadata = prior.get_metadata(labels, start, total_length, 0)
    conds = None if upper is None else [upper]
    audio_cond, meta_cond, lyric_tokens = prior.get_cond(conds, metadata)
    if prior.is_encoder_decoder:
        seq, audio_cond = prior.prior_preprocess([lyric_tokens, tokens], [None, audio_cond])
        _, preds = prior.prior(seq, audio_cond, meta_cond, get_sep_loss=True, get_preds=True)
        return preds[:, prior.nb_relevant_lyric_tokens:, prior.config.lyric_vocab_size:]
    enc = prior.get_encoder_states(lyric_tokens) if prior.nb_relevant_lyric_tokens else None
    _, preds = prior.prior(tokens, audio_cond, meta_cond, enc, get_preds=True)
    return preds


VANISHING_TEMPERATURE = 1e-8  # logits / 1e-8: softmax puts all mass on the argmax, so the reference samples greedily


def reference_sample_levels(ref, labels, codes, total_length, levels, chunk_size=8):
    """The reference's own level loop (JukeboxModel.sample_level) at a vanishing temperature for every level
    (its `_sample` forces 0.99 on the bottom level). `codes` in prior order; returns them extended."""
    ref.total_length = total_length
    codes = list(codes)
    for level in levels:
        prior = ref.priors[level]
        kwargs = {"temp": VANISHING_TEMPERATURE, "chunk_size": chunk_size, "sample_tokens": None}
        hop = int(ref.config.hop_fraction[level] * prior.n_ctx)
        with torch.no_grad():
            codes = ref.sample_level(codes, labels[level], 0, kwargs, level, total_length // prior.raw_to_tokens,
                                     hop, 16)
    return codes


def reference_sample_window(ref, level, labels, known, upper, start, total_length, chunk_size=8):
    """One window of the reference's prior.sample, conditioned on exactly the given `upper` span."""
    prior = ref.priors[level]
    metadata = prior.get_metadata(labels, start, total_length, 0)
    with torch.no_grad():
        out = prior.sample(known.shape[0], music_tokens=known, music_tokens_conds=[upper], metadata=metadata,
                           temp=VANISHING_TEMPERATURE, chunk_size=chunk_size, sample_tokens=prior.n_ctx)
    return out[:, known.shape[1]:]
