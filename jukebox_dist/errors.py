"""Typed exceptions for errors a user can fix: bad config, checkpoint, vocab, audio or input.

Each carries a message that says what was wrong and, where it helps, what to do instead. The command line
prints that message on one line and exits with status 2; internal invariants use asserts, not these.
"""

from __future__ import annotations

__all__ = ["JukeboxError", "ConfigError", "CheckpointError", "VocabError", "AudioError", "InputError"]


class JukeboxError(Exception):
    """Base class of every user-facing error in jukebox_dist."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(JukeboxError):
    """A model config (config.json or a preset) is missing, malformed or inconsistent."""


class CheckpointError(JukeboxError):
    """Weights are missing, unreadable, or do not match the model config."""


class VocabError(JukeboxError):
    """An artist, genre or lyric vocabulary is missing or does not contain what was asked for."""


class AudioError(JukeboxError):
    """An audio file cannot be read or written, or has the wrong rate, channels or length."""


class InputError(JukeboxError):
    """A command-line argument, manifest value or output path is invalid."""
