"""Parity of our VQ-VAE with transformers 4.40.2's JukeboxVQVAE, plus the input checks.

The reference never initialises its weights (notes 10.9: codebooks are zeros), so each reference model here gets
every parameter drawn from a seeded generator and codebooks drawn from its own encoder outputs, which makes the
codes varied. It is saved with `save_pretrained` and our model reads the safetensors file with a strict load.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from jukebox_dist.errors import InputError
from jukebox_dist.model.config import VQVAEConfig
from jukebox_dist.model.vqvae import VQVAE, DecoderConvBlock, Resnet1D

transformers = pytest.importorskip("transformers")

SMALL = dict(nb_discrete_codes=64, embed_dim=16, res_conv_width=8, res_conv_depth=2, multipliers=(1, 1, 1),
             res_downs_t=(3, 2, 2), res_strides_t=(2, 2, 2))
CONFIGS = {
    "plain": SMALL,
    "cycle_scaled": {**SMALL, "multipliers": (2, 1, 1), "res_dilation_cycle": 2, "conv_res_scale": True,
                     "res_dilation_growth_rate": 2, "res_convolution_multiplier": 2},
}
SR = 44100


def _audio(batch: int, length: int, seed: int) -> torch.Tensor:
    """Varied test audio (B, T, 1): sines, a chirp and noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32) / SR
    rows = []
    for b in range(batch):
        f1, f2 = 110.0 * (b + 2), 1500.0 + 400.0 * b
        x = 0.5 * torch.sin(2 * math.pi * f1 * t) + 0.2 * torch.sin(2 * math.pi * (f2 + 2e5 * t) * t)
        x = x + 0.1 * (b + 1) * torch.randn(length, generator=g)
        rows.append(x)
    return torch.stack(rows)[:, :, None]


def _init_reference(ref: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel() if isinstance(ref.get_submodule(name.rsplit(".", 1)[0]), torch.nn.Conv1d) \
                    else p.shape[0] * p.shape[2] // 2
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        # Codebooks: encoder outputs of other audio plus a little noise, so that codes spread over the codebook.
        calib = _audio(2, 4096, seed + 1).permute(0, 2, 1)
        for level, block in enumerate(ref.bottleneck.level_blocks):
            latents = ref.encoders[level](calib)[-1].permute(0, 2, 1).reshape(-1, ref.config.embed_dim)
            idx = torch.randint(0, latents.shape[0], (ref.config.nb_discrete_codes,), generator=g)
            block.codebook.copy_(latents[idx] + 0.05 * latents.std() * torch.randn(block.codebook.shape, generator=g))


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    kwargs = CONFIGS[request.param]
    ref = transformers.JukeboxVQVAE(transformers.JukeboxVQVAEConfig(
        **{k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()})).eval()
    _init_reference(ref, seed=sorted(CONFIGS).index(request.param))
    folder: Path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(folder)
    ours = VQVAE(VQVAEConfig(**kwargs)).eval()
    ours.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    return ref, ours


@pytest.fixture(scope="module")
def tiny() -> VQVAE:
    return VQVAE(VQVAEConfig(**SMALL)).eval()


def test_hop_lengths(tiny: VQVAE) -> None:
    assert tiny.hop_lengths == (8, 32, 128)


def test_codes_match_reference(pair: tuple) -> None:
    ref, ours = pair
    audio = _audio(2, 2048, seed=7)
    with torch.no_grad():
        expected = ref.encode(audio)
    got = ours.encode(audio)
    assert len(got) == 3
    for level, (e, c) in enumerate(zip(expected, got)):
        assert c.dtype == torch.long and c.shape == (2, 2048 // ours.hop_lengths[level])
        assert torch.equal(c, e), f"level {level}: {(c != e).sum()} codes differ"
        # Not trivially constant: many distinct codes, and the two batch items differ.
        assert c.unique().numel() >= min(8, c.numel() // 4), f"level {level}: codes {c.unique().tolist()}"
        assert not torch.equal(c[0], c[1])
    # Only the levels asked for, and the same codes.
    for start, end in ((0, 1), (1, 3), (2, 3), (1, 2)):
        part = ours.encode(audio, start_level=start, end_level=end)
        assert [p.tolist() for p in part] == [e.tolist() for e in expected[start:end]]


def test_decode_matches_reference(pair: tuple) -> None:
    ref, ours = pair
    audio = _audio(2, 2048, seed=11)
    codes = ours.encode(audio)
    for start in range(3):
        with torch.no_grad():
            expected = ref.decode(codes[start:], start_level=start)
        got = ours.decode(codes[start:], start_level=start)
        assert got.shape == (2, 2048, 1) and got.dtype == torch.float32
        assert expected.abs().max() > 1e-2  # the comparison is not between near-zero signals
        assert (got - expected).abs().max().item() <= 1e-5, f"start_level {start}"
        # The reference's own end_level semantics: only codes[0] is decoded.
        assert torch.equal(ours.decode([codes[start]], start_level=start, end_level=start + 1), got)


def test_a_song_encodes_and_decodes_the_same_in_any_batch(pair: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN's convolutions give other last bits for other batch sizes; a song's latents, codes and audio must
    not depend on the songs batched with it. Codes alone could not show it (a last-bit difference rarely moves
    a nearest codebook entry), so the latents the bottleneck sees are compared too, exactly."""
    _, ours = pair
    latents: dict[int, list[torch.Tensor]] = {level: [] for level in range(3)}
    for level, block in enumerate(ours.bottleneck.level_blocks):
        monkeypatch.setattr(block, "encode", lambda z, f=block.encode, seen=latents[level]: seen.append(z) or f(z))
    audio = _audio(3, 2048, seed=13)
    batch_codes = ours.encode(audio)
    in_batch = {level: torch.cat(seen) for level, seen in latents.items()}  # (3, D, L) per level
    for seen in latents.values():
        seen.clear()
    alone_codes = ours.encode(audio[1:2])
    for level, seen in latents.items():
        assert torch.equal(torch.cat(seen)[0], in_batch[level][1]), f"level {level} latents"
    for level in range(3):
        assert torch.equal(alone_codes[level][0], batch_codes[level][1])
        batch_audio = ours.decode(batch_codes[level:], start_level=level)
        assert batch_audio.abs().max() > 1e-2  # not a comparison of near-silence
        assert torch.equal(batch_audio[1:2], ours.decode([alone_codes[level]], start_level=level))


def test_decode_accepts_other_integer_dtypes(pair: tuple) -> None:
    _, ours = pair
    codes = ours.encode(_audio(2, 1024, seed=3))
    assert torch.equal(ours.decode([codes[1].to(torch.int16)], start_level=1), ours.decode([codes[1]], start_level=1))


def test_half_keeps_float32(pair: tuple) -> None:
    _, ours = pair
    audio = _audio(2, 1024, seed=5)
    codes = ours.encode(audio)
    audio_out = ours.decode(codes)
    ours.half()
    try:
        assert all(t.dtype == torch.float32 for t in [*ours.parameters(), *ours.buffers()])
        assert [c.tolist() for c in ours.encode(audio)] == [c.tolist() for c in codes]
        assert torch.equal(ours.decode(codes), audio_out)
    finally:
        ours.float()


def test_blocks_reusable_with_plain_arguments() -> None:
    # The prior's music-token conditioner builds these directly; check the layout and the upsampling.
    block = DecoderConvBlock(12, 8, 3, 2, 2, dilation_growth_rate=3, dilation_cycle=None, res_scale=False,
                             convolution_multiplier=1, reverse_dilation=False)
    assert block(torch.randn(2, 12, 5)).shape == (2, 12, 20)
    dilations = [b.conv1d_1.dilation[0] for b in block.upsample_block[0].resnet_block]
    assert dilations == [1, 3, 9]
    assert {k.split(".")[0] for k in block.state_dict()} == {"proj_in", "upsample_block"}
    res = Resnet1D(4, 4, dilation_growth_rate=2, dilation_cycle=2, res_scale=True, convolution_multiplier=2,
                   reverse_dilation=True)
    assert [b.conv1d_1.dilation[0] for b in res.resnet_block] == [2, 1, 2, 1]
    assert res.resnet_block[0].res_scale == 0.5 and res.resnet_block[0].conv1d_1.out_channels == 8


@pytest.mark.parametrize("shape", [(2, 1024), (2, 1024, 2), (2, 1, 1024), (1024,)])
def test_encode_rejects_bad_shape(tiny: VQVAE, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="shaped"):
        tiny.encode(torch.zeros(shape))


def test_encode_rejects_bad_length(tiny: VQVAE) -> None:
    with pytest.raises(InputError, match="multiple of 128"):
        tiny.encode(torch.zeros(1, 1000, 1))
    with pytest.raises(InputError, match="multiple of 128"):
        tiny.encode(torch.zeros(1, 0, 1))
    with pytest.raises(InputError, match="multiple of 32"):
        tiny.encode(torch.zeros(1, 1000, 1), end_level=2)
    # 1000 samples is a multiple of level 0's hop 8, which is all that is needed here.
    assert tiny.encode(torch.zeros(1, 1000, 1), end_level=1)[0].shape == (1, 125)


def test_encode_rejects_integer_audio(tiny: VQVAE) -> None:
    with pytest.raises(InputError, match="floating"):
        tiny.encode(torch.zeros(1, 128, 1, dtype=torch.int16))


@pytest.mark.parametrize("start,end", [(-1, None), (3, None), (0, 0), (2, 1), (0, 4), (1.0, None)])
def test_rejects_bad_levels(tiny: VQVAE, start: int, end: int | None) -> None:
    with pytest.raises(InputError, match="level"):
        tiny.encode(torch.zeros(1, 128, 1), start_level=start, end_level=end)
    with pytest.raises(InputError, match="level"):
        tiny.decode([torch.zeros(1, 4, dtype=torch.long)], start_level=start, end_level=end)


@pytest.mark.parametrize("bad", [-1, 64, 1000])
def test_decode_rejects_out_of_range_codes(tiny: VQVAE, bad: int) -> None:
    codes = torch.zeros(2, 4, dtype=torch.long)
    codes[1, 2] = bad
    with pytest.raises(InputError, match=r"outside \[0, 64\)"):
        tiny.decode([codes])
    # A later level's codes are checked too (the reference would look them up).
    with pytest.raises(InputError, match=r"codes\[1\] \(level 1\)"):
        tiny.decode([torch.zeros(2, 16, dtype=torch.long), codes])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_decode_rejects_non_integer_codes(tiny: VQVAE, dtype: torch.dtype) -> None:
    with pytest.raises(InputError, match="integer"):
        tiny.decode([torch.zeros(1, 4, dtype=dtype)])


@pytest.mark.parametrize("codes", [[], torch.zeros(1, 4, dtype=torch.long), [torch.zeros(4, dtype=torch.long)],
                                   [torch.zeros(1, 0, dtype=torch.long)], [[1, 2, 3]]])
def test_decode_rejects_bad_containers(tiny: VQVAE, codes: object) -> None:
    with pytest.raises(InputError):
        tiny.decode(codes)  # type: ignore[arg-type]
