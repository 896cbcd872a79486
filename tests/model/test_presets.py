"""The released presets build on the meta device with the released parameter counts, and their weights have
exactly the reference's layout: every key and shape of a reference model built from the same config."""
from __future__ import annotations

import json

import pytest
import torch

from jukebox_dist.model import checkpoint
from jukebox_dist.model.config import PRESETS_DIR, load_preset
from jukebox_dist.model.jukebox import Jukebox

# Parameters without the codebook buffers; the checkpoints (1b 11.64 GB, 5b 30.42 GB of fp32 shards) hold these
# plus 3 codebooks of 2048 x 64. Top prior, middle, bottom, VQ-VAE.
RELEASED = {
    "1b_lyrics": (2_906_725_315, [942_643_200, 981_298_176, 981_298_176], 1_485_763),
    "5b_lyrics": (7_604_588_915, [5_640_506_800, 981_298_176, 981_298_176], 1_485_763),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_preset_parameter_counts(name):
    with torch.device("meta"):
        model = Jukebox(load_preset(name))
    total, priors, vqvae = RELEASED[name]
    assert model.num_parameters() == total
    assert [model.num_parameters(p) for p in model.priors] == priors
    assert model.num_parameters(model.vqvae) == vqvae
    codebooks = sum(b.numel() for b in model.buffers())
    assert codebooks == 3 * 2048 * 64


@pytest.mark.parametrize("name", list(RELEASED))
def test_preset_state_dict_matches_reference_layout(name, hf_jukebox):
    with torch.device("meta"):
        ours = Jukebox(load_preset(name))
        raw = json.loads((PRESETS_DIR / f"{name}.json").read_text())
        raw.pop("model_type", None)
        ref = hf_jukebox.JukeboxModel(hf_jukebox.JukeboxConfig(**raw))
    mapped = {k: tuple(v.shape) for k, v in checkpoint.to_reference(ours.state_dict(), ours).items()}
    expected = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert set(mapped) == set(expected)
    assert mapped == expected
    assert sum(p.numel() for p in ref.parameters()) == RELEASED[name][0]


def test_preset_shapes_of_the_released_models():
    top5, top1 = load_preset("5b_lyrics").priors[0], load_preset("1b_lyrics").priors[0]
    assert (top5.hidden_size, top5.num_layers, top5.n_heads, top5.n_ctx) == (4800, 79, 8, 8192)
    assert top5.separate_lyric_encoder and top5.lyric_encoder().hidden_size == 1280
    assert (top1.hidden_size, top1.num_layers, top1.n_heads, top1.n_ctx) == (2048, 72, 2, 6144)
    assert top1.is_encoder_decoder and top1.nb_relevant_lyric_tokens == 384
    assert top1.prime_len == 448  # the reference's rounding (notes section 8)
