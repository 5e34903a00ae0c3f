"""The bundled model configs in `model_specs/` (offline), and resolving a MODEL argument.

MODEL is a bundled id (exact match only; close matches are *suggested*, never accepted), a path to a
config.json, or a folder holding one. Hub ids are resolved by `kvplan.hub`, not here: this module
never touches the network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from kvplan.errors import UnknownModelError, UnsupportedConfigError
from kvplan.files import read_limited
from kvplan.layers import ModelArch
from kvplan.paths import bundled

MAX_CONFIG_BYTES = 4 << 20  # the largest real config.json is a few hundred KiB
MAX_SOURCES_BYTES = 1 << 20  # model_specs/SOURCES.md: one table row per bundled model


def specs_dir() -> Path:
    """Where bundled configs live: $KVPLAN_MODEL_SPECS, else the copy an installed wheel carries
    (kvplan/model_specs, put there by setup.py), else the source checkout's top-level model_specs/."""
    env = os.environ.get("KVPLAN_MODEL_SPECS")
    if env:
        return Path(env)
    return bundled("model_specs", "model_specs")


def _dir_name(model_id: str) -> str:
    return model_id.replace("/", "--", 1)


@lru_cache(maxsize=1)
def list_models() -> tuple[str, ...]:
    """Ids of every bundled model, sorted case-insensitively ("meta-llama/Llama-3.1-8B", ...)."""
    root = specs_dir()
    if not root.is_dir():
        return ()
    ids = [p.parent.name.replace("--", "/", 1) for p in root.glob("*/config.json")]
    return tuple(sorted(ids, key=str.lower))


def suggest(model: str, limit: int = 3) -> tuple[str, ...]:
    """Bundled ids close to `model` (for error messages; never used to pick a model)."""
    ids = list_models()
    lowered = {m.lower(): m for m in ids}
    names = {m.split("/", 1)[-1].lower(): m for m in ids}
    key = model.strip().lower()
    import difflib  # only on a miss (cold-start path)
    hits = difflib.get_close_matches(key, list(lowered), n=limit, cutoff=0.6)
    hits += difflib.get_close_matches(key.split("/")[-1], list(names), n=limit, cutoff=0.6)
    out = [lowered.get(h) or names[h] for h in hits]
    out += [m for m in ids if key and key.split("/")[-1] in m.lower()]
    return tuple(dict.fromkeys(out))[:limit]


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config.json (or the config.json inside a folder) as a dict.

    Read through `kvplan.files.read_limited`: a FIFO, a device (`/dev/zero`) or a link to one is
    refused without blocking, and at most MAX_CONFIG_BYTES are read.

    Raises:
        UnsupportedConfigError: not a regular file, too large, not JSON, or not a JSON object.
        FileNotFoundError: no such file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    return parse_json(read_limited(p, MAX_CONFIG_BYTES, "config.json"))


def parse_json(data: bytes | str) -> dict[str, Any]:
    """Decode config.json text; bare Infinity/NaN (seen in Nemotron-H) are accepted as Python does."""
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnsupportedConfigError("config.json", f"not valid JSON ({err})") from None
    except RecursionError:
        raise UnsupportedConfigError("config.json", "nested too deeply") from None
    except ValueError as err:  # an integer of more than 4,300 digits (Python's int-string limit)
        raise UnsupportedConfigError("config.json", f"not a usable JSON number ({str(err)[:80]})") from None
    if not isinstance(obj, dict):
        raise UnsupportedConfigError("config.json", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def bundled_config(model_id: str) -> dict[str, Any]:
    """The verbatim config.json of a bundled model.

    Raises:
        UnknownModelError: not bundled (with close-match suggestions).
    """
    if model_id not in list_models():
        raise UnknownModelError(model_id, suggest(model_id))
    return read_config_file(specs_dir() / _dir_name(model_id) / "config.json")


def parse_config(config: Mapping[str, Any], model_id: str = "custom") -> ModelArch:
    """kvplan.hf_config.parse_config, imported on first use: pydantic is not needed for a bundled
    model whose parsed architecture is cached (kvplan.archcache)."""
    from kvplan.hf_config import parse_config as parse

    return parse(config, model_id)


@lru_cache(maxsize=256)
def _bundled_arch(model_id: str) -> ModelArch:
    if model_id not in list_models():
        raise UnknownModelError(model_id, suggest(model_id))
    # the guarded reader: KVPLAN_MODEL_SPECS may hold a pipe or a /dev/zero link named config.json
    data = read_limited(specs_dir() / _dir_name(model_id) / "config.json", MAX_CONFIG_BYTES, "config.json")
    from kvplan import archcache

    arch = archcache.load(data, model_id)
    if arch is None:
        arch = parse_config(parse_json(data), model_id)
        archcache.store(data, model_id, arch)
    return arch


def _probe(path: Path) -> tuple[bool, bool]:
    """(exists, is_file), False for names the OS rejects (too long, NUL bytes) rather than raising."""
    try:
        return path.exists(), path.is_file()
    except (OSError, ValueError):
        return False, False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def load_model(model: str | os.PathLike | Mapping[str, Any], *, model_id: str | None = None) -> ModelArch:
    """Resolve MODEL — a bundled id, a config.json path or folder, a `.gguf` file, or a config dict.

    >>> arch = load_model("meta-llama/Llama-3.1-8B")
    >>> arch.num_layers, arch.layers[0].num_kv_heads
    (32, 8)

    Raises:
        UnknownModelError: neither bundled nor an existing path (close bundled ids suggested).
        UnsupportedConfigError: the config cannot be parsed (the field is named).
    """
    if isinstance(model, Mapping):
        return parse_config(model, model_id or "custom")
    if not isinstance(model, (str, os.PathLike)):
        raise UnknownModelError(repr(model))
    text = os.fspath(model)
    if text in list_models():
        return _bundled_arch(text)
    path = Path(text)
    exists, is_file = _probe(path)
    if path.suffix.lower() == ".gguf" and is_file:
        from kvplan.gguf_file import load_gguf  # llama.cpp model file: header metadata only

        return load_gguf(path, model_id=model_id)
    looks_like_path = path.suffix == ".json" or text.startswith((".", "/", "~")) or os.sep in text[1:] \
        and exists
    # A pipe, a device or a link to one goes to the guarded reader, which names what it is.
    if exists and (is_file or not _is_dir(path) or _probe(path / "config.json")[0]):
        name = model_id or (path.parent.name if is_file else path.name)
        try:
            config = read_config_file(path)
        except OSError as err:  # unreadable: permissions, a FIFO, a vanished file
            raise UnsupportedConfigError("config.json", f"cannot read {text[:200]!r}: "
                                                        f"{err.strerror or type(err).__name__}") from None
        return parse_config(config, name)
    if not exists and (path.suffix.lower() in (".json", ".gguf") or looks_like_path):
        raise UnknownModelError(text[:200], missing_file=True)
    raise UnknownModelError(text, suggest(text))


def sources() -> dict[str, str]:
    """Source repository/path of each bundled config, read from model_specs/SOURCES.md."""
    out: dict[str, str] = {}
    try:  # advisory: a missing, odd or oversized table only loses the source column
        text = read_limited(specs_dir() / "SOURCES.md", MAX_SOURCES_BYTES, "SOURCES.md").decode("utf-8", "replace")
    except (OSError, UnsupportedConfigError):
        return out
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and "--" in cells[0] and not cells[0].startswith("-"):
            out.setdefault(cells[0].replace("--", "/", 1), f"{cells[3]}:{cells[4]}@{cells[5][:12]}")
    return out
