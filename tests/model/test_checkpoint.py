"""Loading weights and configs: the Hugging Face layouts, and the error a user sees for each bad input."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from jukebox_dist.errors import CheckpointError, ConfigError
from jukebox_dist.model import checkpoint
from jukebox_dist.model.config import JukeboxConfig, tiny_config
from jukebox_dist.model.jukebox import Jukebox


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    model = Jukebox.from_pretrained("tiny5b", seed=2)
    return model, model.save_pretrained(tmp_path_factory.mktemp("tiny5b"))


def _copy(tiny_dir, tmp_path):
    return shutil.copytree(tiny_dir[1], tmp_path / "model")


def _same_outputs(a: Jukebox, b: Jukebox) -> bool:
    tokens = torch.randint(0, 64, (1, 32), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[0, 0, 0, 5, 3, -1, 7, 8, 9]])
    with torch.no_grad():
        x = a.priors[0].logits(tokens, labels, total_length=128 * 64)
        y = b.priors[0].logits(tokens, labels, total_length=128 * 64)
    return torch.equal(x, y) and all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                                       b.state_dict().values()))


def test_save_and_load_round_trip(tiny_dir):
    model, folder = tiny_dir
    loaded = Jukebox.from_pretrained(folder)
    assert loaded.config == model.config.__class__(**{**model.config.__dict__, "name": loaded.config.name})
    assert _same_outputs(model, loaded)
    # Tied heads stay tied after loading: one tensor, not two copies.
    for prior in loaded.priors:
        if prior.prior.tie_output:
            assert prior.prior.fc_proj_out.weight is prior.prior.embed_tokens.weight


def test_pytorch_bin_and_sharded_checkpoints(tiny_dir, tmp_path):
    model, folder = tiny_dir
    state = checkpoint.read_state_dict(folder)
    bin_dir = _copy(tiny_dir, tmp_path / "bin")
    (bin_dir / "model.safetensors").unlink()
    torch.save(state, bin_dir / "pytorch_model.bin")
    assert _same_outputs(model, Jukebox.from_pretrained(bin_dir))

    shard_dir = _copy(tiny_dir, tmp_path / "sharded")
    (shard_dir / "model.safetensors").unlink()
    from safetensors.torch import save_file
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(shard_dir / name))
    index = {"metadata": {}, "weight_map": {k: n for n, part in halves.items() for k in part}}
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    assert _same_outputs(model, Jukebox.from_pretrained(shard_dir))

    (shard_dir / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors: shard listed in "
                                              "model.safetensors.index.json is missing"):
        Jukebox.from_pretrained(shard_dir)


def test_reference_sharded_checkpoint(hf_jukebox, tmp_path):
    """The reference's own sharded save (save_pretrained with max_shard_size) loads too."""
    from tests.model.reference import build_reference
    ref = build_reference(tiny_config("separate"), seed=1)
    ref.save_pretrained(tmp_path, safe_serialization=False, max_shard_size="200KB")
    assert (tmp_path / "pytorch_model.bin.index.json").is_file()
    ours = Jukebox.from_pretrained(tmp_path)
    audio = torch.sin(torch.arange(128 * 16) / 7.0).view(1, -1, 1)
    with torch.no_grad():
        assert torch.equal(ours.vqvae.encode(audio)[2], ref.vqvae.encode(audio)[2])


def test_missing_unexpected_and_misshaped_tensors_are_all_named(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path)
    from safetensors.torch import load_file, save_file
    state = load_file(str(folder / "model.safetensors"))
    state.pop("priors.0.prior.transformer._attn_mods.2.attn.c_attn.bias")
    state["priors.0.prior.not_a_layer.weight"] = torch.zeros(3)
    state["priors.1.metadata_embedding.artist_emb.weight"] = torch.zeros(10, 32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        Jukebox.from_pretrained(folder)
    msg = str(err.value)
    assert "the weights do not fit the model described by config.json" in msg
    assert "1 missing: priors.0.prior.transformer._attn_mods.2.attn.c_attn.bias" in msg
    assert "1 unexpected: priors.0.prior.not_a_layer.weight" in msg
    assert "1 mis-shaped: priors.1.metadata_embedding.artist_emb.weight: checkpoint (10, 32), model (4111, 32)" in msg


def test_weights_of_another_model(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path)
    other = Jukebox.from_pretrained("tiny").save_pretrained(tmp_path / "other")
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing: .*unexpected|\d+ missing"):
        Jukebox.from_pretrained(folder)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_corrupt_weights_file_is_named(tiny_dir, tmp_path, name):
    folder = _copy(tiny_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / name).write_bytes(b"\x00\x01 not really weights")
    with pytest.raises(CheckpointError, match=f"{name}: cannot read weights .*missing, truncated or not a checkpoint"):
        Jukebox.from_pretrained(folder)


def test_truncated_safetensors(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read weights"):
        Jukebox.from_pretrained(folder)


def test_no_weights_and_no_config(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights found; expected one of model.safetensors, pytorch_model.bin"):
        Jukebox.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        Jukebox.from_pretrained(folder)
    with pytest.raises(CheckpointError, match="no such folder, and not a preset"):
        Jukebox.from_pretrained(tmp_path / "nowhere")


def test_preset_without_weights():
    with pytest.raises(ConfigError, match="preset '5b_lyrics' has no bundled weights"):
        Jukebox.from_pretrained("5b_lyrics")


def test_bad_index_file(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path)
    (folder / "model.safetensors.index.json").write_text("{\"weights\": {}}")
    with pytest.raises(CheckpointError, match="not a valid checkpoint index"):
        Jukebox.from_pretrained(folder)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../../etc/passwd"}}))
    with pytest.raises(CheckpointError, match="must be a file name inside"):
        Jukebox.from_pretrained(folder)


# ---- configs --------------------------------------------------------------------------------------------
def _config(tiny_dir, tmp_path, edit) -> str:
    folder = _copy(tiny_dir, tmp_path)
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    (folder / "config.json").write_text(json.dumps(data))
    return folder


def test_config_not_json(tiny_dir, tmp_path):
    folder = _copy(tiny_dir, tmp_path)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config.json: not valid JSON"):
        Jukebox.from_pretrained(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["prior_config_list"][0].update(hidden_size="wide"),
     r"prior_config_list\[0\]: field 'hidden_size' is 'wide' \(str\), expected int"),
    (lambda d: d["prior_config_list"][1].update(attention_pattern="sparse_magic"),
     r"prior_config_list\[1\].attention_pattern='sparse_magic' is unknown"),
    (lambda d: d["prior_config_list"][2].update(n_heads=3),
     r"attention width 8 is not divisible by n_heads=3"),
    (lambda d: d["prior_config_list"][0].update(mask=False), r"mask=false describes a non-causal prior"),
    (lambda d: d.update(model_type="gpt2"), r"model_type is 'gpt2', expected 'jukebox'"),
    (lambda d: d.update(prior_config_list=[]), r"prior_config_list must be a non-empty list"),
    (lambda d: d["vqvae_config"].update(nb_discrete_codes=32), r"music_vocab_size=64 but the VQ-VAE has 32 codes"),
    (lambda d: d["prior_config_list"][0].update(encoder_config=None), r"need an encoder_config"),
])
def test_bad_config_fields(tiny_dir, tmp_path, edit, message):
    folder = _config(tiny_dir, tmp_path, edit)
    with pytest.raises(ConfigError, match=message):
        Jukebox.from_pretrained(folder)


def test_vqvae_config_is_a_diff_from_defaults(tmp_path):
    """config.json saves vqvae_config as a diff from the defaults (notes section 3): missing fields take them."""
    data = tiny_config().to_hf_dict()
    data["vqvae_config"] = {"nb_discrete_codes": 64, "embed_dim": 16, "res_conv_width": 8, "res_conv_depth": 2,
                            "multipliers": [1, 1, 1], "sample_length": 4096}
    (tmp_path / "config.json").write_text(json.dumps(data))
    cfg = JukeboxConfig.from_json(tmp_path / "config.json")
    assert cfg.vqvae == tiny_config().vqvae
    assert cfg.vqvae.res_downs_t == (3, 2, 2) and cfg.vqvae.hop_lengths == (8, 32, 128)


def test_reference_config_json_reads_back(hf_jukebox, tmp_path):
    """A config.json written by the reference's save_pretrained gives the same config (priors may be saved as
    prior_config_list or, in the released files, prior_0..prior_2)."""
    cfg = tiny_config("separate")
    hf = hf_jukebox.JukeboxConfig(**{k: v for k, v in cfg.to_hf_dict().items() if k != "model_type"})
    hf.save_pretrained(tmp_path)
    got = JukeboxConfig.from_json(tmp_path / "config.json")
    assert got.priors == cfg.priors and got.vqvae == cfg.vqvae
    data = json.loads((tmp_path / "config.json").read_text())
    for i, prior in enumerate(data.pop("prior_config_list")):
        data[f"prior_{i}"] = prior
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert JukeboxConfig.from_json(tmp_path / "config.json").priors == cfg.priors


def test_loading_only_some_parts(tiny_dir):
    """An actor that hosts one prior reads only that prior's tensors; the rest stays on the meta device."""
    model, folder = tiny_dir
    part = Jukebox.from_pretrained(folder, parts=["priors.1", "vqvae"])
    assert all(p.device.type == "meta" for p in part.priors[0].parameters())
    assert all(p.device.type == "meta" for p in part.priors[2].parameters())
    for name, tensor in part.priors[1].state_dict().items():
        assert torch.equal(tensor, model.priors[1].state_dict()[name]), name
    assert torch.equal(part.vqvae.bottleneck.level_blocks[0].codebook, model.vqvae.bottleneck.level_blocks[0].codebook)


def test_weights_fingerprint_follows_the_files(tiny_dir, tmp_path):
    from jukebox_dist.job.plan import model_fingerprint
    from jukebox_dist.model.checkpoint import weights_fingerprint

    folder = _copy(tiny_dir, tmp_path)
    first = weights_fingerprint(folder)
    assert len(first) == 16 and weights_fingerprint(folder) == first == model_fingerprint(str(folder))
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    assert weights_fingerprint(folder) != first
    assert model_fingerprint("tiny") == "preset-tiny"
