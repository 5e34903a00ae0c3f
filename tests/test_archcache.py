"""The parsed-architecture cache (kvplan.archcache): a bundled model's answer without pydantic, and
never a different answer than a fresh parse (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kvplan
from kvplan import archcache, registry
from kvplan.hf_config import parse_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KVPLAN_CACHE_DIR", str(tmp_path))
    registry._bundled_arch.cache_clear()
    yield tmp_path
    registry._bundled_arch.cache_clear()


def _config_bytes(model_id: str) -> bytes:
    return (registry.specs_dir() / model_id.replace("/", "--", 1) / "config.json").read_bytes()


def test_every_bundled_model_round_trips_exactly(cache):
    for model_id in kvplan.list_models():
        fresh = parse_config(registry.bundled_config(model_id), model_id)
        assert registry._bundled_arch(model_id) == fresh  # first use: parsed, then stored
        assert len(list(cache.glob("*.json"))) >= 1
        cached = archcache.load(_config_bytes(model_id), model_id)
        assert cached == fresh and repr(cached) == repr(fresh), model_id  # tuples stay tuples
    registry._bundled_arch.cache_clear()
    assert kvplan.kv_cache("google/gemma-3-27b-it", context_len=9000, engine="sglang") == \
        kvplan.kv_cache(parse_config(registry.bundled_config("google/gemma-3-27b-it"), "google/gemma-3-27b-it"),
                        context_len=9000, engine="sglang")


def test_an_edited_config_or_parser_is_parsed_afresh(cache):
    model_id = "meta-llama/Llama-3.1-8B"
    data = _config_bytes(model_id)
    registry._bundled_arch(model_id)
    assert archcache.load(data, model_id) is not None
    edited = json.dumps({**json.loads(data), "num_key_value_heads": 4}).encode()
    assert archcache.load(edited, model_id) is None  # the key hashes the file's bytes
    assert archcache.load(data, "meta-llama/Llama-3.1-8B-Instruct") is None
    monkeypatch_digest = archcache._PARSER_DIGEST[:]
    archcache._PARSER_DIGEST[:] = [b"another parser"]
    try:
        assert archcache.load(data, model_id) is None  # and the parser's source
    finally:
        archcache._PARSER_DIGEST[:] = monkeypatch_digest


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"__type__": "Path", "x": 1}',
                                     b'{"__type__": "ModelArch", "model_id": 3}', b'[1, 2]',
                                     b'{"__type__": "FullAttention", "index": 0}'])
def test_a_damaged_or_foreign_cache_file_means_a_normal_parse(cache, content):
    model_id = "meta-llama/Llama-3.1-8B"
    data = _config_bytes(model_id)
    (cache / f"{archcache.key(data, model_id)}.json").write_bytes(content)
    assert archcache.load(data, model_id) is None
    assert registry._bundled_arch(model_id) == parse_config(json.loads(data), model_id)


def test_cache_off_or_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("KVPLAN_CACHE_DIR", "")
    assert archcache.cache_dir() is None
    registry._bundled_arch.cache_clear()
    assert registry._bundled_arch("Qwen/Qwen3-8B").num_layers == 36
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KVPLAN_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    registry._bundled_arch.cache_clear()
    assert registry._bundled_arch("Qwen/Qwen3-8B").num_layers == 36
    registry._bundled_arch.cache_clear()


def test_kvplan_size_of_a_bundled_model_needs_no_pydantic(tmp_path):
    code = ("import sys; from kvplan.cli import main; "
            "rc = main(['size', 'meta-llama/Llama-3.1-8B', '--context', '8192', '--json']); "
            "print('PYDANTIC' if 'pydantic' in sys.modules else 'NO-PYDANTIC', rc, file=sys.stderr)")
    env = {**os.environ, "KVPLAN_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
            for _ in range(2)]
    assert [r.stderr.split()[-2:] for r in runs] == [["PYDANTIC", "0"], ["NO-PYDANTIC", "0"]]
    assert runs[0].stdout == runs[1].stdout and json.loads(runs[1].stdout)["kv_bytes"] == 2**30
