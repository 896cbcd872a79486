"""Model configuration: frozen dataclasses, named presets, and the Hugging Face `config.json` reader.

Field names follow the Hugging Face `JukeboxConfig` so that a `config.json` maps onto them one to one.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from jukebox_dist.errors import ConfigError

PRESETS_DIR = Path(__file__).parent / "presets"


class AttentionKind(str, Enum):
    """What one attention layer attends to (values are the reference's names)."""

    DENSE = "dense_attn"
    BLOCK = "block_attn"
    TRANSPOSE_BLOCK = "transpose_block_attn"
    PREV_BLOCK = "prev_block_attn"
    PRIME = "prime_attn"
    CROSS = "cross_attention"


_RAW = (AttentionKind.BLOCK, AttentionKind.TRANSPOSE_BLOCK, AttentionKind.PREV_BLOCK)
_PRIME_PRIME_DENSE = (AttentionKind.PRIME, AttentionKind.PRIME, AttentionKind.DENSE)


def _raw_column_previous_row(layer: int) -> AttentionKind:
    return _RAW[layer % 3]


def _enc_dec_with_lyrics(layer: int) -> AttentionKind:
    # Every 16th layer of the merged (1b) top prior looks at the lyrics through prime attention.
    if layer % 16 == 15:
        return _PRIME_PRIME_DENSE[layer % 3]
    return _RAW[layer % 3]


# The 5b top prior's 79-layer cycle: 6 x (block, transpose, prev), then (cross-attention to the lyric
# encoder, 3 x (block, transpose, prev)) repeated, ending on a cross-attention layer.
_LARGE_CYCLE = (*_RAW * 6, *((AttentionKind.CROSS, *_RAW * 3) * 6), AttentionKind.CROSS)


def _large_separated_enc_dec_w_lyrics(layer: int) -> AttentionKind:
    return _LARGE_CYCLE[layer % len(_LARGE_CYCLE)]


ATTENTION_PATTERNS = {
    "raw_column_previous_row_attention": _raw_column_previous_row,
    "enc_dec_with_lyrics": _enc_dec_with_lyrics,
    "large_separated_enc_dec_w_lyrics": _large_separated_enc_dec_w_lyrics,
    "full_dense_attention": lambda layer: AttentionKind.DENSE,
}


@dataclass(frozen=True)
class VQVAEConfig:
    """The hierarchical VQ-VAE. Level 0 is the finest (hop 8 for the released strides)."""

    levels: int = 3
    res_downs_t: tuple[int, ...] = (3, 2, 2)
    res_strides_t: tuple[int, ...] = (2, 2, 2)
    nb_discrete_codes: int = 2048
    embed_dim: int = 64
    res_conv_width: int = 32
    res_conv_depth: int = 4
    multipliers: tuple[int, ...] = (2, 1, 1)
    res_convolution_multiplier: int = 1
    res_dilation_growth_rate: int = 3
    res_dilation_cycle: int | None = None
    conv_res_scale: bool = False
    conv_input_shape: int = 1
    hop_fraction: tuple[float, ...] = (0.125, 0.5, 0.5)  # indexed by prior: top, middle, bottom

    @property
    def downsamples(self) -> tuple[int, ...]:
        return tuple(s**d for s, d in zip(self.res_strides_t, self.res_downs_t))

    @property
    def hop_lengths(self) -> tuple[int, ...]:
        """Audio samples per token at each VQ-VAE level, finest first (8, 32, 128 for the released models)."""
        out, acc = [], 1
        for d in self.downsamples:
            acc *= d
            out.append(acc)
        return tuple(out)


@dataclass(frozen=True)
class PriorConfig:
    """One autoregressive prior (or the lyric encoder of a separate-encoder top prior)."""

    level: int = 0  # prior index: 0 top, 1 middle, 2 bottom
    hidden_size: int = 2048
    num_layers: int = 72
    n_heads: int = 2
    attention_multiplier: float = 0.25
    mlp_multiplier: float = 1.0
    act_fn: str = "quick_gelu"
    n_ctx: int = 6144
    blocks: int = 64
    attention_pattern: str = "enc_dec_with_lyrics"
    attn_res_scale: bool = False
    mask: bool = True
    music_vocab_size: int = 2048
    lyric_vocab_size: int = 80
    nb_relevant_lyric_tokens: int = 384
    is_encoder_decoder: bool = True
    merged_decoder: bool = True
    metadata_conditioning: bool = True
    metadata_dims: tuple[int, int] = (604, 7898)  # (genres, artists)
    max_nb_genres: int = 1
    timing_dims: int = 64
    min_duration: float = 0.0
    max_duration: float = 600.0
    sampling_rate: int = 44100
    res_conv_width: int = 128
    res_conv_depth: int = 3
    res_convolution_multiplier: int = 1
    res_dilation_growth_rate: int = 1
    res_dilation_cycle: int | None = None
    res_downs_t: tuple[int, ...] = (3, 2, 2)
    res_strides_t: tuple[int, ...] = (2, 2, 2)
    conv_res_scale: bool | None = None
    encoder_config: PriorConfig | None = None

    # DeepSpeed's AutoTP reads these names to split on head boundaries.
    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def attn_width(self) -> int:
        return int(self.attention_multiplier * self.hidden_size)

    @property
    def head_dim(self) -> int:
        return self.attn_width // self.n_heads

    @property
    def mlp_width(self) -> int:
        return int(self.mlp_multiplier * self.hidden_size)

    @property
    def has_lyrics(self) -> bool:
        return self.nb_relevant_lyric_tokens > 0

    @property
    def is_upsampler(self) -> bool:
        return self.level != 0

    @property
    def separate_lyric_encoder(self) -> bool:
        return self.has_lyrics and not self.is_encoder_decoder

    @property
    def seq_len(self) -> int:
        """Positions of the transformer: music tokens, preceded by the lyrics when they are merged."""
        return self.n_ctx + (self.nb_relevant_lyric_tokens if self.is_encoder_decoder else 0)

    @property
    def block_ctx(self) -> int:
        return self.seq_len // self.blocks

    @property
    def prime_len(self) -> int:
        """Keys that prime attention sees. The reference rounds the lyric count up to a multiple of `blocks`
        (not of block_ctx) plus one more `blocks`, so it covers a few music positions too; we keep that."""
        return (self.nb_relevant_lyric_tokens // self.blocks + 1) * self.blocks

    def lyric_encoder(self) -> PriorConfig:
        """The lyric encoder's config as it is built: its sequence is exactly this prior's lyric window."""
        assert self.encoder_config is not None
        return replace(self.encoder_config, n_ctx=self.nb_relevant_lyric_tokens, is_encoder_decoder=False,
                       level=self.level)

    def layer_kinds(self) -> tuple[AttentionKind, ...]:
        pattern = ATTENTION_PATTERNS[self.attention_pattern]
        return tuple(pattern(i) for i in range(self.num_layers))


@dataclass(frozen=True)
class JukeboxConfig:
    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)
    priors: tuple[PriorConfig, ...] = ()
    sampling_rate: int = 44100
    timing_dims: int = 64
    min_duration: float = 0.0
    max_duration: float = 600.0
    max_nb_genres: int = 5
    metadata_conditioning: bool = True
    name: str = "custom"

    def __post_init__(self) -> None:
        # Like the reference's set_shared_params: the top-level values win over each prior's own.
        shared = dict(
            sampling_rate=self.sampling_rate,
            timing_dims=self.timing_dims,
            min_duration=self.min_duration,
            max_duration=self.max_duration,
            max_nb_genres=self.max_nb_genres,
            metadata_conditioning=self.metadata_conditioning,
        )
        priors = tuple(replace(p, level=i, **shared) for i, p in enumerate(self.priors))
        object.__setattr__(self, "priors", priors)
        _validate(self)

    @property
    def nb_priors(self) -> int:
        return len(self.priors)

    def raw_to_tokens(self, prior: int) -> int:
        """Audio samples per token of prior `prior` (prior 0 uses the coarsest VQ-VAE level)."""
        return self.vqvae.hop_lengths[self.vqvae.levels - 1 - prior]

    @property
    def max_samples(self) -> int:
        """The longest song in audio samples: the timing embeddings stop at max_duration."""
        hop = self.raw_to_tokens(0)
        return int(self.max_duration * self.sampling_rate) // hop * hop

    def to_hf_dict(self) -> dict[str, Any]:
        def prior_dict(p: PriorConfig) -> dict[str, Any]:
            d = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "encoder_config"}
            d["encoder_config"] = prior_dict(p.encoder_config) if p.encoder_config else None
            return _lists(d)

        return {
            "model_type": "jukebox",
            "vqvae_config": _lists(dataclasses.asdict(self.vqvae)),
            "prior_config_list": [prior_dict(p) for p in self.priors],
            "nb_priors": self.nb_priors,
            "sampling_rate": self.sampling_rate,
            "timing_dims": self.timing_dims,
            "min_duration": self.min_duration,
            "max_duration": self.max_duration,
            "max_nb_genres": self.max_nb_genres,
            "metadata_conditioning": self.metadata_conditioning,
        }

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any], name: str = "custom", source: str = "config") -> JukeboxConfig:
        """Read a Hugging Face `config.json` dict. Its `vqvae_config` is saved as a diff from the defaults,
        so missing VQ-VAE fields take the reference defaults (which are ours)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("model_type", "jukebox") != "jukebox":
            raise ConfigError(f"{source}: model_type is {data.get('model_type')!r}, expected 'jukebox'")
        priors_raw = data.get("prior_config_list", data.get("prior_configs"))
        if priors_raw is None:
            priors_raw = [data.get(f"prior_{i}", {}) for i in range(int(data.get("nb_priors", 3)))]
        if not isinstance(priors_raw, list) or not priors_raw:
            raise ConfigError(f"{source}: prior_config_list must be a non-empty list of prior configs")
        vq = _build(VQVAEConfig, data.get("vqvae_config") or {}, f"{source}: vqvae_config")
        priors = tuple(_prior_from_dict(p, f"{source}: prior_config_list[{i}]") for i, p in enumerate(priors_raw))
        top = {k: data[k] for k in ("sampling_rate", "timing_dims", "min_duration", "max_duration",
                                    "max_nb_genres", "metadata_conditioning") if k in data}
        try:
            return cls(vqvae=vq, priors=priors, name=name, **top)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> JukeboxConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found (expected a Hugging Face Jukebox config.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_hf_dict(data, name=path.parent.name, source=str(path))


def _lists(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _build(cls: type, raw: Any, source: str) -> Any:
    """Keep the fields we know (config.json also carries HF bookkeeping keys), convert lists to tuples,
    and check types, naming the field on error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw or f.name == "encoder_config":
            continue
        value = raw[f.name]
        default = getattr(cls(), f.name) if f.default_factory is dataclasses.MISSING else None
        if isinstance(value, list):
            value = tuple(value)
        if default is not None and value is not None and not _type_ok(default, value):
            raise ConfigError(
                f"{source}: field {f.name!r} is {value!r} ({type(value).__name__}), "
                f"expected {type(default).__name__} like {default!r}"
            )
        kwargs[f.name] = value
    return cls(**kwargs)


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, (bool, int))
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    return isinstance(value, type(default))


def _prior_from_dict(raw: Any, source: str) -> PriorConfig:
    prior = _build(PriorConfig, raw, source)
    enc = raw.get("encoder_config")
    if enc is not None:
        prior = replace(prior, encoder_config=_build(PriorConfig, enc, f"{source}.encoder_config"))
    return prior


def _validate(cfg: JukeboxConfig) -> None:
    vq = cfg.vqvae
    for name in ("res_downs_t", "res_strides_t", "multipliers"):
        if len(getattr(vq, name)) != vq.levels:
            raise ConfigError(f"vqvae_config.{name} has {len(getattr(vq, name))} entries, expected levels={vq.levels}")
    if cfg.priors and len(cfg.priors) != vq.levels:
        raise ConfigError(f"{len(cfg.priors)} priors for a {vq.levels}-level VQ-VAE; expected one prior per level")
    for p in cfg.priors:
        where = f"prior_config_list[{p.level}]"
        _validate_prior(p, where)
        if p.music_vocab_size != vq.nb_discrete_codes:
            raise ConfigError(f"{where}.music_vocab_size={p.music_vocab_size} but the VQ-VAE has "
                              f"{vq.nb_discrete_codes} codes; they must be equal")
        if p.is_upsampler:
            # The conditioner upsamples by res_strides_t[level]**res_downs_t[level] (indexed by prior level, as the
            # reference does); that must be the true token-rate ratio between this level and the one above.
            ratio = p.res_strides_t[p.level] ** p.res_downs_t[p.level]
            true_ratio = vq.downsamples[vq.levels - p.level]
            if ratio != true_ratio:
                raise ConfigError(f"{where}: its conditioner upsamples by {ratio} but the level above has "
                                  f"{true_ratio} times fewer tokens")
            if p.n_ctx % ratio:
                raise ConfigError(f"{where}.n_ctx={p.n_ctx} must be a multiple of its conditioner's upsampling {ratio}")
        if p.separate_lyric_encoder:
            if p.encoder_config is None:
                raise ConfigError(f"{where}: nb_relevant_lyric_tokens>0 and is_encoder_decoder=false need an encoder_config")
            _validate_prior(p.lyric_encoder(), f"{where}.encoder_config")


def _validate_prior(p: PriorConfig, where: str) -> None:
    positive = ("hidden_size", "num_layers", "n_heads", "n_ctx", "blocks", "music_vocab_size")
    for name in positive:
        if getattr(p, name) <= 0:
            raise ConfigError(f"{where}.{name}={getattr(p, name)} must be positive")
    if p.attention_pattern not in ATTENTION_PATTERNS:
        raise ConfigError(f"{where}.attention_pattern={p.attention_pattern!r} is unknown; "
                          f"expected one of {sorted(ATTENTION_PATTERNS)}")
    if p.attn_width % p.n_heads:
        raise ConfigError(f"{where}: attention width {p.attn_width} is not divisible by n_heads={p.n_heads}")
    if p.seq_len % p.blocks:
        raise ConfigError(f"{where}: sequence length {p.seq_len} is not divisible by blocks={p.blocks}")
    if p.act_fn != "quick_gelu":
        raise ConfigError(f"{where}.act_fn={p.act_fn!r}: only 'quick_gelu' (used by every released prior) is supported")
    if not p.mask:
        # The reference then attends to future tokens in teacher forcing; an autoregressive sampler must not.
        raise ConfigError(f"{where}.mask=false describes a non-causal prior, which cannot be sampled; expected true")


def preset_names() -> list[str]:
    return ["tiny", *sorted(p.stem for p in PRESETS_DIR.glob("*.json"))]


def load_preset(name: str) -> JukeboxConfig:
    if name == "tiny":
        return tiny_config()
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; expected one of {preset_names()} or a model folder")
    cfg = JukeboxConfig.from_json(path)
    return replace(cfg, name=name)


def tiny_config(lyrics_style: str = "merged") -> JukeboxConfig:
    """A seeded random model small enough for CPU tests: the released VQ-VAE downsampling (hops 8/32/128),
    windows of about 0.09 s at every level, 10 s maximum duration, and the real label vocab sizes so the
    tiny tokenizer's released ids fit. `lyrics_style` is "merged" (1b-style) or "separate" (5b-style)."""
    vq = VQVAEConfig(nb_discrete_codes=64, embed_dim=16, res_conv_width=8, res_conv_depth=2, multipliers=(1, 1, 1))
    codes = vq.nb_discrete_codes
    common = dict(hidden_size=32, n_heads=1, music_vocab_size=codes, attention_pattern="raw_column_previous_row_attention",
                  nb_relevant_lyric_tokens=0, is_encoder_decoder=False, merged_decoder=False, lyric_vocab_size=0,
                  res_conv_width=16, res_conv_depth=2, res_dilation_growth_rate=3, conv_res_scale=False,
                  metadata_dims=(120, 4111))
    middle = PriorConfig(level=1, num_layers=3, n_ctx=128, blocks=8, **common)
    bottom = PriorConfig(level=2, num_layers=3, n_ctx=512, blocks=16, **common)
    if lyrics_style == "merged":
        top = PriorConfig(level=0, hidden_size=32, num_layers=16, n_heads=2, n_ctx=32, blocks=4, music_vocab_size=codes,
                          attention_pattern="enc_dec_with_lyrics", nb_relevant_lyric_tokens=16, lyric_vocab_size=79,
                          is_encoder_decoder=True, merged_decoder=True, metadata_dims=(604, 7898))
    elif lyrics_style == "separate":
        encoder = PriorConfig(level=0, hidden_size=16, num_layers=3, n_heads=2, n_ctx=16, blocks=4, music_vocab_size=codes,
                              attention_pattern="raw_column_previous_row_attention", nb_relevant_lyric_tokens=16,
                              lyric_vocab_size=80, is_encoder_decoder=False, merged_decoder=False)
        top = PriorConfig(level=0, hidden_size=32, num_layers=20, n_heads=4, n_ctx=32, blocks=4, music_vocab_size=codes,
                          attention_pattern="large_separated_enc_dec_w_lyrics", nb_relevant_lyric_tokens=16,
                          lyric_vocab_size=80, is_encoder_decoder=False, merged_decoder=False, metadata_dims=(120, 4111),
                          encoder_config=encoder)
    else:
        raise ConfigError(f"lyrics_style={lyrics_style!r}; expected 'merged' or 'separate'")
    return JukeboxConfig(vqvae=vq, priors=(top, middle, bottom), max_duration=10.0, min_duration=0.0,
                         max_nb_genres=2 if lyrics_style == "merged" else 2, name=f"tiny" if lyrics_style == "merged" else "tiny5b")
