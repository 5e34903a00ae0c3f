"""A small fake Hugging Face Hub on 127.0.0.1 for the hub tests (no network).

It speaks the endpoints huggingface_hub 0.x/1.x/2.x calls for what kvplan reads:
- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: model info JSON (id, sha, siblings);
- `HEAD` / `GET /{repo}/resolve/{rev}/{file}`: the file, with `X-Repo-Commit`, `ETag` and
  `Content-Length` (and `Range: bytes=a-b` answered with 206, as the safetensors header reads use);
- errors the way the Hub signals them: `X-Error-Code: GatedRepo` (401 without a token, 403 with a
  wrong one), `RepoNotFound` (404, or 401 for a private repo), `RevisionNotFound`, `EntryNotFound`.

Each repo has a `mode`: "ok", "gated", "private", "error" (HTTP 500 everywhere), "slow" (sleeps
`delay` seconds before answering). Every request is logged in `FakeHub.requests` as (method, path).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
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

    @property
    def sha(self) -> str:
        digest = hashlib.sha1(json.dumps(sorted(self.files)).encode())
        for name in sorted(self.files):
            digest.update(self.files[name])
        return digest.hexdigest()


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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "FakeHub":
        self._thread.start()
        return self

    def stop(self) -> None:
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
