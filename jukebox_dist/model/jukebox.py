"""The whole model: VQ-VAE plus priors in the reference's order (0 top, 1 middle, 2 bottom)."""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jukebox_dist.errors import CheckpointError, ConfigError, InputError
from jukebox_dist.model import checkpoint
from jukebox_dist.model.config import JukeboxConfig, load_preset, preset_names, tiny_config
from jukebox_dist.model.layout import use_input_major_weights
from jukebox_dist.model.prior import Prior
from jukebox_dist.model.vqvae import VQVAE

log = logging.getLogger(__name__)

TINY_PRESETS = {"tiny": "merged", "tiny5b": "separate"}


class Jukebox(nn.Module):
    def __init__(self, config: JukeboxConfig) -> None:
        super().__init__()
        self.config = config
        self.vqvae = VQVAE(config.vqvae)
        self.priors = nn.ModuleList(Prior(p, config.raw_to_tokens(i)) for i, p in enumerate(config.priors))

    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path, *, seed: int = 0, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, parts: Sequence[str] | None = None) -> Jukebox:
        """A folder in the Hugging Face layout (config.json + weights), a hub id (downloaded with
        huggingface_hub where it is installed), or a preset: `tiny` / `tiny5b` build a seeded random model.
        `parts` ("vqvae", "priors.0", ...) loads only those modules; the others stay on the meta device."""
        name = str(path_or_preset)
        if name in TINY_PRESETS:
            model = cls.random(tiny_config(TINY_PRESETS[name]), seed=seed)
        else:
            folder = resolve_model_dir(name)
            config = JukeboxConfig.from_json(folder / "config.json")
            with torch.device("meta"):
                model = cls(config)
            checkpoint.load_reference(model, folder, parts)
        for part in parts or ("vqvae", *(f"priors.{i}" for i in range(len(model.priors)))):
            module = model.get_submodule(part)
            # The VQ-VAE always runs in float32, like the reference; priors take `dtype`.
            module.to(device=device, dtype=None if part == "vqvae" else dtype)
            if part != "vqvae":
                use_input_major_weights(module)  # CPU only: faster small-batch matmuls, same results
        return model.eval()

    @classmethod
    def random(cls, config: JukeboxConfig, seed: int = 0) -> Jukebox:
        """A randomly initialised model, identical for the same config and seed on every machine."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
            gen = torch.Generator().manual_seed(seed)
            for name, p in model.named_parameters():
                scale = 0.01 if name.endswith(("pos_emb.pos_emb", "start_token")) else 0.02
                if name.startswith("priors"):
                    with torch.no_grad():
                        if "layer_norm" in name and name.endswith("weight"):
                            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                        else:
                            p.copy_(scale * torch.randn(p.shape, generator=gen) * (5.0 if "embed" in name else 1.0))
            # Encoding with another thread count rounds differently: fix it, so every process (an actor with
            # one thread, a test with two) builds bit-identical codebooks from the same seed.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                _init_codebooks(model.vqvae, _noise_audio(config, gen), gen)
            finally:
                torch.set_num_threads(threads)
        return model.eval()

    # ---- sampling (the algorithms live in jukebox_dist.sampling; these are the public entry points) ----------
    def ancestral_sample(self, labels: Sequence, n_samples: int = 1, *, total_length: int, seed: int | Sequence[int] = 0,
                         levels: Sequence[int] | None = None, **kwargs: Any) -> list[torch.Tensor]:
        """Sample songs from nothing. `labels`: the tokenizer's input_ids (one entry per prior, 1 or n_samples rows).
        Returns codes in prior order [top, middle, bottom]; levels not sampled are empty (n, 0) tensors.
        kwargs: temperature (one number or one per level; 0 = greedy), top_k, top_p, max_batch_size,
        chunk_size, progress."""
        from jukebox_dist.sampling.generate import generate, seeds_for

        seeds = seeds_for(seed, n_samples)
        empty = [torch.zeros(n_samples, 0, dtype=torch.long) for _ in self.priors]
        return generate(self, labels, empty, total_length=total_length, levels=self._levels(levels), seeds=seeds,
                        **kwargs)

    def primed_sample(self, audio: torch.Tensor, labels: Sequence, *, total_length: int,
                      seed: int | Sequence[int] = 0, levels: Sequence[int] | None = None,
                      **kwargs: Any) -> list[torch.Tensor]:
        """Continue audio (B or 1, T, 1) at the model's sampling rate: its codes at every level are kept as the
        start of each level and the rest is sampled."""
        from jukebox_dist.sampling.generate import generate, prime_codes, seeds_for

        codes = prime_codes(self, audio, total_length)
        seeds = seeds_for(seed, codes[0].shape[0] if isinstance(seed, int) else len(seed))
        return generate(self, labels, codes, total_length=total_length, levels=self._levels(levels), seeds=seeds,
                        **kwargs)

    def continue_sample(self, codes: Sequence[torch.Tensor], labels: Sequence, *, total_length: int,
                        seed: int | Sequence[int] = 0, levels: Sequence[int] | None = None,
                        **kwargs: Any) -> list[torch.Tensor]:
        """Extend saved codes (prior order; a level may be partial or empty) to `total_length` samples."""
        from jukebox_dist.sampling.generate import generate, seeds_for

        seeds = seeds_for(seed, max(c.shape[0] for c in codes))
        return generate(self, labels, list(codes), total_length=total_length, levels=self._levels(levels),
                        seeds=seeds, **kwargs)

    def upsample(self, codes: Sequence[torch.Tensor], labels: Sequence, *, total_length: int | None = None,
                 seed: int | Sequence[int] = 0, levels: Sequence[int] | None = None,
                 **kwargs: Any) -> list[torch.Tensor]:
        """Sample the upsampler levels under complete top-level codes (which stay untouched)."""
        from jukebox_dist.sampling.generate import generate, seeds_for

        top = codes[0]
        total_length = top.shape[1] * self.config.raw_to_tokens(0) if total_length is None else total_length
        seeds = seeds_for(seed, top.shape[0])
        rest = list(codes[1:]) + [None] * (len(self.priors) - len(codes))
        return generate(self, labels, [top, *rest], total_length=total_length,
                        levels=list(range(1, len(self.priors))) if levels is None else levels, seeds=seeds, **kwargs)

    def decode(self, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        """Codes in prior order -> audio (B, T, 1), from the finest level that has codes."""
        for prior in reversed(range(len(codes))):
            if codes[prior] is not None and codes[prior].numel():
                level = self.config.vqvae.levels - 1 - prior
                return self.vqvae.decode([codes[prior]], start_level=level)
        raise InputError("decode got no codes: every level is empty")

    def _levels(self, levels: Sequence[int] | None) -> list[int]:
        if levels is None:
            return list(range(len(self.priors)))
        bad = [lvl for lvl in levels if not 0 <= lvl < len(self.priors)]
        if bad:
            raise InputError(f"levels {bad} out of range: priors are 0 (top) to {len(self.priors) - 1} (bottom)")
        return sorted(set(levels))

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write config.json and model.safetensors in the Hugging Face layout (readable by `from_pretrained` here
        and by the reference). Tied output heads are written once, as embed_tokens, like HF does."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = checkpoint.to_reference(self.state_dict(), self)
        for key in checkpoint.tied_keys(self):
            state.pop(key)
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp.replace(folder / "model.safetensors")  # never leave a half-written weights file under the real name
        (folder / "config.json").write_text(json.dumps(self.config.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
        return folder

    def num_parameters(self, part: nn.Module | None = None) -> int:
        """Distinct parameters (tied weights counted once), buffers excluded."""
        return sum(p.numel() for p in (part or self).parameters())


def resolve_model_dir(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json; expected a Jukebox model folder in the Hugging Face layout")
        return path
    if name in preset_names():
        load_preset(name)  # validates the preset exists and parses
        raise ConfigError(f"preset {name!r} has no bundled weights: download openai/jukebox-{name.replace('_', '-')} "
                          "(config.json, weights, vocab files) and pass that folder")
    if path.exists():
        raise CheckpointError(f"{path}: not a folder; expected a Jukebox model folder in the Hugging Face layout")
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return _download(name)
    raise CheckpointError(f"{name}: no such folder, and not a preset ({', '.join(preset_names())}) or hub id")


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{repo_id}: looks like a hub id, but huggingface_hub is not installed; "
                              "install it or pass a local folder") from None
    log.info("downloading %s from the Hugging Face hub", repo_id)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.bin"]))
    except Exception as exc:  # network, auth and not-found errors all end the same way for the user
        raise CheckpointError(f"{repo_id}: could not download from the hub ({type(exc).__name__}: {exc})") from None


def _noise_audio(config: JukeboxConfig, gen: torch.Generator) -> torch.Tensor:
    """Sines and noise long enough to give every codebook entry a latent vector at the coarsest level."""
    hop = config.vqvae.hop_lengths[-1]
    n = math.ceil(config.vqvae.nb_discrete_codes * 2 / 4) * hop
    t = torch.arange(n) / config.sampling_rate
    freqs = torch.tensor([110.0, 220.0, 440.0, 880.0]).view(4, 1)
    audio = 0.5 * torch.sin(2 * math.pi * freqs * t) + 0.1 * torch.randn(4, n, generator=gen)
    return audio.unsqueeze(-1)  # (4, n, 1)


@torch.no_grad()
def _init_codebooks(vqvae: VQVAE, audio: torch.Tensor, gen: torch.Generator) -> None:
    """Codebook entries drawn from encoded audio (as the reference's training init does), so codes vary."""
    x = audio.permute(0, 2, 1)  # (B, 1, T)
    for level, block in enumerate(vqvae.bottleneck.level_blocks):
        z = vqvae.encoders[level](x)  # (B, D, L)
        flat = z.permute(0, 2, 1).reshape(-1, z.shape[1])
        pick = torch.randperm(flat.shape[0], generator=gen)[:block.codebook.shape[0]]
        block.codebook.copy_(flat[pick])
