"""Tests never reach the internet: any Hub request goes to a closed port on 127.0.0.1 unless a test
points HF_ENDPOINT at the local fake Hub (tests/fake_hub.py) itself."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_internet_hub(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def _arch_cache_in_tmp(monkeypatch, tmp_path_factory):
    # Parsed bundled architectures (kvplan.archcache) go to a per-session folder, never ~/.cache.
    monkeypatch.setenv("KVPLAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kvplan-cache"))
