"""No code from a model repository is ever imported or executed (`trust_remote_code` is never used).

A config asking for remote code (`auto_map` naming `configuration_*.py` / `modeling_*.py`) is read as
data: the planner sizes it like any config, the .py files are never downloaded, imported or run.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import kvplan

ROOT = Path(__file__).resolve().parent.parent

# Importing or running either file would create the sentinel and print to stderr.
EVIL = """
import pathlib, sys
pathlib.Path({sentinel!r}).write_text("remote code ran")
sys.stderr.write("REMOTE CODE EXECUTED\\n")
raise SystemExit(99)
"""

AUTO_MAP_CONFIG = {
    "model_type": "evil_llama", "architectures": ["EvilForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                 "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
                 "AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]},
    "trust_remote_code": True,
    "num_hidden_layers": 4, "num_attention_heads": 16, "num_key_value_heads": 4, "hidden_size": 1024,
    "torch_dtype": "bfloat16",
}


def _evil_files(sentinel: Path) -> dict[str, bytes]:
    code = EVIL.format(sentinel=str(sentinel)).encode()
    return {"config.json": json.dumps(AUTO_MAP_CONFIG).encode(), "configuration_evil.py": code,
            "modeling_evil.py": code, "tokenization_evil.py": code, "__init__.py": code}


def _assert_nothing_ran(sentinel: Path) -> None:
    assert not sentinel.exists()
    assert not any(name.endswith("_evil") or "evil" in name.split(".")[-1] for name in sys.modules)


def test_local_folder_with_auto_map_is_read_as_data(tmp_path, capsys):
    sentinel = tmp_path / "sentinel"
    folder = tmp_path / "evil-model"
    folder.mkdir()
    for name, data in _evil_files(sentinel).items():
        (folder / name).write_bytes(data)
    sys.path.insert(0, str(folder))  # even with the repo on sys.path, nothing is imported from it
    try:
        arch = kvplan.load_model(str(folder))
        est = kvplan.kv_cache(str(folder), context_len=4096, engine="vllm")
    finally:
        sys.path.remove(str(folder))
    assert arch.model_type == "evil_llama" and arch.num_layers == 4
    assert est.bytes_per_token == 4 * 4 * 64 * 2 * 2  # layers · kv heads · head_dim · (K+V) · bf16
    _assert_nothing_ran(sentinel)
    assert "REMOTE CODE" not in capsys.readouterr().err


def test_hub_repo_with_auto_map_downloads_only_config(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fake_hub import FakeHub, FakeRepo

    from kvplan import hub

    sentinel = tmp_path / "sentinel"
    server = FakeHub({"evil/remote-code": FakeRepo(_evil_files(sentinel))}).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        hub.clear_cache()
        arch = hub.load_hub_model("evil/remote-code")
        assert arch.num_layers == 4 and arch.layers[0].num_kv_heads == 4
        assert kvplan.kv_cache("evil/remote-code", context_len=1024).kv_bytes > 0
        fetched = {path.rsplit("/", 1)[-1] for _, path, _ in server.requests if "/resolve/" in path}
        assert fetched <= {"config.json", "model.safetensors", "model.safetensors.index.json"}
        assert not list((tmp_path / "cache").rglob("*.py"))
    finally:
        server.stop()
        hub.clear_cache()
    _assert_nothing_ran(sentinel)


def test_parse_config_ignores_auto_map_and_trust_remote_code():
    with_map = kvplan.parse_config(AUTO_MAP_CONFIG)
    without = kvplan.parse_config({k: v for k, v in AUTO_MAP_CONFIG.items()
                                   if k not in ("auto_map", "trust_remote_code")})
    assert with_map == without


# `trust_remote_code=<anything but False>` and dynamic code loading appear nowhere in kvplan.
_FORBIDDEN = [re.compile(r"trust_remote_code\s*=\s*(?!False\b)"), re.compile(r"(?<![.\w])exec\s*\("),
              re.compile(r"(?<![.\w])eval\s*\("), re.compile(r"importlib\.(import_module|util\.spec_from_file)"),
              re.compile(r"get_class_from_dynamic_module|dynamic_module_utils"), re.compile(r"\bpickle\.load"),
              re.compile(r"\btorch\.load\s*\(")]


def test_no_remote_code_paths_in_the_source():
    offenders = []
    for path in sorted((ROOT / "kvplan").rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(p.search(code) for p in _FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert offenders == []
