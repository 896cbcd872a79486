"""Pure integer maths of windowed sampling, shared by the single-process sampler and the job scheduler.

A level of a song has `n_tokens` tokens; a prior sees `n_ctx` at a time. Windows start every `hop` tokens and
the last is snapped to end exactly at the song's end (the reference's get_starts). A song shorter than one
window is one partial window. An upsampler window [s, e) is conditioned on tokens [s/r, e/r) of the level
above, r being the ratio of their token rates (4 for the released models).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int  # first token of the window (this level)
    end: int  # one past the last token: start + n_ctx, or the song's end for a partial window

    def new_tokens(self, have: int) -> int:
        """Tokens this window adds when the level already has `have` tokens (0 when it is already covered)."""
        return max(0, self.end - max(have, self.start))


def level_tokens(total_length: int, raw_to_tokens: int) -> int:
    """Tokens of a level for a song of `total_length` audio samples."""
    return total_length // raw_to_tokens


def window_starts(n_tokens: int, n_ctx: int, hop: int) -> list[int]:
    if n_tokens <= 0 or n_ctx <= 0 or not 0 < hop <= n_ctx:
        raise ValueError(f"need n_tokens > 0, n_ctx > 0 and 0 < hop <= n_ctx; got {n_tokens}, {n_ctx}, {hop}")
    if n_tokens <= n_ctx:
        return [0]
    starts = []
    for start in range(0, n_tokens - n_ctx + hop, hop):
        starts.append(min(start, n_tokens - n_ctx))  # the last window ends exactly at the song's end
    return starts


def windows(n_tokens: int, n_ctx: int, hop: int) -> list[Window]:
    return [Window(s, min(s + n_ctx, n_tokens)) for s in window_starts(n_tokens, n_ctx, hop)]


def upper_span(window: Window, ratio: int) -> tuple[int, int]:
    """Tokens [start, end) of the level above that condition an upsampler window."""
    if window.start % ratio or window.end % ratio:
        raise ValueError(f"window [{window.start}, {window.end}) does not align with the level above "
                         f"(its bounds must be multiples of {ratio})")
    return window.start // ratio, window.end // ratio


def hop_length(hop_fraction: float, n_ctx: int) -> int:
    return max(1, int(hop_fraction * n_ctx))
