"""A small fake Hugging Face Hub on 127.0.0.1 for the hub tests (no network).

It speaks the endpoints huggingface_hub 0.x/1.x/2.x calls for what kvplan reads:
- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: model info JSON (id, sha, siblings);
- `HEAD` / `GET /{repo}/resolve/{rev}/{file}`: the file, with `X-Repo-Commit`, `ETag` and
  `Content-Length` (and `Range: bytes=a-b` answered with 206, as the safetensors header reads use);
- errors the way the Hub signals them: `X-Error-Code: GatedRepo` (401 without a token, 403 with a
  wrong one), `RepoNotFound` (404, or 401 for a private repo), `RevisionNotFound`, `EntryNotFound`.

Each repo has a `mode`: "ok", "gated", "private", "error" (HTTP 500 everywhere), "slow" (sleeps
`delay` seconds before answering). Every request is logged in `FakeHub.requests` as (method, path).

Hostile answers, per file (`FakeRepo.hostile[filename]`, "api" for the model-info endpoint):
- "endless": HTTP 200, chunked, 64 KiB chunks of spaces until the client hangs up;
- "endless-length": the same stream under a false `Content-Length: 100`... no: of 10 GB;
- "gzip-bomb": `Content-Encoding: gzip`, ~1 MiB on the wire that inflates to 1 GiB of spaces;
- "drip": one byte every 0.2 s, forever.
`FakeHub.sent[path]` counts the body bytes written per path, so a test sees when a transfer stopped.
Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GOOD_TOKEN = "hf_fake_good_token_0123456789"


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    mode: str = "ok"
    delay: float = 0.0
    revisions: tuple[str, ...] = ("main",)
    hostile: dict[str, str] = field(default_factory=dict)

    @property
    def sha(self) -> str:
        digest = hashlib.sha1(json.dumps(sorted(self.files)).encode())
        for name in sorted(self.files):
            digest.update(self.files[name])
        return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def gzip_bomb(inflated: int = 1 << 30) -> bytes:
    """~1 MiB of valid gzip that inflates to `inflated` bytes of spaces.

    Built in well under a second: 1 MiB of spaces is compressed once and ended with a full flush
    (byte-aligned, no reference to earlier data), so the same piece can be repeated; then the final
    block and the gzip trailer (CRC-32 and length of the whole) follow.
    """
    block = b" " * (1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(inflated >> 20):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # an empty final block
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, inflated & 0xFFFFFFFF)
    return header + piece * (inflated >> 20) + final + trailer


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None) -> bytes:
    """A real safetensors file: 8-byte header length, JSON header, then zero-filled tensor data."""
    sizes = {"F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "U8": 1, "I32": 4}
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    # ---- request handling -------------------------------------------------------------------
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict | None = None,
              head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            try:
                h.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _error(self, h, status: int, code: str | None, message: str, head: bool, extra: dict | None = None):
        headers = {"Content-Type": "application/json", **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(h, status, json.dumps({"error": message}).encode(), headers, head)

    def _hostile(self, h: BaseHTTPRequestHandler, path: str, mode: str, head: bool) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if mode == "endless":
            h.send_header("Transfer-Encoding", "chunked")
        elif mode == "endless-length":
            h.send_header("Content-Length", str(10 << 30))
        elif mode == "gzip-bomb":
            body = gzip_bomb()
            h.send_header("Content-Encoding", "gzip")
            h.send_header("Content-Length", str(len(body)))
        elif mode == "drip":
            h.send_header("Content-Length", str(1 << 20))
        h.end_headers()
        if head:
            return
        self.sent.setdefault(path, 0)
        chunk = b" " * (64 << 10)
        try:
            if mode == "gzip-bomb":
                h.wfile.write(body)
                self.sent[path] += len(body)
                return
            while not self._stopping.is_set():
                if mode == "drip":
                    h.wfile.write(b" ")
                    h.wfile.flush()
                    self.sent[path] += 1
                    time.sleep(0.2)
                elif mode == "endless":
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.sent[path] += len(chunk)
                else:
                    h.wfile.write(chunk)
                    self.sent[path] += len(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client hung up: the transfer stops here
        h.close_connection = True

    def _auth(self, h) -> str | None:
        value = h.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None

    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        self.requests.append(("HEAD" if head else "GET", path, dict(h.headers)))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+?)(?:/revision/(.+))?", path)
        if m:
            repo_id, rev, filename, api = m.group(1), m.group(2) or "main", None, True
        else:
            m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not m:
                return self._error(h, 404, None, "Not Found", head)
            repo_id, rev, filename, api = m.group(1), m.group(2), m.group(3), False
        repo = self.repos.get(repo_id)
        if repo is not None and repo.delay:
            time.sleep(repo.delay)
        if repo is None or (repo.mode == "private" and self._auth(h) != GOOD_TOKEN):
            status = 401 if repo is not None or self._auth(h) is None else 404
            return self._error(h, status, "RepoNotFound", "Repository not found", head)
        if repo.mode == "error":
            return self._error(h, 500, None, "Internal Error", head)
        if rev not in repo.revisions and rev != repo.sha:
            return self._error(h, 404, "RevisionNotFound", "Invalid rev id: " + rev, head)
        hostile = repo.hostile.get("api" if api else filename)
        if hostile:
            return self._hostile(h, path, hostile, head)
        if api:
            info = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": repo.mode == "private",
                    "gated": "manual" if repo.mode == "gated" else False, "disabled": False,
                    "siblings": [{"rfilename": name} for name in sorted(repo.files)], "tags": []}
            return self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
        if repo.mode == "gated" and self._auth(h) != GOOD_TOKEN:
            status = 401 if self._auth(h) is None else 403
            return self._error(h, status, "GatedRepo", "Access to model is restricted. You must have "
                               "access to it and be authenticated to access it. Please log in.", head)
        commit = {"X-Repo-Commit": repo.sha}
        if filename not in repo.files:
            return self._error(h, 404, "EntryNotFound", "Entry not found", head, commit)
        data = repo.files[filename]
        headers = {**commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", "") or "")
        if rng and not head:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return self._error(h, 416, None, "Range Not Satisfiable", head)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(h, 206, data[start:end + 1], headers, head)
        return self._send(h, 200, data, headers, head)
