"""report.html and the spectrogram PNGs: valid images, every sample on the page with its player and image,
user text escaped, an error row replaced by the later ok of the same sample."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from jukebox_dist.output.report import HEIGHT, WIDTH, png, spectrogram_png
from jukebox_dist.output.store import OutputStore

SR = 44100


def _decode_png(data: bytes) -> np.ndarray:
    """A minimal reader for what png() writes (one IDAT, filter 0): (H, W, 3)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks[tag] = body
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_png_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(_decode_png(png(img)), img)


def test_spectrogram_shows_a_tone_at_its_frequency():
    t = np.arange(SR // 2) / SR
    low, high = (_decode_png(spectrogram_png(np.sin(2 * np.pi * f * t), SR)) for f in (1000.0, 15000.0))
    assert low.shape == high.shape == (HEIGHT, WIDTH, 3)
    brightest_row = [int(img.sum(axis=(1, 2)).argmax()) for img in (low, high)]
    # Low frequencies are at the bottom: the 1 kHz tone's brightest row is far below the 15 kHz tone's.
    assert brightest_row[0] > brightest_row[1] + HEIGHT // 2
    short = _decode_png(spectrogram_png(np.zeros(300, dtype=np.float32), SR))  # shorter than one FFT, silent
    assert short.shape == (HEIGHT, WIDTH, 3)


def _row(sid: str, status: str = "ok", **extra) -> dict:
    base = {"sample_id": sid, "song_id": "song<1>", "artist": "A & B", "genres": ["pop"],
            "lyrics": "<script>alert(1)</script>", "seed": 3, "seconds": 0.25, "total_length": SR // 4,
            "mode": "ancestral", "model": "tiny", "temperature": [0.98, 0.99, 0.99], "top_k": 0, "top_p": 0.0,
            "codes_top": [1], "codes_middle": [], "codes_bottom": [], "status": status}
    return {**base, **extra}


def test_report_lists_samples_with_players_and_escapes_text(tmp_path: Path):
    store = OutputStore(str(tmp_path), "night<ly>")
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR // 4) / SR)).astype(np.float32)
    store.write_samples([_row("s1", "error", error="top.sample failed: <boom>", finished_at=1.0)], [None], SR)
    store.write_samples([_row("s1", finished_at=2.0), _row("s2", finished_at=3.0)], [tone, tone], SR)
    store.write_samples([_row("s3", "error", error="OOM", finished_at=4.0)], [None], SR)
    path = Path(store.write_report())
    assert path == tmp_path / "report.html"
    page = path.read_text()
    assert "night&lt;ly&gt;" in page and "2 of 3 samples finished" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "A &amp; B" in page
    for sid in ("s1", "s2"):
        assert f'src="audio/{sid}.flac"' in page and f'src="report/{sid}.png"' in page
        assert (tmp_path / "audio" / f"{sid}.flac").is_file()
        assert _decode_png((tmp_path / "report" / f"{sid}.png").read_bytes()).shape == (HEIGHT, WIDTH, 3)
    assert "<boom>" not in page and "top.sample failed" not in page  # s1's error row is replaced by its ok
    assert "failed: OOM" in page and not (tmp_path / "report" / "s3.png").exists()
