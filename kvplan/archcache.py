"""A cache of parsed bundled-model architectures, so `kvplan size` answers without pydantic.

Parsing a config.json validates it with pydantic (kvplan.hf_config), and importing pydantic and
defining its models costs more than the rest of a `kvplan size` run. A bundled config never changes
between runs, so its parsed `ModelArch` is written once, as JSON, to the user's cache directory
($KVPLAN_CACHE_DIR, else $XDG_CACHE_HOME/kvplan, else ~/.cache/kvplan) — never into the repository
or the installed package — and read back on later runs. The key is a hash of the config file's bytes
and of the parser's own source (hf_config.py and layers.py), so an edited config or a new kvplan
parses afresh. Anything wrong with the cache (missing, unreadable, read-only, foreign content) means a
normal parse: the cache can make an answer faster, never different. Only the dataclasses of
kvplan.layers are rebuilt from it; nothing in it is executed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from kvplan import layers
from kvplan.files import read_limited
from kvplan.layers import ModelArch

FORMAT = 1
_SOURCES = ("hf_config.py", "layers.py")


def cache_dir() -> Path | None:
    """Where parsed architectures are kept; None when no user cache directory can be named."""
    env = os.environ.get("KVPLAN_CACHE_DIR")
    if env is not None:
        return Path(env) if env else None  # KVPLAN_CACHE_DIR="" turns the cache off
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(os.path.expanduser("~"), ".cache")
                                                 if os.path.expanduser("~") != "~" else "")
    return Path(base) / "kvplan" if base else None


_PARSER_DIGEST: list[bytes] = []


def _parser_digest() -> bytes:
    if not _PARSER_DIGEST:
        h = hashlib.sha256(f"kvplan-arch-{FORMAT}".encode())
        here = Path(__file__).resolve().parent
        for name in _SOURCES:
            h.update((here / name).read_bytes())
        _PARSER_DIGEST.append(h.digest())
    return _PARSER_DIGEST[0]


def key(config_bytes: bytes, model_id: str) -> str:
    h = hashlib.sha256(_parser_digest())
    h.update(model_id.encode())
    h.update(b"\0")
    h.update(config_bytes)
    return h.hexdigest()[:40]


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"__type__": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _encode(getattr(value, f.name))
        return out
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot cache a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        cls = getattr(layers, value.get("__type__", ""), None)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ValueError("unknown type in the architecture cache")
        return cls(**{k: _decode(v) for k, v in value.items() if k != "__type__"})
    if isinstance(value, list):  # every sequence in kvplan.layers is a tuple
        return tuple(_decode(v) for v in value)
    return value


def load(config_bytes: bytes, model_id: str) -> ModelArch | None:
    """The cached architecture for this config (and parser), or None."""
    root = cache_dir()
    if root is None:
        return None
    try:
        # guarded like every config read (a pipe here would block); a damaged entry is a miss
        data = json.loads(read_limited(root / f"{key(config_bytes, model_id)}.json", 64 << 20, "arch cache"))
        arch = _decode(data)
    except (OSError, ValueError, TypeError, RecursionError):
        return None
    return arch if isinstance(arch, ModelArch) and arch.model_id == model_id else None


def store(config_bytes: bytes, model_id: str, arch: ModelArch) -> None:
    """Write the architecture for later runs; silently nothing when the directory is not writable."""
    root = cache_dir()
    if root is None:
        return
    try:
        text = json.dumps(_encode(arch), separators=(",", ":"))
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{key(config_bytes, model_id)}.json"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # readers see the whole file or none
    except (OSError, TypeError, ValueError):
        return
