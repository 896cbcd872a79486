"""The small two-level job the tensor-parallel Ray tests run at tensor_parallel 1 and 2."""
from __future__ import annotations

from pathlib import Path

import yaml


def write_tp_job(tmp_path: Path, tp: int, seconds: float) -> tuple[Path, Path]:
    """Writes tmp_path/tp{tp}.yaml (two takes of one song, top + middle, output tmp_path/tp{tp}); returns
    (manifest, output folder)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / f"tp{tp}"
    data = {"name": f"tp{tp}", "model": "tiny", "output": str(out), "mode": "ancestral", "levels": ["top", "middle"],
            "sampling": {"batch": {"top": 2, "middle": 2, "bottom": 2}},
            "songs": [{"artist": "Alan Jackson", "genres": ["country"], "lyrics": "porch light",
                       "seconds": seconds, "takes": 2, "seed": 3}],
            "resources": {"top_prior": {"tensor_parallel": tp, "cpus": 0.5},
                          "upsamplers": {"middle": {"cpus": 0.25}, "bottom": {"cpus": 0.25}},
                          "decoders": {"cpus": 0.25}}}
    path = tmp_path / f"tp{tp}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, out
