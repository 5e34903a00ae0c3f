"""Resolve a Hugging Face Hub id: its `config.json` and its weights' safetensors metadata.

`huggingface_hub` is imported lazily, inside the functions, so `import kvplan` stays light and works
without it. Nothing from a model repository is ever imported or executed: kvplan reads `config.json`
as JSON data (`auto_map` and any `*.py` file are ignored) and the safetensors *headers* only.

Network rules:
- every request has a short timeout, and a whole fetch has a hard deadline (the library's own
  retries/backoff cannot turn a dead Hub into a hang);
- `HF_TOKEN` (or `token=`) authenticates; the token is never put in any message;
- `HF_HUB_OFFLINE=1` reads the Hub's disk cache only; a network failure also falls back to it;
- `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME` are read at call time (not at import).

Errors are one-line `HubError` subclasses: `GatedModelError`, `HubModelNotFoundError` (also an
`UnknownModelError`), `HubUnavailableError`; a malformed config raises the parser's
`UnsupportedConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from kvplan.errors import (GatedModelError, HubError, HubModelNotFoundError, HubUnavailableError,
                           InvalidInputError, KvplanError, UnsupportedConfigError)
from kvplan.files import read_limited
from kvplan.hf_config import parse_config
from kvplan.layers import ModelArch
from kvplan.registry import MAX_CONFIG_BYTES, parse_json, suggest

__all__ = ["DEFAULT_TIMEOUT", "WeightsInfo", "is_hub_ref", "split_ref", "fetch_config", "fetch_weights_info",
           "load_hub_model", "clear_cache"]

DEFAULT_TIMEOUT = 4.0  # seconds per request
_DEADLINE_FACTOR = 2.5  # a whole config fetch (info + HEAD + GET) gets this many timeouts, then gives up
_WEIGHTS_DEADLINE_FACTOR = 6.0  # sharded repos: one range request per shard
_MEMO_TTL_S = 600.0

T = TypeVar("T")

# Hub repo ids: "namespace/name", each part [A-Za-z0-9_.-]{1,96}, no "--" or "..", not ".git"
# (huggingface_hub.utils.validate_repo_id). Bare names ("gpt2") are not routed to the Hub: a typo of a
# bundled id must not cost a network round trip.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_PART}/{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,199}")

# Bytes per element of safetensors dtypes (for models whose data_offsets are missing).
_ST_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                   "I16": 2, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class WeightsInfo:
    """What a repo's safetensors headers say about its weights (no tensor data is downloaded).

    `params_by_dtype` / `bytes_by_dtype` are keyed by safetensors dtype ("BF16", "F8_E4M3", "U8" for
    packed 4-bit...); bytes come from each tensor's data offsets, so they are exact.
    """

    repo_id: str
    total_params: int
    total_bytes: int
    params_by_dtype: dict[str, int] = field(default_factory=dict)
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)
    num_files: int = 0
    sharded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_hub_ref(text: Any) -> bool:
    """True if `text` is syntactically a Hub model id "org/name", optionally "@revision"."""
    if not isinstance(text, str) or len(text) > 400:
        return False
    repo, _, rev = text.partition("@")
    if not _REPO_ID.fullmatch(repo) or "--" in repo or ".." in repo or repo.endswith((".git", ".json", ".gguf")):
        return False
    return not rev or bool(_REVISION.fullmatch(rev)) and ".." not in rev


def split_ref(text: str, revision: str | None = None) -> tuple[str, str | None]:
    """("org/name@rev", None) -> ("org/name", "rev"); an explicit `revision` wins over "@rev".

    Raises:
        InvalidInputError: not a Hub id, or a malformed revision.
    """
    if not is_hub_ref(text):
        raise InvalidInputError("model", f"{str(text)[:100]!r} is not a Hugging Face id like 'org/name'")
    repo, _, rev = text.partition("@")
    rev = revision if revision is not None else (rev or None)
    if rev is not None and (not isinstance(rev, str) or not _REVISION.fullmatch(rev) or ".." in rev):
        raise InvalidInputError("revision", f"{str(rev)[:100]!r} is not a branch, tag or commit")
    return repo, rev


def _hf():
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("reading a Hub id needs huggingface_hub: pip install huggingface_hub "
                       "(or download config.json and pass its path)") from None
    return huggingface_hub


def _token(token: str | None) -> str | None:
    return token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None  # huggingface_hub's default (~/.cache/huggingface/hub)


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _bounded(fn: Callable[[], T], seconds: float, repo_id: str) -> T:
    """Run `fn` with a hard deadline: huggingface_hub retries 5xx/timeouts with backoff (tens of
    seconds); the user gets an answer in `seconds` instead. A late worker finishes in the background."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=run, name="kvplan-hub-fetch", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise HubUnavailableError(repo_id, f"no answer within {seconds:g} s; check the network "
                                           "(or set HF_HUB_OFFLINE=1 to use the local cache)", suggest(repo_id))
    if "error" in box:
        raise box["error"]
    return box["value"]


def _translate(err: BaseException, repo_id: str, revision: str | None, token: str | None,
               what: str = "config.json") -> KvplanError:
    """A huggingface_hub / httpx / OS error as a one-line kvplan HubError (never with the token)."""
    out = _translate_one(err, repo_id, revision, token, what)
    if isinstance(out, HubUnavailableError) and not out.suggestions and suggest(repo_id):
        # a typo of a bundled id while offline: say what it probably meant
        return HubUnavailableError(repo_id, str(out).split("Hub: ", 1)[-1].rstrip("."), suggest(repo_id))
    return out


def _translate_one(err: BaseException, repo_id: str, revision: str | None, token: str | None,
                   what: str) -> KvplanError:
    if isinstance(err, KvplanError):
        return err
    hf = _hf()
    e = hf.errors
    # hf_hub_download wraps connection problems in LocalEntryNotFoundError; the cause says what happened.
    if isinstance(err, e.LocalEntryNotFoundError) and err.__cause__ is not None and not _offline():
        return _translate_one(err.__cause__, repo_id, revision, token, what)
    if isinstance(err, e.GatedRepoError):
        return GatedModelError(repo_id, suggest(repo_id))
    if isinstance(err, e.RevisionNotFoundError):
        return HubModelNotFoundError(repo_id, (), f"no revision {revision!r} of this model")
    if isinstance(err, e.RepositoryNotFoundError):
        return HubModelNotFoundError(repo_id, suggest(repo_id), "no such model (or it is private: set HF_TOKEN)")
    if isinstance(err, getattr(e, "RemoteEntryNotFoundError", ())) or (
            isinstance(err, e.EntryNotFoundError) and not isinstance(err, e.LocalEntryNotFoundError)):
        return HubModelNotFoundError(repo_id, (), f"no {what} in this model repo (not a transformers model?)")
    if isinstance(err, (e.OfflineModeIsEnabled, e.LocalEntryNotFoundError)):
        return HubUnavailableError(repo_id, f"offline (HF_HUB_OFFLINE=1) and {what} is not in the local cache")
    if isinstance(err, e.HFValidationError):
        return InvalidInputError("model", _scrub(str(err).splitlines()[0][:200], token))
    if isinstance(err, e.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            return GatedModelError(repo_id, suggest(repo_id))
        if status == 404:
            return HubModelNotFoundError(repo_id, suggest(repo_id))
        return HubUnavailableError(repo_id, f"the Hub answered HTTP {status}; try again later")
    name = type(err).__name__
    if "Timeout" in name or isinstance(err, TimeoutError):
        return HubUnavailableError(repo_id, "the request timed out; check the network "
                                            "(or set HF_HUB_OFFLINE=1 to use the local cache)")
    if "Connect" in name or "Network" in name or "Proxy" in name or isinstance(err, ConnectionError):
        return HubUnavailableError(repo_id, "cannot connect to the Hub; check the network "
                                            "(or set HF_HUB_OFFLINE=1 to use the local cache)")
    if isinstance(err, (json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, TypeError)):
        return HubUnavailableError(repo_id, f"the Hub sent an unreadable answer ({name})")
    return HubUnavailableError(repo_id, f"{name} while fetching {what}")


def _is_network(err: BaseException, hf) -> bool:
    e = hf.errors
    if isinstance(err, (e.GatedRepoError, e.RepositoryNotFoundError, e.RevisionNotFoundError,
                        e.EntryNotFoundError, KvplanError)) and not isinstance(err, e.LocalEntryNotFoundError):
        return False
    if isinstance(err, e.HfHubHTTPError):
        return getattr(getattr(err, "response", None), "status_code", 0) >= 500
    return True


def _download_config(repo_id: str, revision: str | None, token: str | None, timeout: float) -> str:
    """The path of config.json in the Hub cache, downloading it if needed."""
    hf = _hf()
    kw = dict(repo_id=repo_id, filename="config.json", revision=revision, cache_dir=_cache_dir())
    if _offline():
        try:
            return hf.hf_hub_download(**kw, local_files_only=True)
        except Exception as err:  # noqa: BLE001
            raise _translate(err, repo_id, revision, token) from None
    endpoint = _endpoint()
    try:
        # Model info first: a missing repo or revision fails in one request, with no retries.
        hf.HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=revision, timeout=timeout)
        # HEAD before GET: refuse an oversized "config" before downloading it; gated repos fail here.
        url = hf.hf_hub_url(repo_id, "config.json", revision=revision, endpoint=endpoint)
        meta = hf.get_hf_file_metadata(url, token=token, timeout=timeout, endpoint=endpoint)
        if meta.size is not None and meta.size > MAX_CONFIG_BYTES:
            raise UnsupportedConfigError("config.json", f"{meta.size:,} bytes is too large for a model config")
        return hf.hf_hub_download(**kw, token=token, etag_timeout=timeout, endpoint=endpoint)
    except Exception as err:  # noqa: BLE001
        if _is_network(err, hf):
            try:  # the Hub is unreachable: a cached copy is still a good answer
                return hf.hf_hub_download(**kw, local_files_only=True)
            except Exception:  # noqa: BLE001
                pass
        raise _translate(err, repo_id, revision, token) from None


def fetch_config(repo_id: str, *, revision: str | None = None, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The `config.json` of a Hub model as a dict (read as JSON data only; `auto_map` is ignored).

    Raises:
        GatedModelError: gated or private, and no token with access.
        HubModelNotFoundError: no such repo, revision or config.json (close bundled ids suggested).
        HubUnavailableError: offline / timeout / HTTP 5xx, and no cached copy.
        UnsupportedConfigError: the file is too large, not JSON, or not a JSON object.
        InvalidInputError: `repo_id` or `revision` is malformed.
    """
    repo_id, revision = split_ref(repo_id, revision)
    tok = _token(token)
    timeout = _check_timeout(timeout)
    path = _bounded(lambda: _download_config(repo_id, revision, tok, timeout), timeout * _DEADLINE_FACTOR, repo_id)
    return parse_json(read_limited(path, MAX_CONFIG_BYTES, "config.json"))


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise InvalidInputError("timeout", f"expected seconds in (0, 600], got {timeout!r}")
    return float(timeout)


def _weights_cache_file(repo_id: str, revision: str | None) -> Path:
    root = Path(_cache_dir() or Path.home() / ".cache" / "huggingface" / "hub")
    name = f"{repo_id.replace('/', '--')}@{(revision or 'main').replace('/', '%2F')}.json"
    return root / "kvplan-weights" / name


def _weights_from_metadata(repo_id: str, meta: Any) -> WeightsInfo:
    params: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    for file_meta in meta.files_metadata.values():
        for tensor in file_meta.tensors.values():
            dtype = str(tensor.dtype)
            count = int(tensor.parameter_count)
            start, end = tensor.data_offsets
            size = int(end) - int(start) if end >= start else count * _ST_DTYPE_BYTES.get(dtype, 0)
            params[dtype] = params.get(dtype, 0) + count
            nbytes[dtype] = nbytes.get(dtype, 0) + size
    return WeightsInfo(repo_id=repo_id, total_params=sum(params.values()), total_bytes=sum(nbytes.values()),
                       params_by_dtype=params, bytes_by_dtype=nbytes, num_files=len(meta.files_metadata),
                       sharded=bool(meta.sharded))


def _fetch_weights(repo_id: str, revision: str | None, token: str | None, timeout: float) -> WeightsInfo | None:
    hf = _hf()
    cache_file = _weights_cache_file(repo_id, revision)
    if _offline():
        try:
            return WeightsInfo(**json.loads(cache_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
    try:
        meta = hf.HfApi(endpoint=_endpoint(), token=token).get_safetensors_metadata(
            repo_id, revision=revision, timeout=timeout)
    except hf.errors.NotASafetensorsRepoError:
        return None  # .bin / GGUF-only repos: the planner counts parameters from the config
    except Exception as err:  # noqa: BLE001
        if _is_network(err, hf) and cache_file.is_file():
            try:
                return WeightsInfo(**json.loads(cache_file.read_text()))
            except (OSError, ValueError, TypeError):
                pass
        if isinstance(err, hf.errors.SafetensorsParsingError):
            raise HubUnavailableError(repo_id, "a safetensors header could not be parsed") from None
        raise _translate(err, repo_id, revision, token, "safetensors weights") from None
    info = _weights_from_metadata(repo_id, meta)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(info.to_dict()))
    except OSError:
        pass  # a read-only cache only costs a refetch
    return info


def fetch_weights_info(repo_id: str, *, revision: str | None = None, token: str | None = None,
                       timeout: float = DEFAULT_TIMEOUT) -> WeightsInfo | None:
    """Parameter counts and exact bytes of the weights, by dtype, from the safetensors headers
    (`get_safetensors_metadata`: range requests, no tensor data). None if the repo has no
    safetensors files (or offline with nothing cached).

    Raises:
        the same errors as `fetch_config`.
    """
    repo_id, revision = split_ref(repo_id, revision)
    tok = _token(token)
    timeout = _check_timeout(timeout)
    key = ("weights", repo_id, revision, _endpoint(), _offline(), _token_key(tok))
    return _memo(key, lambda: _bounded(lambda: _fetch_weights(repo_id, revision, tok, timeout),
                                       timeout * _WEIGHTS_DEADLINE_FACTOR, repo_id))


def load_hub_model(repo_id: str, *, revision: str | None = None, token: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT) -> ModelArch:
    """A Hub model's `ModelArch`, from its config.json ("org/name" or "org/name@revision").

    Results are kept in memory for a few minutes (and config.json in the Hub's disk cache), so a
    sweep over contexts does not refetch.

    >>> load_hub_model("meta-llama/Llama-3.1-8B").num_layers  # doctest: +SKIP
    32

    Raises:
        the errors of `fetch_config`, and `UnsupportedConfigError` from the parser.
    """
    repo, rev = split_ref(repo_id, revision)
    tok = _token(token)
    model_id = repo if rev is None else f"{repo}@{rev}"
    key = ("arch", repo, rev, _endpoint(), _offline(), _token_key(tok))
    return _memo(key, lambda: parse_config(fetch_config(repo, revision=rev, token=tok, timeout=timeout), model_id))


# In-process memo of successful fetches (failures are never cached: the user may fix the network).
_MEMO: dict[tuple, tuple[float, Any]] = {}
_MEMO_LOCK = threading.Lock()


def _token_key(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


def _memo(key: tuple, compute: Callable[[], T]) -> T:
    now = time.monotonic()
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
        if hit and now - hit[0] < _MEMO_TTL_S:
            return hit[1]
    value = compute()
    with _MEMO_LOCK:
        _MEMO[key] = (now, value)
    return value


def clear_cache() -> None:
    """Forget in-memory Hub results (the disk cache is huggingface_hub's)."""
    with _MEMO_LOCK:
        _MEMO.clear()
