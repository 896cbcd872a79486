"""report.html: a listening page for a job's output folder, with a player, a spectrogram and the metadata of
every sample. Spectrograms are small PNG files (report/{sample_id}.png) written with each sample's audio, encoded
here with zlib alone, so the report needs no imaging library; the page links the audio and images by relative
path, so the folder can be moved or served as is."""
from __future__ import annotations

import html
import struct
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

WIDTH, HEIGHT = 480, 96  # spectrogram image size in pixels
FLOOR_DB = 80.0  # dynamic range shown below each sample's loudest bin
# A dark-to-bright colour ramp (black, purple, red, orange, pale yellow): loud is bright.
_RAMP = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], dtype=np.float64)


def spectrogram_png(audio: Any, sample_rate: int) -> bytes:
    """A mono signal -> a WIDTH x HEIGHT PNG of its log-magnitude spectrogram (time left to right, low
    frequencies at the bottom)."""
    x = torch.from_numpy(np.array(audio, dtype=np.float32)).flatten()  # a copy: Ray hands read-only arrays
    n_fft = 1024
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    hop = max(1, -(-x.numel() // WIDTH))
    spec = torch.stft(x, n_fft, hop_length=hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec + 1e-8)  # (n_fft / 2 + 1, frames)
    db = (db - db.max()).clamp(min=-FLOOR_DB) / FLOOR_DB + 1.0  # 0 (quiet) .. 1 (loudest)
    # Average the 513 frequency bins into HEIGHT rows and the frames into WIDTH columns.
    img = torch.nn.functional.adaptive_avg_pool2d(db[None, None], (HEIGHT, WIDTH))[0, 0].flip(0).numpy()
    level = img * (len(_RAMP) - 1)
    rgb = np.stack([np.interp(level, np.arange(len(_RAMP)), _RAMP[:, c]) for c in range(3)], axis=-1)
    return png(np.clip(rgb, 0, 255).astype(np.uint8))


def png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (8-bit RGB, no filtering)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in rgb)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def render_report(job: str, rows: Sequence[dict[str, Any]]) -> str:
    """The page for `rows` (samples table rows): one row per sample, its latest record (an ok after an error of
    the same sample replaces it). Every value from the manifest is escaped."""
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r.get("finished_at") or 0.0):
        if latest.get(row["sample_id"], {}).get("status") != "ok":
            latest[row["sample_id"]] = row
    ordered = [latest[sid] for sid in sorted(latest)]
    ok = sum(r["status"] == "ok" for r in ordered)
    seconds = sum(r["seconds"] or 0.0 for r in ordered if r["status"] == "ok")
    e = html.escape
    lines = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(job)}: jukebox-dist report</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:.4em;vertical-align:top;text-align:left}"
        "td.err{color:#b00}img{display:block;image-rendering:pixelated}audio{width:" + str(WIDTH) + "px}"
        "details{max-width:28em;white-space:pre-wrap}</style></head><body>",
        f"<h1>{e(job)}</h1>",
        f"<p>{ok} of {len(ordered)} samples finished, {seconds:.1f} s of audio; page written "
        f"{e(time.strftime('%Y-%m-%d %H:%M:%S'))}. Codes and every field are in samples/*.parquet.</p>",
        "<table><tr><th>sample</th><th>song</th><th>listen</th><th>settings</th></tr>",
    ]
    for r in ordered:
        sid = e(r["sample_id"])
        song = (f"<b>{e(r['artist'] or '')}</b><br>{e(', '.join(r['genres'] or []))}<br>{e(r['song_id'] or '')}"
                f"<details><summary>lyrics</summary>{e(r['lyrics'] or '')}</details>")
        if r["status"] == "ok" and r.get("audio_path"):
            listen = (f'<img src="report/{sid}.png" width="{WIDTH}" height="{HEIGHT}" alt="spectrogram of {sid}">'
                      f'<audio controls preload="none" src="{e(r["audio_path"])}"></audio>')
            cls = ""
        else:
            listen, cls = f"failed: {e(r.get('error') or 'unknown error')}", ' class="err"'
        temps = ", ".join(f"{t:g}" for t in (r.get("temperature") or []))
        settings = (f"{r['seconds']:.2f} s, seed {r['seed']}, {e(r['mode'] or '')}<br>temperature {e(temps)}, "
                    f"top_k {r['top_k']}, top_p {r['top_p']:g}<br>{e(r['model'] or '')} "
                    f"<small>{e(r.get('model_hash') or '')}</small>")
        lines.append(f"<tr><td>{sid}</td><td>{song}</td><td{cls}>{listen}</td><td>{settings}</td></tr>")
    lines += ["</table>", "</body></html>", ""]
    return "\n".join(lines)
