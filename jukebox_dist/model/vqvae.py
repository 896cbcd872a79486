"""The hierarchical VQ-VAE, inference only: audio (B, T, 1) -> codes per level, and codes -> audio.

The module tree and state_dict keys are the reference's (transformers 4.40.2 `JukeboxVQVAE`), so its weights load
with `strict=True`. Level 0 is the finest (hop 8 for the released strides). Every level has its own full encoder
(`encoders.{l}` runs `l + 1` downsampling blocks) and its own full decoder. No training code: no codebook updates,
no losses.

`Resnet1D` and `DecoderConvBlock` take plain arguments because the upsamplers' music-token conditioner reuses them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jukebox_dist.errors import ConfigError, InputError
from jukebox_dist.model.calls import rowwise
from jukebox_dist.model.config import VQVAEConfig

__all__ = ["ResConv1DBlock", "Resnet1D", "EncoderConvBlock", "DecoderConvBlock", "Encoder", "Decoder",
           "BottleneckBlock", "Bottleneck", "VQVAE"]


class ResConv1DBlock(nn.Module):
    """x + res_scale * conv1x1(relu(conv3_dilated(relu(x))))."""

    def __init__(self, width: int, hidden: int, dilation: int, res_scale: float) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.activation = nn.ReLU()
        self.conv1d_1 = nn.Conv1d(width, hidden, 3, 1, dilation, dilation)
        self.conv1d_2 = nn.Conv1d(hidden, width, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:  # (B, width, T) -> (B, width, T)
        h = self.conv1d_2(self.activation(self.conv1d_1(self.activation(x))))
        return x + self.res_scale * h


class Resnet1D(nn.Module):
    """`depth` residual blocks; block d has dilation growth**(d % cycle) (cycle None: growth**d).

    `res_scale=True` scales each residual branch by 1/sqrt(depth); `reverse_dilation` runs the blocks in reverse
    order (the decoders do)."""

    def __init__(self, width: int, depth: int, *, dilation_growth_rate: int, dilation_cycle: int | None,
                 res_scale: bool, convolution_multiplier: int, reverse_dilation: bool = False) -> None:
        super().__init__()
        scale = 1.0 / math.sqrt(depth) if res_scale else 1.0
        hidden = convolution_multiplier * width
        blocks = [
            ResConv1DBlock(width, hidden, dilation_growth_rate ** (d if dilation_cycle is None else d % dilation_cycle),
                           scale)
            for d in range(depth)
        ]
        self.resnet_block = nn.ModuleList(blocks[::-1] if reverse_dilation else blocks)

    def forward(self, x: Tensor) -> Tensor:  # (B, width, T) -> (B, width, T)
        for block in self.resnet_block:
            x = block(x)
        return x


class EncoderConvBlock(nn.Module):
    """`down_t` x (strided conv, resnet), then a projection to `embed_dim`: (B, width_in, T) -> (B, embed_dim,
    T // stride_t**down_t)."""

    def __init__(self, width_in: int, hidden: int, depth: int, down_t: int, stride_t: int, embed_dim: int, *,
                 dilation_growth_rate: int, dilation_cycle: int | None, res_scale: bool,
                 convolution_multiplier: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(down_t):
            blocks.append(nn.Conv1d(width_in if i == 0 else hidden, hidden, 2 * stride_t, stride_t, stride_t // 2))
            blocks.append(Resnet1D(hidden, depth, dilation_growth_rate=dilation_growth_rate,
                                   dilation_cycle=dilation_cycle, res_scale=res_scale,
                                   convolution_multiplier=convolution_multiplier))
        self.downsample_block = nn.ModuleList(blocks)
        self.proj_out = nn.Conv1d(hidden, embed_dim, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, width_in, T) -> (B, embed_dim, T')
        for block in self.downsample_block:
            x = block(x)
        return self.proj_out(x)


class DecoderConvBlock(nn.Module):
    """A projection from `width_in` to `hidden`, then `down_t` x (resnet, transposed conv); the last transposed conv
    goes back to `width_in`: (B, width_in, T) -> (B, width_in, T * stride_t**down_t)."""

    def __init__(self, width_in: int, hidden: int, depth: int, down_t: int, stride_t: int, *,
                 dilation_growth_rate: int, dilation_cycle: int | None, res_scale: bool, convolution_multiplier: int,
                 reverse_dilation: bool) -> None:
        super().__init__()
        if down_t < 1:
            raise ConfigError(f"a decoder block needs down_t >= 1, got {down_t}")
        self.proj_in = nn.Conv1d(width_in, hidden, 3, 1, 1)
        blocks: list[nn.Module] = []
        for i in range(down_t):
            blocks.append(Resnet1D(hidden, depth, dilation_growth_rate=dilation_growth_rate,
                                   dilation_cycle=dilation_cycle, res_scale=res_scale,
                                   convolution_multiplier=convolution_multiplier, reverse_dilation=reverse_dilation))
            out = hidden if i < down_t - 1 else width_in
            blocks.append(nn.ConvTranspose1d(hidden, out, 2 * stride_t, stride_t, stride_t // 2))
        self.upsample_block = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:  # (B, width_in, T) -> (B, width_in, T * stride_t**down_t)
        x = self.proj_in(x)  # (B, hidden, T)
        for block in self.upsample_block:
            x = block(x)
        return x


def _resnet_options(config: VQVAEConfig) -> dict[str, object]:
    return dict(dilation_growth_rate=config.res_dilation_growth_rate, dilation_cycle=config.res_dilation_cycle,
                res_scale=config.conv_res_scale, convolution_multiplier=config.res_convolution_multiplier)


class Encoder(nn.Module):
    """The encoder of VQ-VAE level `level`: audio (B, C_in, T) -> latents (B, embed_dim, T // hop_lengths[level])."""

    def __init__(self, config: VQVAEConfig, level: int) -> None:
        super().__init__()
        width = config.res_conv_width * config.multipliers[level]
        depth = config.res_conv_depth * config.multipliers[level]
        self.level_blocks = nn.ModuleList(
            EncoderConvBlock(config.conv_input_shape if i == 0 else config.embed_dim, width, depth,
                             config.res_downs_t[i], config.res_strides_t[i], config.embed_dim,
                             **_resnet_options(config))  # type: ignore[arg-type]
            for i in range(level + 1)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, embed_dim, T // hop)
        for block in self.level_blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    """The decoder of VQ-VAE level `level`: latents (B, embed_dim, L) -> audio (B, C_in, L * hop_lengths[level]).

    Only the reference's `all_levels=False` path: the one input runs through every block, coarsest first."""

    def __init__(self, config: VQVAEConfig, level: int) -> None:
        super().__init__()
        width = config.res_conv_width * config.multipliers[level]
        depth = config.res_conv_depth * config.multipliers[level]
        self.level_blocks = nn.ModuleList(
            DecoderConvBlock(config.embed_dim, width, depth, config.res_downs_t[i], config.res_strides_t[i],
                             reverse_dilation=True, **_resnet_options(config))  # type: ignore[arg-type]
            for i in range(level + 1)
        )
        self.out = nn.Conv1d(config.embed_dim, config.conv_input_shape, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, embed_dim, L) -> (B, C_in, L * hop)
        for block in reversed(self.level_blocks):
            x = block(x)
        return self.out(x)


class BottleneckBlock(nn.Module):
    """One level's codebook (a buffer, as in the reference) and the nearest-code lookup."""

    def __init__(self, nb_discrete_codes: int, embed_dim: int) -> None:
        super().__init__()
        self.register_buffer("codebook", torch.zeros(nb_discrete_codes, embed_dim))
        self.codebook: Tensor  # (K, D)

    def encode(self, x: Tensor) -> Tensor:  # (B, D, L) -> (B, L) long
        batch, _, length = x.shape
        flat = x.permute(0, 2, 1).contiguous().view(-1, x.shape[1])  # (B*L, D)
        # The reference's op order, so that ties and rounding give the same codes.
        codebook_t = self.codebook.t()  # (D, K)
        distance = (torch.sum(flat**2, dim=-1, keepdim=True)
                    - 2 * torch.matmul(flat, codebook_t)
                    + torch.sum(codebook_t**2, dim=0, keepdim=True))  # (B*L, K)
        _, codes = torch.min(distance, dim=-1)  # (B*L,)
        return codes.view(batch, length)

    def decode(self, codes: Tensor) -> Tensor:  # (B, L) -> (B, D, L)
        return F.embedding(codes, self.codebook).permute(0, 2, 1).contiguous()


class Bottleneck(nn.Module):
    def __init__(self, nb_discrete_codes: int, embed_dim: int, levels: int) -> None:
        super().__init__()
        self.level_blocks = nn.ModuleList(BottleneckBlock(nb_discrete_codes, embed_dim) for _ in range(levels))


class VQVAE(nn.Module):
    """The hierarchical VQ-VAE. `encode` and `decode` always compute in float32: dtype conversions of the whole
    model (`.half()`, `.to(torch.bfloat16)`) leave this module's float32 weights as they are; device moves apply.
    Both run row by row (`rowwise`), so a song's codes and audio do not depend on its batch (tests/model/test_vqvae.py)."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        for name in ("res_downs_t", "res_strides_t", "multipliers"):
            if len(getattr(config, name)) != config.levels:
                raise ConfigError(f"vqvae_config.{name} has {len(getattr(config, name))} entries, "
                                  f"expected levels={config.levels}")
        if min(config.res_downs_t) < 1 or min(config.res_strides_t) < 2:
            raise ConfigError(f"vqvae_config needs res_downs_t >= 1 and res_strides_t >= 2, got "
                              f"{config.res_downs_t} and {config.res_strides_t}")
        self.config = config
        self.levels = config.levels
        self.hop_lengths: tuple[int, ...] = config.hop_lengths  # finest first: 8, 32, 128 when released
        self.encoders = nn.ModuleList(Encoder(config, level) for level in range(config.levels))
        self.decoders = nn.ModuleList(Decoder(config, level) for level in range(config.levels))
        self.bottleneck = Bottleneck(config.nb_discrete_codes, config.embed_dim, config.levels)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> VQVAE:
        def keep_float32(t: Tensor) -> Tensor:
            out = fn(t)
            if t.dtype == torch.float32 and out.dtype != torch.float32 and out.is_floating_point():
                return t.to(device=out.device)  # only the device move
            return out

        return super()._apply(keep_float32, recurse)

    @property
    def device(self) -> torch.device:
        return self.bottleneck.level_blocks[0].codebook.device

    def encode(self, audio: Tensor, start_level: int = 0, end_level: int | None = None) -> list[Tensor]:
        """Audio (B, T, 1) -> codes of levels [start_level, end_level), finest first, each (B, T // hop) long.
        T must be a multiple of the hop of the coarsest level asked for."""
        end_level = self._check_levels(start_level, end_level)
        self._check_audio(audio, self.hop_lengths[end_level - 1])
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            self._ensure_float32()
            x = audio.to(self.device, torch.float32).permute(0, 2, 1)  # (B, 1, T)
            return [rowwise(lambda row: self.bottleneck.level_blocks[level].encode(self.encoders[level](row)), x)
                    for level in range(start_level, end_level)]  # each (B, T // hop)

    def decode(self, codes: Sequence[Tensor], start_level: int = 0, end_level: int | None = None) -> Tensor:
        """Codes -> audio (B, T, 1) float32, as the reference: `codes[0]` are level `start_level`'s codes and are
        decoded with that level's decoder; the rest of `codes` is checked but not used."""
        end_level = self._check_levels(start_level, end_level)
        if isinstance(codes, Tensor) or not isinstance(codes, Sequence) or not codes:
            raise InputError("decode expects a non-empty list of code tensors, finest level first, "
                             f"got {type(codes).__name__}")
        for i, c in enumerate(codes[: end_level - start_level]):
            self._check_codes(c, f"codes[{i}] (level {start_level + i})")
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            self._ensure_float32()
            block, decoder = self.bottleneck.level_blocks[start_level], self.decoders[start_level]
            audio = rowwise(lambda row: decoder(block.decode(row)), codes[0].to(self.device, torch.long))
            return audio.permute(0, 2, 1)  # (B, L * hop, 1)

    def _ensure_float32(self) -> None:
        if self.bottleneck.level_blocks[0].codebook.dtype != torch.float32:
            self.float()

    def _check_levels(self, start_level: int, end_level: int | None) -> int:
        end = self.levels if end_level is None else end_level
        for name, value in (("start_level", start_level), ("end_level", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be an int, got {value!r}")
        if not 0 <= start_level < end <= self.levels:
            raise InputError(f"levels [start_level={start_level}, end_level={end}) are out of range: "
                             f"need 0 <= start_level < end_level <= {self.levels} (level 0 is the finest)")
        return end

    def _check_audio(self, audio: Tensor, hop: int) -> None:
        if not isinstance(audio, Tensor) or audio.dim() != 3 or audio.shape[2] != self.config.conv_input_shape:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise InputError(f"audio must be shaped (batch, samples, {self.config.conv_input_shape}), got {shape}")
        if not audio.is_floating_point():
            raise InputError(f"audio must be a floating-point tensor, got {audio.dtype}")
        if audio.shape[0] == 0 or audio.shape[1] == 0 or audio.shape[1] % hop:
            raise InputError(f"audio has {audio.shape[1]} samples (batch {audio.shape[0]}); it needs a positive "
                             f"multiple of {hop} samples (the hop of the coarsest level encoded): pad or trim it")

    def _check_codes(self, codes: Tensor, what: str) -> None:
        if not isinstance(codes, Tensor):
            raise InputError(f"{what} must be a tensor, got {type(codes).__name__}")
        if codes.dtype == torch.bool or codes.is_floating_point() or codes.is_complex():
            raise InputError(f"{what} must be an integer tensor, got {codes.dtype}")
        if codes.dim() != 2 or codes.numel() == 0:
            raise InputError(f"{what} must be shaped (batch, tokens) and non-empty, got {tuple(codes.shape)}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.config.nb_discrete_codes:
            raise InputError(f"{what} has values in [{low}, {high}], outside [0, {self.config.nb_discrete_codes})")
