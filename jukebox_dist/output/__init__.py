"""Output: audio files (primes in, songs out), codes files, and safe output paths. No Ray here."""
from jukebox_dist.output.audio import atomic_write, read_prime, resample, safe_join, write_audio
from jukebox_dist.output.codes import check_codes_for, load_codes, save_codes, vqvae_fingerprint

__all__ = ["atomic_write", "check_codes_for", "load_codes", "read_prime", "resample", "safe_join", "save_codes",
           "vqvae_fingerprint", "write_audio"]
