"""Engine versions: one parsed value per request, and each engine's table of version-gated rules.

A version is an input like the context length: `kv_cache(..., engine_version="0.19")`, the CLI's
`--engine-version 0.19` or the shorthand `--engine vllm@0.19`. It is parsed once into an
`EngineVersion` and handed to the engine profile; nothing here is global state. Each profile owns a
`VersionTable` (which rule changes at which version, with the public source); the default is the
newest behaviour kvplan models (`VersionTable.latest`).

Release numbers compare as tuples: vLLM / SGLang / TensorRT-LLM "X.Y[.Z]" (0.19 = 0.19.0);
llama.cpp builds "bNNNN" (or "NNNN"); the ik_llama.cpp fork is llama.cpp version "ik".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kvplan.errors import InvalidInputError

__all__ = ["EngineVersion", "VersionRule", "VersionTable", "split_engine", "parse_version"]

_SEMVER = re.compile(r"^v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4}))?(?:(?:\.?post\d+|rc\d+|\.dev\d+)*)?(?:\+[\w.]+)?$")
_BUILD = re.compile(r"^b?(\d{1,6})(?:\s*\([0-9a-f]+\))?$")


@dataclass(frozen=True, order=True)
class EngineVersion:
    """An engine release: `release` compares as a tuple; `fork` names a fork with its own rules
    (ik_llama.cpp) and sorts after every mainline build (it branched from mainline early 2025)."""

    fork: str
    release: tuple[int, ...]
    text: str

    def __str__(self) -> str:
        return self.text

    def at_least(self, since: str | tuple[int, ...]) -> bool:
        """True when this release is `since` or newer (a fork counts as the newest mainline)."""
        want = since if isinstance(since, tuple) else _release_of(since)
        return bool(self.fork) or self.release >= want


@lru_cache(maxsize=256)  # the tables' own version strings, looked up on every sizing call
def _release_of(text: str) -> tuple[int, ...]:
    m = _SEMVER.match(text)
    if m:
        return (int(m[1]), int(m[2]), int(m[3] or 0))
    m = _BUILD.match(text)
    if m:
        return (int(m[1]),)
    raise ValueError(text)  # pragma: no cover - tables are written by us


@dataclass(frozen=True)
class VersionRule:
    """One behaviour that changed at `since`: `before` applies to older releases, `after` from it on.
    `key` is the name the profile or planner looks it up by; `source` the PR/commit/release notes."""

    key: str
    since: str
    before: Any
    after: Any
    what: str
    source: str

    def value(self, version: EngineVersion) -> Any:
        return self.after if version.at_least(self.since) else self.before

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "since": self.since, "before": self.before, "after": self.after,
                "what": self.what, "source": self.source}


_PARSED: dict[tuple[int, str | None], tuple[VersionTable, EngineVersion]] = {}


@dataclass(frozen=True)
class VersionTable:
    """An engine's modelled versions: `oldest` .. `latest`, the rules that change between them, and
    `forks` (named variants such as llama.cpp's "ik") with their own fixed values."""

    engine: str
    oldest: str
    latest: str
    scheme: str  # "semver" or "build"
    rules: tuple[VersionRule, ...] = ()
    forks: tuple[str, ...] = ()
    fork_values: tuple[tuple[str, str, Any], ...] = ()  # (fork, key, value)
    fork_sources: tuple[tuple[str, str], ...] = ()  # (fork, source)

    def parse(self, text: str | None) -> EngineVersion:
        """The version for `text` (None / "" / "latest" = the newest modelled behaviour)."""
        key = (id(self), text) if text is None or type(text) is str else None
        hit = _PARSED.get(key) if key is not None else None
        if hit is not None and hit[0] is self:  # sweeps and plans parse the same few versions many times
            return hit[1]
        version = self._parse(text)
        if key is not None:
            if len(_PARSED) > 1024:
                _PARSED.clear()
            _PARSED[key] = (self, version)  # holding the table keeps its id from being reused
        return version

    def _parse(self, text: str | None) -> EngineVersion:
        if text is None or (isinstance(text, str) and text.strip().lower() in ("", "latest", "default")):
            return self.parse(self.latest)
        if isinstance(text, EngineVersion):
            return text
        raw = str(text).strip()
        low = raw.lower()
        for fork in self.forks:
            if low in (fork, f"{fork}_llama.cpp", f"{fork}-llama.cpp"):
                return EngineVersion(fork, (), fork)
        pattern = _SEMVER if self.scheme == "semver" else _BUILD
        m = pattern.match(low) if len(low) <= 40 else None
        if not m:
            forks = f", or {' / '.join(self.forks)}" if self.forks else ""
            shape = "X.Y or X.Y.Z, e.g. 0.19 or 0.20.2" if self.scheme == "semver" else "a build number bNNNN, e.g. b4905"
            raise InvalidInputError("engine_version", f"{raw[:40]!r} is not a {self.engine} version: give {shape}"
                                                      f"{forks} (kvplan models {self.oldest} .. {self.latest})")
        release = (int(m[1]), int(m[2]), int(m[3] or 0)) if self.scheme == "semver" else (int(m[1]),)
        if release < _release_of(self.oldest):
            raise InvalidInputError("engine_version", f"{self.engine} {raw} is older than the oldest version kvplan "
                                                      f"models ({self.oldest}); use {self.oldest} or newer")
        text = ".".join(map(str, release)) if self.scheme == "semver" else f"b{release[0]}"
        return EngineVersion("", release, text)

    def value(self, key: str, version: EngineVersion) -> Any:
        """The value of `key` at `version`: a fork's own value, else the newest rule for `key` that has
        started by then (a key may change more than once: its rules chain in `since` order)."""
        for fork, k, v in self.fork_values:
            if version.fork == fork and k == key:
                return v
        chain = sorted((r for r in self.rules if r.key == key), key=lambda r: _release_of(r.since))
        if not chain:
            raise KeyError(key)  # pragma: no cover - a profile asks only for its own keys
        value = chain[0].before
        for rule in chain:
            if version.at_least(rule.since):
                value = rule.after
        return value

    def notes(self, version: EngineVersion) -> list[str]:
        """One line when the version is newer than anything modelled (its newest rules are assumed)."""
        if not version.fork and version.release > _release_of(self.latest):
            return [f"{self.engine} {version} is newer than the newest version kvplan models ({self.latest}); "
                    f"its rules are assumed"]
        return []

    def to_dict(self) -> dict[str, Any]:
        versions = sorted({self.oldest, self.latest, *(r.since for r in self.rules)}, key=_release_of)
        return {"engine": self.engine, "oldest": self.oldest, "latest": self.latest, "default": self.latest,
                "versions": versions + list(self.forks), "rules": [r.to_dict() for r in self.rules],
                "forks": [{"fork": f, "values": {k: v for ff, k, v in self.fork_values if ff == f},
                           "source": dict(self.fork_sources).get(f, "")} for f in self.forks]}


def split_engine(engine: str) -> tuple[str, str | None]:
    """"vllm@0.19" -> ("vllm", "0.19"); "vllm" -> ("vllm", None)."""
    name, sep, version = str(engine).partition("@")
    if sep and not version.strip():
        raise InvalidInputError("engine", f"{str(engine)[:60]!r}: nothing after '@'; write e.g. vllm@0.19")
    return name, (version.strip() if sep else None)


def parse_version(table: VersionTable | None, engine: str, engine_version: Any) -> EngineVersion:
    """`engine_version` (or the version in "engine@X.Y") on `table`; both given must agree."""
    if isinstance(engine_version, EngineVersion):
        return engine_version  # already parsed (the planner hands its version on)
    _, at = split_engine(engine)
    given = engine_version
    if at is not None and given is not None and str(given).strip() and \
            table is not None and table.parse(at) != table.parse(given):
        raise InvalidInputError("engine_version", f"{engine!r} and engine_version={given!r} disagree; give one")
    text = at if at is not None else given
    if table is None:
        if text not in (None, "", "latest"):
            raise InvalidInputError("engine_version", f"engine {engine!r} has no versions (it is a formula); "
                                                      "drop --engine-version")
        return EngineVersion("", (), "n/a")
    return table.parse(text)
