"""Artist, genre and lyrics vocabularies -> the label rows the priors are conditioned on (v2 and v3).

Same files and the same ids as the reference `JukeboxTokenizer` (transformers 4.40.2), with three
differences, each on purpose:

* stateless: the reference swaps its lyrics vocabulary for the v2 one, for good, on the first call with
  `version[0] == "v2"`; here nothing changes after construction.
* `+` in lyrics follows the original OpenAI Jukebox (jukebox/data/text_processor.py), which trained the
  models: v2 keeps `+` with its id (70), v3 deletes it. The reference does the opposite (v2 deletes it,
  v3 keeps it and maps it to 0).
* more genres than `n_genres` raise `VocabError` (the reference silently returns a longer row).

Row p of `tok(...)["input_ids"]` is `[[0, 0, 0, artist, genre_1 .. genre_n_genres (-1 = none), lyrics...]]`;
the three zeros are placeholders for total length, offset and sample length, and only row 0 has lyrics.
"""
from __future__ import annotations

import difflib
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from jukebox_dist.errors import VocabError

log = logging.getLogger(__name__)

ARTISTS_FILE = "artists.json"
GENRES_FILE = "genres.json"
LYRICS_FILE = "lyrics.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
UNK_TOKEN = "<|endoftext|>"  # what the reference writes as its unk token; not used for ids

VERSIONS = ("v2", "v3")
DEFAULT_VERSION = ("v3", "v2", "v2")
DEFAULT_N_GENRES = 5
DEFAULT_MAX_N_LYRIC_TOKENS = 512  # kept for the files' sake: the reference never applies it

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
BUNDLED_PRESETS = ("tiny", "tiny5b")
# tiny5b (the 5b-style tiny model) reads the same vocabulary with the 5b's versions: v2 labels and lyrics everywhere.
PRESET_VERSIONS = {"tiny5b": ("v2", "v2", "v2")}
MODEL_PRESETS = ("1b_lyrics", "5b_lyrics")  # their vocabularies ship with the weights, not with us

# v2 lyrics: the reference and the original hard-code this vocabulary (ids 1..79, "<unk>" 0).
V2_LYRIC_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,:;!?-+'\"()[] \t\n"
V2_LYRICS_VOCAB: Mapping[str, int] = MappingProxyType(
    {"<unk>": 0, **{c: i + 1 for i, c in enumerate(V2_LYRIC_CHARS)}})
LYRIC_VOCAB_SIZES = {"v3": 79, "v2": 80}  # v3 lost the "+"

# Characters outside these classes are deleted before lookup (the reference's regex, '+' aside).
_OOV_KEEP_PLUS = re.compile(r"[^A-Za-z0-9.,:;!?\-+'\"()\[\] \t\n]+")
_OOV_DROP_PLUS = re.compile(r"[^A-Za-z0-9.,:;!?\-'\"()\[\] \t\n]+")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.")
_UNDERSCORES = re.compile(r"_+")


def normalize_v2(name: str) -> str:
    """The reference's `_normalize`: lower case, anything outside [a-z0-9.] becomes '_', runs of '_'
    collapse, '_' stripped at the ends. "Céline Dion" -> "c_line_dion"."""
    text = "".join(c if c in _NAME_CHARS else "_" for c in name.lower())
    return _UNDERSCORES.sub("_", text).strip("_")


def clean_lyrics(lyrics: str, keep_plus: bool) -> str:
    """NFD and drop combining marks (é -> e), backslash -> newline, delete characters outside the vocab."""
    text = "".join(c for c in unicodedata.normalize("NFD", lyrics) if unicodedata.category(c) != "Mn")
    text = text.replace("\\", "\n")
    return (_OOV_KEEP_PLUS if keep_plus else _OOV_DROP_PLUS).sub("", text)


class JukeboxTokenizer:
    """Artists, genres and lyrics -> one LongTensor row per prior. Immutable after construction.

    `artists` / `genres` map names to ids and hold both v3 keys ("zac brown band") and v2 keys
    ("zac_brown_band.v2"); several names may share an id (the original's files do: "unknown", "various"
    and "" are all 0). `lyrics` maps characters to ids (79 entries, v3, or 80, v2). `version` has one entry
    per prior ("v3" or "v2"); `version[0]` also picks the lyrics vocabulary: "v2" uses the built-in
    80-entry one, as the reference does. `n_genres` must equal the model's `max_nb_genres`.
    """

    def __init__(self, artists: Mapping[str, int], genres: Mapping[str, int], lyrics: Mapping[str, int],
                 version: Sequence[str] = DEFAULT_VERSION, n_genres: int = DEFAULT_N_GENRES,
                 max_n_lyric_tokens: int = DEFAULT_MAX_N_LYRIC_TOKENS) -> None:
        self.artists: Mapping[str, int] = MappingProxyType(_check_vocab(artists, "artists"))
        self.genres: Mapping[str, int] = MappingProxyType(_check_vocab(genres, "genres"))
        self.lyrics: Mapping[str, int] = MappingProxyType(_check_lyrics_vocab(lyrics, "lyrics"))
        self.version: tuple[str, ...] = _check_version(version, "version")
        self.n_genres: int = _check_int(n_genres, "n_genres", minimum=1)
        self.max_n_lyric_tokens: int = _check_int(max_n_lyric_tokens, "max_n_lyric_tokens", minimum=0)

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path) -> JukeboxTokenizer:
        """A folder with artists.json, genres.json, lyrics.json (and optionally tokenizer_config.json),
        or the preset "tiny" (bundled). "1b_lyrics" / "5b_lyrics" ship no vocabulary: pass the model folder."""
        folder = Path(path_or_preset)
        if not folder.is_dir():
            folder = _preset_folder(str(path_or_preset))
        artists = _check_vocab(_read_json(folder / ARTISTS_FILE), str(folder / ARTISTS_FILE))
        genres = _check_vocab(_read_json(folder / GENRES_FILE), str(folder / GENRES_FILE))
        lyrics = _check_lyrics_vocab(_read_json(folder / LYRICS_FILE), str(folder / LYRICS_FILE))
        config_path = folder / CONFIG_FILE
        config = _read_json(config_path) if config_path.is_file() else {}
        if not isinstance(config, dict):
            raise VocabError(f"{config_path}: expected a JSON object with 'version', 'n_genres', "
                             f"'max_n_lyric_tokens'; got a JSON {type(config).__name__}")
        where = str(config_path)
        version = PRESET_VERSIONS.get(str(path_or_preset), config.get("version", list(DEFAULT_VERSION)))
        tok = cls(artists, genres, lyrics,
                  version=_check_version(version, f"{where}: version"),
                  n_genres=_check_int(config.get("n_genres", DEFAULT_N_GENRES), f"{where}: n_genres", 1),
                  max_n_lyric_tokens=_check_int(config.get("max_n_lyric_tokens", DEFAULT_MAX_N_LYRIC_TOKENS),
                                                f"{where}: max_n_lyric_tokens", 0))
        log.debug("tokenizer from %s: %d artist and %d genre names, version %s, n_genres %d",
                  folder, len(artists), len(genres), tok.version, tok.n_genres)
        return tok

    def save_pretrained(self, folder: str | Path) -> list[Path]:
        """Write the files the reference writes; `from_pretrained(folder)` (ours or the reference's) reads them back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        contents = {
            ARTISTS_FILE: dict(self.artists), GENRES_FILE: dict(self.genres), LYRICS_FILE: dict(self.lyrics),
            CONFIG_FILE: {"tokenizer_class": "JukeboxTokenizer", "version": list(self.version),
                          "n_genres": self.n_genres, "max_n_lyric_tokens": self.max_n_lyric_tokens,
                          "unk_token": UNK_TOKEN},
            SPECIAL_TOKENS_FILE: {"unk_token": UNK_TOKEN},
        }
        paths = []
        for name, data in contents.items():
            path = folder / name
            path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            paths.append(path)
        return paths

    # ------------------------------------------------------------------------------------------ labels
    def __call__(self, artist: str, genres: str | Sequence[str], lyrics: str = "") -> dict[str, list[torch.Tensor]]:
        """{"input_ids": [LongTensor (1, 4 + n_genres + L_p) for each prior]}; L_p = 0 for p > 0.
        Unknown artists, genres and characters become 0, as in the reference (see `unknown`)."""
        lyric_ids = self.lyric_ids(lyrics)
        rows = []
        for p, version in enumerate(self.version):
            artist_id = self.artists.get(self.artist_key(artist, version), 0)
            genre_ids = [self.genres.get(key, 0) for key in self.genre_keys(genres, version)]
            row = [0, 0, 0, artist_id, *genre_ids, *[-1] * (self.n_genres - len(genre_ids))]
            if p == 0:
                row += lyric_ids
            rows.append(torch.tensor([row], dtype=torch.long))  # (1, 4 + n_genres + L_p)
        for problem in self.unknown(artist, genres):
            log.warning("%s (it gets id 0)", problem)
        return {"input_ids": rows}

    def artist_key(self, artist: str, version: str) -> str:
        return artist.lower() if version == "v3" else normalize_v2(artist) + ".v2"

    def genre_names(self, genres: str | Sequence[str], version: str) -> list[str]:
        """The genres in `genres`. A string is the reference's input: v3 takes it whole as one genre, v2
        splits it on "_". A list holds one genre per element (never split). At most `n_genres` of them."""
        if isinstance(genres, str):
            names = [genres] if version == "v3" else genres.split("_")
        else:
            names = list(genres)
            bad = [g for g in names if not isinstance(g, str)]
            if bad:
                raise TypeError(f"genres must be strings; got {bad!r}")
        if len(names) > self.n_genres:
            raise VocabError(f"{len(names)} genres {names!r} (for {version}) but this model takes at most "
                             f"n_genres={self.n_genres}")
        return names

    def genre_keys(self, genres: str | Sequence[str], version: str) -> list[str]:
        """The vocabulary keys of `genre_names(genres, version)`."""
        return [g.lower() if version == "v3" else normalize_v2(g) + ".v2" for g in self.genre_names(genres, version)]

    def lyric_ids(self, lyrics: str) -> list[int]:
        """Ids of the top prior's lyrics: normalised as in the reference, '+' as in the original (see module doc)."""
        vocab = self._lyrics_vocab()
        return [vocab.get(c, 0) for c in clean_lyrics(lyrics, keep_plus="+" in vocab)]

    def lyric_vocab_size(self, prior: int) -> int:
        """Size of the lyrics vocabulary that `version[prior]` implies (only prior 0 gets lyric tokens)."""
        if not 0 <= prior < len(self.version):
            raise ValueError(f"prior {prior} out of range: this tokenizer has {len(self.version)} priors")
        if prior == 0:
            return len(self._lyrics_vocab())
        return LYRIC_VOCAB_SIZES[self.version[prior]]

    def _lyrics_vocab(self) -> Mapping[str, int]:
        return V2_LYRICS_VOCAB if self.version[0] == "v2" else self.lyrics

    # ------------------------------------------------------------------------------------ validation
    def unknown(self, artist: str, genres: str | Sequence[str]) -> list[str]:
        """One message per artist or genre name that some prior's vocabulary lacks (it would get id 0),
        with the closest known names; [] when everything is known."""
        missing: dict[tuple[str, str], set[int]] = {}  # (kind, name as given) -> priors lacking it
        for p, version in enumerate(self.version):
            if self.artist_key(artist, version) not in self.artists:
                missing.setdefault(("artist", artist), set()).add(p)
            for name, key in zip(self.genre_names(genres, version), self.genre_keys(genres, version)):
                if key not in self.genres:
                    missing.setdefault(("genre", name), set()).add(p)
        messages = []
        for (kind, name), lacking in missing.items():
            priors = sorted(lacking)
            where = "" if len(priors) == len(self.version) else f" for prior(s) {', '.join(map(str, priors))}"
            versions = sorted({self.version[p] for p in priors}, reverse=True)
            message = f"unknown {kind} {name!r}{where} (not in the {' or '.join(versions)} vocabulary)"
            matches = self.close_matches(name, kind, version=versions[0])
            if matches:
                message += f"; did you mean {', '.join(repr(m) for m in matches)}?"
            messages.append(message)
        return messages

    def close_matches(self, name: str, kind: str, n: int = 5, version: str | None = None) -> list[str]:
        """Known artist or genre names close to `name` (difflib), best first. Names come from the v3 keys
        when a prior uses v3 (or `version="v3"`), else from the v2 keys without their ".v2"."""
        if kind not in ("artist", "genre"):
            raise ValueError(f"kind must be 'artist' or 'genre', not {kind!r}")
        version = version or ("v3" if "v3" in self.version else "v2")
        vocab = self.artists if kind == "artist" else self.genres
        if version == "v3":
            query, names = name.lower(), [k for k, i in vocab.items() if i != 0 and not k.endswith(".v2")]
        else:
            query, names = normalize_v2(name), [k[:-3] for k, i in vocab.items() if i != 0 and k.endswith(".v2")]
        return difflib.get_close_matches(query, names, n=n)


# ----------------------------------------------------------------------------------------- file checks
def _preset_folder(name: str) -> Path:
    if name in BUNDLED_PRESETS:
        return ASSETS_DIR / "tiny"
    if name in MODEL_PRESETS:
        raise VocabError(f"preset {name!r} has no bundled vocabulary: the released artist, genre and lyrics "
                         f"files come with the model. Pass the model folder (the one with {ARTISTS_FILE}, "
                         f"{GENRES_FILE} and {LYRICS_FILE}) instead of {name!r}")
    raise VocabError(f"{name!r} is neither a folder nor a tokenizer preset; expected a folder with "
                     f"{ARTISTS_FILE}, {GENRES_FILE} and {LYRICS_FILE}, or the preset 'tiny'")


def _read_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocabError(f"{path}: file not found; a tokenizer folder needs {ARTISTS_FILE}, {GENRES_FILE} "
                         f"and {LYRICS_FILE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabError(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VocabError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         f"expected an object like {{\"name\": 0}}") from None


def _check_vocab(data: object, source: str) -> dict[str, int]:
    """A non-empty {str: int >= 0} mapping, or VocabError naming `source`."""
    if not isinstance(data, Mapping):
        raise VocabError(f"{source}: expected a JSON object mapping names to integer ids, "
                         f"got {type(data).__name__}")
    if not data:
        raise VocabError(f"{source}: is empty; expected names mapped to integer ids")
    for key, value in data.items():
        if not isinstance(key, str):
            raise VocabError(f"{source}: key {key!r} is a {type(key).__name__}; expected a string")
        if isinstance(value, bool) or not isinstance(value, int):
            raise VocabError(f"{source}: the id of {key!r} is {value!r}; expected a non-negative integer")
        if value < 0:
            raise VocabError(f"{source}: the id of {key!r} is {value}; expected a non-negative integer")
    return dict(data)


def _check_lyrics_vocab(data: object, source: str) -> dict[str, int]:
    vocab = _check_vocab(data, source)
    if len(vocab) not in LYRIC_VOCAB_SIZES.values():
        raise VocabError(f"{source}: {len(vocab)} entries; a lyrics vocabulary has 79 (v3: '<unk>' and 78 "
                         f"characters) or 80 (v2: the same plus '+')")
    seen: dict[int, str] = {}
    for key, value in vocab.items():
        if value in seen:
            raise VocabError(f"{source}: {seen[value]!r} and {key!r} share id {value}; lyric ids must be unique")
        seen[value] = key
    return vocab


def _check_version(version: object, source: str) -> tuple[str, ...]:
    if isinstance(version, str) or not isinstance(version, Sequence) or not version \
            or any(v not in VERSIONS for v in version):
        raise VocabError(f"{source}: {version!r}; expected a non-empty list of 'v3' / 'v2', one per prior, "
                         f"e.g. {list(DEFAULT_VERSION)}")
    return tuple(version)


def _check_int(value: object, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise VocabError(f"{source}: {value!r}; expected an integer >= {minimum}")
    return value
