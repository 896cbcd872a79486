"""Window maths: the reference's window starts, the released models' window counts, upsampler spans."""
from __future__ import annotations

import pytest

from jukebox_dist.sampling.windows import Window, hop_length, level_tokens, upper_span, window_starts, windows


def _reference_get_starts(total_length, n_ctx, hop_length):  # transformers 4.40.2 get_starts, verbatim logic
    starts = []
    for start in range(0, total_length - n_ctx + hop_length, hop_length):
        if start + n_ctx >= total_length:
            start = total_length - n_ctx
        starts.append(start)
    return starts


@pytest.mark.parametrize("n_ctx, hop", [(32, 4), (128, 64), (8192, 1024), (8192, 4096), (6144, 768)])
def test_starts_match_the_reference(n_ctx, hop):
    for n in list(range(n_ctx, n_ctx + 3 * hop + 5)) + [n_ctx * 7 + 3, n_ctx * 20 + hop // 2]:
        assert window_starts(n, n_ctx, hop) == _reference_get_starts(n, n_ctx, hop)


def test_every_token_is_covered_once_and_windows_end_at_the_song_end():
    for n in range(1, 300):
        ws = windows(n, 32, 4)
        assert ws[0].start == 0 and ws[-1].end == n
        covered, have = [], 0
        for w in ws:
            new = w.new_tokens(have)
            covered.extend(range(have, have + new))
            have += new
            assert w.end - w.start == min(32, n)
        assert covered == list(range(n))


def test_released_model_window_counts():
    """released-models.md: a 60 s song has 20,671 / 82,684 / 330,736 tokens in 14 / 20 / 80 windows (5b top),
    180 s has 62,015 / 248,060 / 992,240 in 54 / 60 / 242."""
    for seconds, expected in [(60, [(20671, 14), (82684, 20), (330736, 80)]),
                              (180, [(62015, 54), (248060, 60), (992240, 242)])]:
        total = int(seconds * 44100) // 128 * 128
        for (rtt, frac), (tokens, count) in zip([(128, 0.125), (32, 0.5), (8, 0.5)], expected):
            n = level_tokens(total, rtt)
            assert n == tokens
            assert len(windows(n, 8192, hop_length(frac, 8192))) == count


def test_short_song_is_one_partial_window():
    assert windows(20, 32, 4) == [Window(0, 20)]
    assert Window(0, 20).new_tokens(5) == 15


def test_upper_span_aligns_with_the_level_above():
    assert upper_span(Window(4096, 12288), 4) == (1024, 3072)
    with pytest.raises(ValueError, match="does not align"):
        upper_span(Window(6, 134), 4)


def test_bad_arguments():
    with pytest.raises(ValueError):
        window_starts(0, 32, 4)
    with pytest.raises(ValueError):
        window_starts(10, 32, 40)
