"""Resolve a Hugging Face Hub id: its `config.json` and its weights' safetensors metadata.

Requests are plain bounded HTTP GETs of the Hub's `resolve` URLs (see "bounded HTTP" below);
`huggingface_hub` is only used, when installed, to read a config.json it cached earlier. Nothing from
a model repository is ever imported or executed: kvplan reads `config.json` as JSON data (`auto_map`
and any `*.py` file are ignored) and the safetensors *headers* only.

Network rules:
- every request has a short timeout, and a whole fetch has a hard deadline that the transfer itself
  obeys (a dripping or endless answer is cut off, not left running in the background);
- at most MAX_CONFIG_BYTES of config.json (and bounded index / header sizes) are received, counted on
  the wire; compressed answers are refused, never inflated;
- `HF_TOKEN` (or `token=`) authenticates; the token is never put in any message;
- `HF_HUB_OFFLINE=1` reads the disk cache only (kvplan's copies under `kvplan-configs/` and
  `kvplan-weights/` in the Hub cache, or huggingface_hub's own); a network failure also falls back
  to it; only complete, parsed answers are written there, atomically;
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


def _is_network(err: BaseException) -> bool:
    """True if a cached copy would be a good answer: the Hub was unreachable or failed (5xx, 429)."""
    if isinstance(err, _HTTPStatus):
        return err.status >= 500 or err.status == 429
    return not isinstance(err, (KvplanError, ValueError))


# ---- bounded HTTP ----------------------------------------------------------------------------------
# Every byte kvplan takes from the Hub goes through `_get`: the standard library's urllib (no
# automatic gzip: `Accept-Encoding: identity`, and a compressed body is just refused as not JSON), a
# byte limit counted on the bytes actually received (chunked or not, whatever Content-Length says),
# a deadline checked between reads (a server dripping one byte a second is cut off), redirects
# followed by hand (the token never leaves the endpoint's host). Nothing is written to disk until a
# whole body has arrived and parsed, and then atomically: an aborted transfer leaves nothing behind.
# huggingface_hub's downloader is not used for this (httpx decompresses gzip bombs into memory, and a
# timed-out download keeps writing its .incomplete file in a background thread).

_CHUNK = 64 << 10
_MAX_REDIRECTS = 5
MAX_INDEX_BYTES = 16 << 20  # model.safetensors.index.json (DeepSeek-V3, 91k tensors: ~9 MB)
MAX_SAFETENSORS_HEADER = 8 << 20  # one shard's JSON header (real ones: 10 KB-2 MB)
MAX_SHARDS = 4096  # real sharded repos: up to ~200 files (Llama-3.1-405B: 191)
_FIRST_RANGE = 100_000  # like huggingface_hub: most headers fit in the first 100 kB


class _HTTPStatus(Exception):
    """A non-2xx answer from the Hub: status and the Hub's X-Error-Code."""

    def __init__(self, status: int, code: str | None):
        super().__init__(f"HTTP {status} {code or ''}".strip())
        self.status, self.code = status, code


class _Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        return left


def _opener():
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: D401 - urllib API: followed by hand in _get
            return None

    return urllib.request.build_opener(NoRedirect)


def _get(url: str, *, token: str | None, timeout: float, deadline: _Deadline, max_bytes: int,
         what: str, byte_range: tuple[int, int] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, reading at most `max_bytes` (UnsupportedConfigError beyond).

    Raises:
        _HTTPStatus: a 4xx/5xx answer (the body is not read).
        UnsupportedConfigError: more than `max_bytes`, declared or received.
        TimeoutError, OSError: the deadline passed, or the connection failed.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    opener = _opener()
    host = urllib.parse.urlsplit(_endpoint()).netloc
    for _ in range(_MAX_REDIRECTS + 1):
        headers = {"Accept-Encoding": "identity", "User-Agent": "kvplan (+huggingface_hub-compatible)"}
        if token and urllib.parse.urlsplit(url).netloc == host:
            headers["Authorization"] = f"Bearer {token}"
        if byte_range:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        request = urllib.request.Request(url, headers=headers)
        try:
            resp = opener.open(request, timeout=min(timeout, deadline.left()))
        except urllib.error.HTTPError as err:
            with err:
                if err.code in (301, 302, 303, 307, 308) and err.headers.get("Location"):
                    url = urllib.parse.urljoin(url, err.headers["Location"])
                    continue
                raise _HTTPStatus(err.code, err.headers.get("X-Error-Code")) from None
        with resp:
            return resp.status, _read_body(resp, timeout, deadline, max_bytes, what)
    raise _HTTPStatus(310, "TooManyRedirects")


def _read_body(resp: Any, timeout: float, deadline: _Deadline, max_bytes: int, what: str) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > max_bytes:
        raise UnsupportedConfigError(what, f"{int(declared):,} bytes is too large (limit {max_bytes:,} bytes)")
    if (resp.headers.get("Content-Encoding") or "identity").strip().lower() not in ("identity", ""):
        raise UnsupportedConfigError(what, "the Hub sent a compressed answer kvplan did not ask for")
    sock = getattr(getattr(resp.fp, "raw", None), "_sock", None)
    body = bytearray()
    while True:
        if sock is not None:
            sock.settimeout(min(timeout, deadline.left()))  # the read itself stops at the deadline
        else:
            deadline.left()
        chunk = resp.read1(_CHUNK)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > max_bytes:
            raise UnsupportedConfigError(what, f"more than {max_bytes:,} bytes received; too large")


def _resolve_url(repo_id: str, revision: str | None, filename: str) -> str:
    import urllib.parse

    rev = urllib.parse.quote(revision or "main", safe="")
    return f"{_endpoint()}/{repo_id}/resolve/{rev}/{urllib.parse.quote(filename)}"


def _http_error(err: _HTTPStatus, repo_id: str, revision: str | None, what: str) -> KvplanError:
    """The Hub's answer as kvplan's error (huggingface_hub's own reading of X-Error-Code)."""
    code = err.code or ""
    if code == "GatedRepo" or (err.status in (401, 403) and code not in ("RepoNotFound",)):
        if err.status == 401 and code != "GatedRepo":
            return HubModelNotFoundError(repo_id, suggest(repo_id), "no such model (or it is private: set HF_TOKEN)")
        return GatedModelError(repo_id, suggest(repo_id))
    if code == "RepoNotFound":
        return HubModelNotFoundError(repo_id, suggest(repo_id), "no such model (or it is private: set HF_TOKEN)")
    if code == "RevisionNotFound":
        return HubModelNotFoundError(repo_id, (), f"no revision {revision!r} of this model")
    if code == "EntryNotFound" or err.status == 404:
        return HubModelNotFoundError(repo_id, (), f"no {what} in this model repo (not a transformers model?)")
    if code == "TooManyRedirects":
        return HubUnavailableError(repo_id, "the Hub redirected too many times")
    return HubUnavailableError(repo_id, f"the Hub answered HTTP {err.status}; try again later")


def _net_error(err: BaseException, repo_id: str, revision: str | None, token: str | None, what: str) -> KvplanError:
    if isinstance(err, KvplanError):
        return err
    if isinstance(err, _HTTPStatus):
        return _http_error(err, repo_id, revision, what)
    if isinstance(err, TimeoutError):
        return HubUnavailableError(repo_id, "the request timed out; check the network "
                                            "(or set HF_HUB_OFFLINE=1 to use the local cache)", suggest(repo_id))
    if isinstance(err, ValueError):  # a malformed HF_ENDPOINT ("unknown url type", "invalid port")
        return InvalidInputError("HF_ENDPOINT", f"{_endpoint()[:100]!r} is not an http(s) URL "
                                                f"({_scrub(str(err), token)[:100]})")
    reason = getattr(err, "reason", None)
    if isinstance(reason, BaseException) and ("timed out" in str(reason) or isinstance(reason, TimeoutError)):
        return HubUnavailableError(repo_id, "the request timed out; check the network "
                                            "(or set HF_HUB_OFFLINE=1 to use the local cache)", suggest(repo_id))
    return HubUnavailableError(repo_id, "cannot connect to the Hub; check the network "
                                        "(or set HF_HUB_OFFLINE=1 to use the local cache)", suggest(repo_id))


def _endpoint_ok() -> bool:
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(_endpoint())
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:  # "Invalid IPv6 URL", "Port out of range"
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_endpoint() -> None:
    if not _endpoint_ok():
        raise InvalidInputError("HF_ENDPOINT", f"{_endpoint()[:100]!r} is not an http(s) URL like "
                                               "https://huggingface.co")


# ---- config.json -----------------------------------------------------------------------------------

def _config_cache_file(repo_id: str, revision: str | None) -> Path:
    root = Path(_cache_dir() or Path.home() / ".cache" / "huggingface" / "hub")
    name = f"{repo_id.replace('/', '--')}@{(revision or 'main').replace('/', '%2F')}.json"
    return root / "kvplan-configs" / name


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a complete file or nothing (a temp file renamed into place); a read-only cache is fine."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()  # type: ignore[possibly-undefined]
        except (OSError, NameError):
            pass


def _cached_config(repo_id: str, revision: str | None) -> bytes | None:
    """config.json from kvplan's own cache, else from huggingface_hub's (what transformers downloaded)."""
    try:
        return read_limited(_config_cache_file(repo_id, revision), MAX_CONFIG_BYTES, "config.json")
    except (OSError, UnsupportedConfigError):
        pass
    if not _endpoint_ok():  # huggingface_hub prints import errors for a malformed HF_ENDPOINT
        return None
    try:
        hf = _hf()
        path = hf.hf_hub_download(repo_id=repo_id, filename="config.json", revision=revision,
                                  cache_dir=_cache_dir(), local_files_only=True)
        return read_limited(path, MAX_CONFIG_BYTES, "config.json")
    except Exception:  # noqa: BLE001 - not cached (or no huggingface_hub): no fallback
        return None


def _download_config(repo_id: str, revision: str | None, token: str | None, timeout: float,
                     deadline: _Deadline) -> bytes:
    """The bytes of config.json: from the Hub (one bounded GET), else from a cache when offline or
    when the Hub is unreachable."""
    if _offline():
        cached = _cached_config(repo_id, revision)
        if cached is None:
            raise HubUnavailableError(repo_id, "offline (HF_HUB_OFFLINE=1) and config.json is not in the local "
                                               "cache", suggest(repo_id))
        return cached
    _check_endpoint()
    try:
        _, body = _get(_resolve_url(repo_id, revision, "config.json"), token=token, timeout=timeout,
                       deadline=deadline, max_bytes=MAX_CONFIG_BYTES, what="config.json")
    except Exception as err:  # noqa: BLE001 - translated below
        if _is_network(err):
            cached = _cached_config(repo_id, revision)
            if cached is not None:  # the Hub is unreachable: a cached copy is still a good answer
                return cached
        raise _net_error(err, repo_id, revision, token, "config.json") from None
    parse_json(body)  # only a whole, valid JSON object is cached
    _write_atomic(_config_cache_file(repo_id, revision), body)
    return body


def fetch_config(repo_id: str, *, revision: str | None = None, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The `config.json` of a Hub model as a dict (read as JSON data only; `auto_map` is ignored).

    At most MAX_CONFIG_BYTES are received (counted on the wire, chunked or not), within
    `timeout` × 2.5 seconds in all; the transfer stops there, and only a complete config is cached.

    Raises:
        GatedModelError: gated or private, and no token with access.
        HubModelNotFoundError: no such repo, revision or config.json (close bundled ids suggested).
        HubUnavailableError: offline / timeout / HTTP 5xx, and no cached copy.
        UnsupportedConfigError: the file is too large, not JSON, or not a JSON object.
        InvalidInputError: `repo_id`, `revision` or HF_ENDPOINT is malformed.
    """
    repo_id, revision = split_ref(repo_id, revision)
    tok = _token(token)
    timeout = _check_timeout(timeout)
    seconds = timeout * _DEADLINE_FACTOR
    deadline = _Deadline(seconds)
    data = _bounded(lambda: _download_config(repo_id, revision, tok, timeout, deadline), seconds + 0.5, repo_id)
    return parse_json(data)


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise InvalidInputError("timeout", f"expected seconds in (0, 600], got {timeout!r}")
    return float(timeout)


def _weights_cache_file(repo_id: str, revision: str | None) -> Path:
    root = Path(_cache_dir() or Path.home() / ".cache" / "huggingface" / "hub")
    name = f"{repo_id.replace('/', '--')}@{(revision or 'main').replace('/', '%2F')}.json"
    return root / "kvplan-weights" / name


_PARSE_LOCK = threading.Lock()  # one shard header decoded at a time: bounded memory whatever the shard count
_SHARD_NAME = re.compile(rb'"([^"\\\x00-\x1f]{1,300}\.safetensors)"')


def _shard_totals(header: bytes, filename: str) -> tuple[dict[str, int], dict[str, int]]:
    """(params by dtype, bytes by dtype) of one safetensors JSON header, every field checked."""
    bad = UnsupportedConfigError(filename, "malformed safetensors header")
    with _PARSE_LOCK:
        try:
            obj = json.loads(header)
        except (ValueError, RecursionError):
            raise bad from None
        if not isinstance(obj, dict):
            raise bad
        params: dict[str, int] = {}
        nbytes: dict[str, int] = {}
        for name, tensor in obj.items():
            if name == "__metadata__":
                continue
            if not isinstance(tensor, dict) or not isinstance(tensor.get("dtype"), str) or len(tensor["dtype"]) > 16:
                raise bad
            shape, offsets = tensor.get("shape"), tensor.get("data_offsets")
            if not isinstance(shape, list) or len(shape) > 8 or any(
                    type(d) is not int or not 0 <= d <= 1 << 40 for d in shape):
                raise bad
            if not isinstance(offsets, list) or len(offsets) != 2 or any(
                    type(o) is not int or not 0 <= o <= 1 << 50 for o in offsets):
                raise bad
            count = 1
            for d in shape:
                count *= d
            dtype = tensor["dtype"]
            start, end = offsets
            size = end - start if end >= start else count * _ST_DTYPE_BYTES.get(dtype, 0)
            params[dtype] = params.get(dtype, 0) + count
            nbytes[dtype] = nbytes.get(dtype, 0) + size
    return params, nbytes


def _shard_header(repo_id: str, revision: str | None, filename: str, token: str | None, timeout: float,
                  deadline: _Deadline) -> bytes:
    """The JSON header of one safetensors file: range requests for its first bytes, never the tensors."""
    url = _resolve_url(repo_id, revision, filename)
    _, first = _get(url, token=token, timeout=timeout, deadline=deadline, max_bytes=_FIRST_RANGE,
                    byte_range=(0, _FIRST_RANGE - 1), what=filename)
    if len(first) < 8:
        raise UnsupportedConfigError(filename, "too short for a safetensors file")
    size = int.from_bytes(first[:8], "little")
    if size > MAX_SAFETENSORS_HEADER:
        raise UnsupportedConfigError(filename, f"safetensors header of {size:,} bytes "
                                               f"(limit {MAX_SAFETENSORS_HEADER:,})")
    if 8 + size <= len(first):
        return first[8:8 + size]
    _, rest = _get(url, token=token, timeout=timeout, deadline=deadline, max_bytes=size,
                   byte_range=(8, 8 + size - 1), what=filename)
    if len(rest) != size:
        raise UnsupportedConfigError(filename, "the safetensors header range came back short")
    return rest


def _weights_from_shards(repo_id: str, revision: str | None, files: list[str], token: str | None,
                         timeout: float, deadline: _Deadline, sharded: bool) -> WeightsInfo:
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    params: dict[str, int] = {}
    nbytes: dict[str, int] = {}

    def one(filename: str) -> tuple[dict[str, int], dict[str, int]]:
        return _shard_totals(_shard_header(repo_id, revision, filename, token, timeout, deadline), filename)

    with ThreadPoolExecutor(max_workers=min(8, len(files)), thread_name_prefix="kvplan-st") as pool:
        futures = [pool.submit(one, f) for f in files]
        done, pending = wait(futures, timeout=max(0.0, deadline.end - time.monotonic()) + 1,
                             return_when=FIRST_EXCEPTION)
        for fut in pending:
            fut.cancel()  # queued shards are dropped; running ones stop at the shared deadline
        for fut in futures:
            if fut.cancelled() or not fut.done():
                raise TimeoutError("deadline reached")
            p, b = fut.result()
            for dtype, n in p.items():
                params[dtype] = params.get(dtype, 0) + n
            for dtype, n in b.items():
                nbytes[dtype] = nbytes.get(dtype, 0) + n
    return WeightsInfo(repo_id=repo_id, total_params=sum(params.values()), total_bytes=sum(nbytes.values()),
                       params_by_dtype=params, bytes_by_dtype=nbytes, num_files=len(files), sharded=sharded)


def _cached_weights(cache_file: Path) -> WeightsInfo | None:
    try:
        return WeightsInfo(**json.loads(read_limited(cache_file, MAX_CONFIG_BYTES, "weights cache")))
    except (OSError, ValueError, TypeError):
        return None


def _fetch_weights(repo_id: str, revision: str | None, token: str | None, timeout: float,
                   deadline: _Deadline) -> WeightsInfo | None:
    cache_file = _weights_cache_file(repo_id, revision)
    if _offline():
        return _cached_weights(cache_file)
    _check_endpoint()
    try:
        try:  # single-file checkpoints first, as huggingface_hub's get_safetensors_metadata does
            info = _weights_from_shards(repo_id, revision, ["model.safetensors"], token, timeout, deadline, False)
        except _HTTPStatus as err:
            if err.status != 404 or err.code not in (None, "EntryNotFound"):
                raise
            try:
                _, index = _get(_resolve_url(repo_id, revision, "model.safetensors.index.json"), token=token,
                                timeout=timeout, deadline=deadline, max_bytes=MAX_INDEX_BYTES,
                                what="model.safetensors.index.json")
            except _HTTPStatus as err2:
                if err2.status == 404 and err2.code in (None, "EntryNotFound"):
                    return None  # .bin / GGUF-only repos: the planner counts parameters from the config
                raise
            # Only the shard names are needed: found without building the (maybe 100k-entry) weight map.
            files: list[str] = []
            for m in _SHARD_NAME.finditer(index):
                name = m.group(1).decode("utf-8", "replace")
                if name not in files and ".." not in name and not name.startswith("/"):
                    files.append(name)
                    if len(files) > MAX_SHARDS:
                        raise UnsupportedConfigError("model.safetensors.index.json",
                                                     f"more than {MAX_SHARDS:,} shard files")
            if not files:
                raise UnsupportedConfigError("model.safetensors.index.json", "lists no .safetensors files")
            info = _weights_from_shards(repo_id, revision, sorted(files), token, timeout, deadline, True)
    except Exception as err:  # noqa: BLE001 - translated below
        if _is_network(err):
            cached = _cached_weights(cache_file)
            if cached is not None:
                return cached
        if isinstance(err, UnsupportedConfigError):
            raise HubUnavailableError(repo_id, f"cannot read the safetensors headers: {err}") from None
        raise _net_error(err, repo_id, revision, token, "safetensors weights") from None
    _write_atomic(cache_file, json.dumps(info.to_dict()).encode())
    return info


def fetch_weights_info(repo_id: str, *, revision: str | None = None, token: str | None = None,
                       timeout: float = DEFAULT_TIMEOUT) -> WeightsInfo | None:
    """Parameter counts and exact bytes of the weights, by dtype, from the safetensors headers
    (range requests for each file's first bytes, no tensor data). None if the repo has no
    safetensors files (or offline with nothing cached).

    Raises:
        the same errors as `fetch_config`.
    """
    repo_id, revision = split_ref(repo_id, revision)
    tok = _token(token)
    timeout = _check_timeout(timeout)
    key = ("weights", repo_id, revision, _endpoint(), _offline(), _token_key(tok))
    seconds = timeout * _WEIGHTS_DEADLINE_FACTOR
    return _memo(key, lambda: _bounded(lambda: _fetch_weights(repo_id, revision, tok, timeout, _Deadline(seconds)),
                                       seconds + 1.0, repo_id))


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
