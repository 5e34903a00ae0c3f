"""Tests never reach the internet: any Hub request goes to a closed port on 127.0.0.1 unless a test
points HF_ENDPOINT at the local fake Hub (tests/fake_hub.py) itself."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int, proc, seconds: float = 90) -> str:
    """Poll a started app's `/_stcore/health` until it answers, `proc` exits or `seconds` pass; the body
    ("ok" when the app serves), or "" if it never answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read().decode()
        except OSError:
            time.sleep(0.5)
    return ""


@pytest.fixture(autouse=True)
def _no_internet_hub(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def _arch_cache_in_tmp(monkeypatch, tmp_path_factory):
    # Parsed bundled architectures (kvplan.archcache) go to a per-session folder, never ~/.cache.
    monkeypatch.setenv("KVPLAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kvplan-cache"))
