"""Plain-PyTorch Jukebox: configs, VQ-VAE, priors, tokenizer and checkpoint loading. No Ray, YAML or pydantic here."""
from jukebox_dist.model.config import AttentionKind, JukeboxConfig, PriorConfig, VQVAEConfig, load_preset, tiny_config
from jukebox_dist.model.jukebox import Jukebox
from jukebox_dist.model.tokenizer import JukeboxTokenizer

__all__ = ["AttentionKind", "Jukebox", "JukeboxConfig", "JukeboxTokenizer", "PriorConfig", "VQVAEConfig",
           "load_preset", "tiny_config"]
