"""jukebox-dist: a plain-PyTorch Jukebox and a Ray system for generating many songs in batch."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jukebox-dist")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"

__all__ = ["__version__"]
