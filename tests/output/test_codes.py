"""The codes file: round trips with the tiny model, every load error with its message, the VQ-VAE fingerprint."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from jukebox_dist.errors import InputError
from jukebox_dist.model import Jukebox
from jukebox_dist.output.codes import FORMAT, check_codes_for, load_codes, save_codes, vqvae_fingerprint

TOTAL = 1280  # ten top tokens of the tiny model (hops 128, 32, 8 in prior order)
HOPS = (128, 32, 8)
TOKENS = [TOTAL // h for h in HOPS]  # [10, 40, 160]


@pytest.fixture(scope="module")
def model() -> Jukebox:
    return Jukebox.from_pretrained("tiny", seed=0)


def random_codes(n: int = 2, tokens: list[int] = TOKENS, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (n, t), generator=g) for t in tokens]


def write_raw(path: Path, meta_dict: dict | None, **arrays: np.ndarray) -> Path:
    """A codes file written by hand, to make each kind of broken file."""
    if meta_dict is not None:
        arrays["meta"] = np.array(json.dumps(meta_dict))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.fixture()
def good(tmp_path: Path, model: Jukebox) -> tuple[Path, dict, dict[str, np.ndarray]]:
    """A valid file's path, its meta and its arrays, for tests that rewrite one part."""
    path = save_codes(tmp_path / "good.npz", random_codes(), model=model, total_length=TOTAL)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return path, json.loads(str(arrays.pop("meta"))), arrays


def load_error(path: Path, model: Jukebox) -> str:
    with pytest.raises(InputError) as info:
        load_codes(path, model)
    return str(info.value)


# ---- round trips ------------------------------------------------------------------------------------------------
def test_round_trip(tmp_path: Path, model: Jukebox) -> None:
    codes = random_codes()
    extra = {"seeds": [7, np.int64(8)], "artist": "Alan Jackson", "genres": ["country"], "lyrics": "la la",
             "sampling": {"temperature": [0.98, 0.99, 0.99], "top_k": 0}}
    path = save_codes(tmp_path / "songs.npz", codes, model=model, total_length=TOTAL, extra=extra)
    assert path == tmp_path / "songs.npz" and sorted(p.name for p in tmp_path.iterdir()) == ["songs.npz"]
    with np.load(path, allow_pickle=False) as npz:
        assert {npz[k].dtype for k in ("top", "middle", "bottom")} == {np.dtype(np.int16)}

    back, meta = load_codes(path, model)
    assert all(b.dtype == torch.int64 and torch.equal(b, c) for b, c in zip(back, codes))
    assert meta == {"format": FORMAT, "version": 1, "sample_rate": 44100, "total_length": TOTAL,
                    "hop_lengths": [128, 32, 8], "nb_discrete_codes": 64, "vqvae_fingerprint": vqvae_fingerprint(model),
                    "model": "tiny", **extra, "seeds": [7, 8]}


def test_round_trip_with_empty_and_partial_levels(tmp_path: Path, model: Jukebox) -> None:
    codes = random_codes(n=3, tokens=[10, 12, 0])  # top done, middle partial, bottom not sampled
    back, _ = load_codes(save_codes(tmp_path / "part.npz", codes, model=model, total_length=TOTAL), model)
    assert [tuple(b.shape) for b in back] == [(3, 10), (3, 12), (3, 0)]
    assert all(torch.equal(b, c) for b, c in zip(back, codes))


def test_save_wants_an_npz_name(tmp_path: Path, model: Jukebox) -> None:
    with pytest.raises(InputError) as info:
        save_codes(tmp_path / "codes", random_codes(), model=model, total_length=TOTAL)
    assert str(info.value) == f"{tmp_path / 'codes'}: a codes file must end in .npz"
    assert not list(tmp_path.iterdir())


def test_save_rejects_bad_codes_before_writing(tmp_path: Path, model: Jukebox) -> None:
    path = tmp_path / "x.npz"
    codes = random_codes()
    codes[2][0, 0] = 70000  # int16 would wrap this into a plausible-looking code
    with pytest.raises(InputError, match=r"bottom codes range over \[0, 70000\]; expected values in \[0, 64\)"):
        save_codes(path, codes, model=model, total_length=TOTAL)
    with pytest.raises(InputError, match="extra metadata may not set"):
        save_codes(path, random_codes(), model=model, total_length=TOTAL, extra={"total_length": 5})
    assert not list(tmp_path.iterdir())


# ---- fingerprint ------------------------------------------------------------------------------------------------
def test_fingerprint_follows_the_vqvae(model: Jukebox) -> None:
    same = Jukebox.from_pretrained("tiny", seed=0)
    other = Jukebox.from_pretrained("tiny", seed=1)
    fp = vqvae_fingerprint(model)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert vqvae_fingerprint(same) == fp
    assert vqvae_fingerprint(other) != fp
    with torch.no_grad():
        same.vqvae.bottleneck.level_blocks[2].codebook[5, 3] += 1e-3  # one entry of one codebook
    assert vqvae_fingerprint(same) != fp


def test_codes_from_another_vqvae_are_refused(tmp_path: Path, model: Jukebox) -> None:
    other = Jukebox.from_pretrained("tiny", seed=1)
    path = save_codes(tmp_path / "other.npz", random_codes(), model=other, total_length=TOTAL)
    assert load_error(path, model) == (
        f"{path}: these codes were made with a different VQ-VAE (fingerprint {vqvae_fingerprint(other)}), this "
        f"model's is {vqvae_fingerprint(model)}; load the model that made them (meta says 'tiny')")


# ---- load errors ------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path, model: Jukebox) -> None:
    p = tmp_path / "none.npz"
    assert load_error(p, model) == f"{p}: no such file; expected a codes .npz written by `jukebox-dist sample`"


@pytest.mark.parametrize("content", [b"hello", b"\x93NUMPY", b""])
def test_not_an_npz(tmp_path: Path, model: Jukebox, content: bytes) -> None:
    p = tmp_path / "codes.npz"
    p.write_bytes(content)
    assert load_error(p, model) == (f"{p}: not an .npz file (not a zip archive); expected a codes file written by "
                                    "`jukebox-dist sample`")


def test_truncated_file(model: Jukebox, good) -> None:
    path = good[0]
    path.write_bytes(path.read_bytes()[:-30])  # the zip directory at the end is gone
    assert "not an .npz file" in load_error(path, model)


@pytest.mark.parametrize("member,reason", [
    (b"garbage", "meta is not a numpy array"),
    (b"\x93NUMPY\x01\x00garbage", "EOF: reading array header, expected 24935 bytes got 5"),
    (b"\x93NUMPY\x01\x00\x0a\x00{'descr':\n", "TokenError: ('EOF in multi-line statement', (2, 0))"),
])
def test_corrupt_member(tmp_path: Path, model: Jukebox, member: bytes, reason: str) -> None:
    p = tmp_path / "codes.npz"
    with zipfile.ZipFile(p, "w") as z:
        for name in ("meta", "top", "middle", "bottom"):
            z.writestr(f"{name}.npy", member)
    assert load_error(p, model) == f"{p}: corrupt .npz ({reason})"


def test_damaged_member_data(model: Jukebox, good) -> None:
    path = good[0]
    data = bytearray(path.read_bytes())
    at = data.find(FORMAT.encode("utf-32-le"))  # inside the meta member (savez stores, does not compress)
    assert at > 0
    data[at:at + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    assert load_error(path, model).startswith(f"{path}: corrupt .npz (BadZipFile: Bad CRC-32")


def test_pickled_content_is_never_loaded(tmp_path: Path, model: Jukebox, good) -> None:
    _, meta, arrays = good
    p = write_raw(tmp_path / "evil.npz", meta, **{**arrays, "top": np.array([{"a": 1}], dtype=object)})
    assert load_error(p, model) == (f"{p}: contains pickled Python objects, which are never loaded (they can run "
                                    "code); expected plain integer arrays")


def test_missing_arrays(tmp_path: Path, model: Jukebox, good) -> None:
    _, meta, arrays = good
    p = write_raw(tmp_path / "half.npz", meta, top=arrays["top"], middle=arrays["middle"])
    assert load_error(p, model) == (f"{p}: missing arrays ['bottom']; a codes file holds meta, top, middle, bottom "
                                    "(it has ['meta', 'middle', 'top'])")


@pytest.mark.parametrize("array,message", [
    (np.zeros((2, 40), np.float32), "middle has dtype float32; expected integer codes (int16)"),
    (np.zeros(40, np.int16), "middle has shape (40,); expected (n_samples, tokens)"),
    (np.zeros((3, 40), np.int16), "levels hold different numbers of samples {'top': 2, 'middle': 3, 'bottom': 2}; "
                                  "expected the same for all"),
    (np.zeros((2, 41), np.int16), "the middle level has 41 tokens, more than the 40 of a song of 1280 samples "
                                  "(hop 32)"),
    (np.full((2, 40), 64, np.int16), "middle codes range over [64, 64]; expected values in [0, 64) for this VQ-VAE"),
    (np.full((2, 40), -1, np.int16), "middle codes range over [-1, -1]; expected values in [0, 64) for this VQ-VAE"),
])
def test_bad_middle_array(tmp_path: Path, model: Jukebox, good, array: np.ndarray, message: str) -> None:
    _, meta, arrays = good
    p = write_raw(tmp_path / "bad.npz", meta, **{**arrays, "middle": array})
    assert load_error(p, model) == f"{p}: {message}"


@pytest.mark.parametrize("change,message", [
    ({"version": 2}, "codes format version 2; this jukebox-dist reads version 1"),
    ({"format": "other"}, f"meta does not describe a {FORMAT} file"),
    ({"vqvae_fingerprint": None}, "meta lacks ['vqvae_fingerprint']"),
    ({"sample_rate": 22050}, "codes for 22050 Hz with hops [128, 32, 8]; this model runs at 44100 Hz with hops "
                             "[128, 32, 8]"),
])
def test_bad_meta(tmp_path: Path, model: Jukebox, good, change: dict, message: str) -> None:
    _, meta, arrays = good
    meta = {k: v for k, v in {**meta, **change}.items() if v is not None}
    p = write_raw(tmp_path / "meta.npz", meta, **arrays)
    assert load_error(p, model) == f"{p}: {message}"


def test_meta_not_json(tmp_path: Path, model: Jukebox, good) -> None:
    p = write_raw(tmp_path / "meta.npz", None, meta=np.array("{not json"), **good[2])
    assert load_error(p, model).startswith(f"{p}: meta is not valid JSON (")


# ---- what each mode accepts -------------------------------------------------------------------------------------
def test_check_codes_for_modes() -> None:
    partial = random_codes(tokens=[6, 24, 0])
    check_codes_for("continue", partial, TOTAL, HOPS)  # a partial top level is what continue extends
    check_codes_for("upsample", random_codes(tokens=[10, 0, 0]), TOTAL, HOPS)
    with pytest.raises(InputError) as info:
        check_codes_for("upsample", partial, TOTAL, HOPS, source="in.npz")
    assert str(info.value) == ("in.npz: upsample needs complete top-level codes: it has 6 tokens, expected 10 for "
                               "1280 samples; continue it first")
    with pytest.raises(InputError, match="the top level has 11 tokens, more than the 10"):
        check_codes_for("continue", random_codes(tokens=[11, 0, 0]), TOTAL, HOPS)
