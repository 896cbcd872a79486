"""Generation in one process: one window, one level, a whole song, for batches whose rows are different songs.

A window primes the transformer with what the level already has in its span (chunked prefill into the static
KV cache) and then decodes the rest token by token. Each row has its own labels (artist, genres, lyrics),
timing and seed; the noise of every token is keyed by (seed, level, position), so a row's tokens do not depend
on the rows it is batched with.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from jukebox_dist.errors import InputError
from jukebox_dist.model.prior import Labels, PerRow, Prior, WindowConditioning, label_rows
from jukebox_dist.sampling.sampler import SamplingParams, sample, token_uniform
from jukebox_dist.sampling.windows import hop_length, level_tokens, upper_span, windows

log = logging.getLogger(__name__)

# progress(level, tokens done, tokens to do) after every sampled token batch
Progress = Callable[[int, int, int], None]
DEFAULT_TEMPERATURES = (0.98, 0.99, 0.99)  # top, middle, bottom (the original Jukebox's)


@dataclass(frozen=True)
class LevelSettings:
    params: SamplingParams
    max_batch_size: int = 16
    chunk_size: int = 128  # prefill chunk: bounds the attention scratch memory


@torch.no_grad()
def sample_window(prior: Prior, wc: WindowConditioning, known: Tensor, n_new: int, params: SamplingParams,
                  seeds: Tensor, first_index: PerRow | Tensor, *, chunk_size: int = 128,
                  on_token: Callable[[], None] | None = None) -> Tensor:
    """Sample `n_new` tokens after `known` (B, K), the tokens the window already has from its start, which is
    token `first_index` (one number, or one per row for rows from different places of their songs) of the song
    at this level. Returns (B, n_new).

    A lone row runs as two copies of itself: MKL multiplies one row by other kernels than several, whose last
    bits differ, while from two rows on a row's numbers do not depend on the batch. So a song's tokens are the
    same sampled alone (`jukebox-dist sample`) or in any batch (tests/sampling/test_generate.py)."""
    if known.shape[0] == 1:
        twice = replace(wc, **{f.name: _twice(getattr(wc, f.name)) for f in fields(wc)})
        return sample_window(prior, twice, known.repeat(2, 1), n_new, params, seeds.repeat(2), first_index,
                             chunk_size=chunk_size, on_token=on_token)[:1]
    batch, k = known.shape
    p, shift, level = prior.prefix_len, prior.vocab_shift, prior.cfg.level
    device = wc.prefix.device
    seq = torch.zeros(batch, p + k + n_new, dtype=torch.long, device=device)
    seq[:, :p] = wc.prefix
    seq[:, p:p + k] = known.to(device) + shift
    cache = prior.new_cache(batch)
    for pos in range(0, p + k, chunk_size):  # prefill: only the cache matters, not the outputs
        prior.prefill(seq, pos, min(chunk_size, p + k - pos), wc, cache)
    # Every token's uniform at once ((B, n_new): about 25 small integer ops, once per window, not per token).
    first_index = torch.as_tensor(first_index, dtype=torch.int64, device=device).view(-1, 1)
    positions = first_index + k + torch.arange(n_new, device=device)
    uniforms = token_uniform(seeds.to(device).view(-1, 1), level, positions).expand(batch, n_new)
    for i in range(n_new):
        j = p + k + i
        logits = prior.music_logits(prior.step(seq, j, wc, cache))  # (B, music_bins)
        seq[:, j] = sample(logits, params, uniforms[:, i]) + shift
        if on_token is not None:
            on_token()
    return seq[:, p + k:] - shift


@torch.no_grad()
def sample_batch(prior: Prior, labels: list[Tensor], known: Tensor, n_new: int, params: SamplingParams,
                 seeds: Tensor, *, total_length: PerRow, start: PerRow, upper: Tensor | None, chunk_size: int = 128,
                 on_token: Callable[[], None] | None = None) -> Tensor:
    """Condition and sample one window for rows that may be different songs: `labels` one row each, `known`
    (B, K) the tokens each window already has, `total_length` and `start` (the window's first token) one number
    or one per row, `upper` the level-above tokens of the window (upsamplers). Returns (B, n_new)."""
    wc = prior.condition(labels, total_length=total_length, start=start, upper=upper)
    return sample_window(prior, wc, known, n_new, params, seeds, start, chunk_size=chunk_size, on_token=on_token)


def _twice(t: Tensor | None) -> Tensor | None:
    """A one-row batch tensor repeated to two rows."""
    return None if t is None else t.repeat(2, *[1] * (t.dim() - 1))


@torch.no_grad()
def sample_level(prior: Prior, labels: Labels, tokens: Tensor, *, total_length: int, upper: Tensor | None,
                 settings: LevelSettings, seeds: Tensor, hop_fraction: float,
                 progress: Progress | None = None) -> Tensor:
    """Extend a level's tokens (B, have) to the whole song, window after window. `upper` is the complete level
    above (upsamplers only). Rows are split into sub-batches of at most `settings.max_batch_size`."""
    cfg = prior.cfg
    n_tokens = level_tokens(total_length, prior.raw_to_tokens)
    todo = n_tokens - tokens.shape[1]
    ratio = prior.conditioner_blocks.downsample if cfg.is_upsampler else 1
    rows = label_rows(labels)
    done = 0
    for window in windows(n_tokens, cfg.n_ctx, hop_length(hop_fraction, cfg.n_ctx)):
        have = tokens.shape[1]
        n_new = window.new_tokens(have)
        if n_new == 0:
            continue
        window_upper = None
        if upper is not None:
            lo, hi = upper_span(window, ratio)
            window_upper = upper[:, lo:hi]
        parts = []
        for b0 in range(0, tokens.shape[0], settings.max_batch_size):
            b1 = min(b0 + settings.max_batch_size, tokens.shape[0])
            count = [0]

            def tick() -> None:
                count[0] += 1
                if progress is not None and b1 == tokens.shape[0]:
                    progress(cfg.level, done + count[0], todo)

            parts.append(sample_batch(prior, rows[b0:b1], tokens[b0:b1, window.start:have], n_new, settings.params,
                                      seeds[b0:b1], total_length=total_length, start=window.start,
                                      upper=None if window_upper is None else window_upper[b0:b1],
                                      chunk_size=settings.chunk_size, on_token=tick))
        tokens = torch.cat([tokens, torch.cat(parts).to(tokens.device)], dim=1)
        done += n_new
    return tokens


def generate(model, labels: Sequence[Labels], codes: Sequence[Tensor], *, total_length: int,
             levels: Sequence[int], temperature: float | Sequence[float] = DEFAULT_TEMPERATURES, top_k: int = 0,
             top_p: float = 0.0, seeds: Sequence[int], max_batch_size: int = 16, chunk_size: int = 128,
             progress: Progress | None = None) -> list[Tensor]:
    """Sample `levels` (prior indices) of a batch of songs to `total_length` audio samples, continuing from
    `codes` (prior order; empty or partial levels are extended). Returns codes in prior order."""
    n_priors = len(model.priors)
    batch = len(seeds)
    temps = _per_level(temperature, n_priors)
    settings = {lvl: LevelSettings(SamplingParams(temps[lvl], top_k, top_p), max_batch_size, chunk_size)
                for lvl in levels}  # validates every setting before any sampling starts
    check_length(model, total_length)
    labels = [_batch_labels(lab, batch, i) for i, lab in enumerate(labels)]
    codes = [_batch_codes(c, batch, i) for i, c in enumerate(codes)]
    seed_t = torch.tensor(list(seeds), dtype=torch.int64)
    for lvl in sorted(levels):
        prior = model.priors[lvl]
        need = level_tokens(total_length, prior.raw_to_tokens)
        if codes[lvl].shape[1] > need:
            raise InputError(f"level {lvl} already has {codes[lvl].shape[1]} tokens, more than the {need} of a "
                             f"song of {total_length} samples")
        upper = None
        if lvl > 0:
            upper = codes[lvl - 1]
            need_upper = level_tokens(total_length, model.priors[lvl - 1].raw_to_tokens)
            if upper.shape[1] < need_upper:
                raise InputError(f"level {lvl} is conditioned on level {lvl - 1}, which has {upper.shape[1]} of its "
                                 f"{need_upper} tokens: sample or pass the level above first")
        log.info("level %d: %d -> %d tokens for %d samples", lvl, codes[lvl].shape[1], need, batch)
        codes[lvl] = sample_level(prior, labels[lvl], codes[lvl], total_length=total_length, upper=upper,
                                  settings=settings[lvl], seeds=seed_t,
                                  hop_fraction=model.config.vqvae.hop_fraction[lvl], progress=progress)
    return codes


def check_length(model, total_length: int) -> None:
    """A song must be a whole number of top tokens, within the range the timing embeddings cover."""
    cfg = model.config
    hop = cfg.raw_to_tokens(0)
    sr = cfg.sampling_rate
    lo, hi = max(hop, int(cfg.min_duration * sr)), cfg.max_duration * sr
    if isinstance(total_length, bool) or not isinstance(total_length, int) or total_length % hop:
        raise InputError(f"total_length {total_length!r} must be a whole number of top-level tokens "
                         f"(a multiple of {hop} samples)")
    if not lo <= total_length < hi:
        raise InputError(f"a song of {total_length} samples ({total_length / sr:.3f} s) is outside what this model "
                         f"supports: at least {lo} samples ({lo / sr:.3f} s, one top token or min_duration) and "
                         f"under {hi / sr:g} s (max_duration)")


def _per_level(value: float | Sequence[float], n: int) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * n
    values = list(value)
    if len(values) != n:
        raise InputError(f"temperature has {len(values)} values; expected one number or one per level ({n})")
    return values


def _batch_labels(labels: Labels, batch: int, prior: int) -> list[Tensor]:
    rows = label_rows(labels)
    if len(rows) == 1 and batch > 1:
        rows = rows * batch
    if len(rows) != batch:
        raise InputError(f"labels for prior {prior} have {len(rows)} rows; expected 1 or {batch} (one per sample)")
    return rows


def _batch_codes(codes: Tensor | None, batch: int, prior: int) -> Tensor:
    if codes is None or codes.numel() == 0:
        return torch.zeros(batch, 0, dtype=torch.long)
    if codes.dim() != 2:
        raise InputError(f"codes for prior {prior} must be (samples, tokens); got {tuple(codes.shape)}")
    if codes.shape[0] == 1 and batch > 1:
        codes = codes.expand(batch, -1)
    if codes.shape[0] != batch:
        raise InputError(f"codes for prior {prior} have {codes.shape[0]} rows; expected {batch}")
    return codes.long().cpu()


def seeds_for(seed: int | Sequence[int], n_samples: int) -> list[int]:
    """One seed per sample: `seed, seed+1, ...` for one number, or the list as given."""
    if isinstance(seed, int) and not isinstance(seed, bool):
        return [seed + i for i in range(n_samples)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n_samples:
        raise InputError(f"{len(seeds)} seeds for {n_samples} samples; expected one seed or one per sample")
    return seeds


def prime_codes(model, audio: Tensor, total_length: int) -> list[Tensor]:
    """The codes of a prime (B, T, 1) at every level, in prior order, cut to whole top tokens. (The reference
    passes them finest first into prior-order slots: notes section 1.)"""
    hop = model.config.raw_to_tokens(0)
    if audio.dim() != 3 or audio.shape[-1] != 1:
        raise InputError(f"prime audio must be (batch, samples, 1); got {tuple(audio.shape)}")
    usable = min(audio.shape[1], total_length) // hop * hop
    if usable == 0:
        raise InputError(f"the prime has {audio.shape[1]} samples: it needs at least one top token ({hop} samples)")
    codes = model.vqvae.encode(audio[:, :usable])  # finest first
    return [c.long().cpu() for c in reversed(codes)]
