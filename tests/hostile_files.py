"""Hostile GGUF files and a resource-limited child process, shared by tests/test_gguf.py and
benchmarks/hostile.py.

Each `gguf_*` function writes one crafted file into a folder and returns its path. Large ones are
sparse (`truncate`), so a "1 GB" file costs no disk. `run_limited` runs Python code in a child with
an address-space limit (RLIMIT_AS) and a wall-clock timeout, and reports its peak RSS: a regression
then fails one test instead of eating the shared machine.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
U8, I32, U32, STRING, ARRAY, U64 = 0, 5, 4, 8, 9, 10


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _kv_u32(key: str, value: int) -> bytes:
    return _s(key) + struct.pack("<II", U32, value)


def _kv_str(key: str, value: str) -> bytes:
    return _s(key) + struct.pack("<I", STRING) + _s(value)


def _header(kv_count: int, tensor_count: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count)


def _llama_keys() -> list[bytes]:
    return [_kv_str("general.architecture", "llama"), _kv_u32("llama.block_count", 2),
            _kv_u32("llama.embedding_length", 64), _kv_u32("llama.attention.head_count", 4)]


def _write(path: Path, data: bytes, size: int | None = None) -> Path:
    with open(path, "wb") as fh:
        fh.write(data)
        if size is not None and size > len(data):
            fh.truncate(size)  # sparse: zeros that take no disk
    return path


def gguf_claims_2_60_elements(folder: Path) -> Path:
    """The issue's 430-byte file: an array header claiming 2^60 elements."""
    keys = _llama_keys() + [_s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 1 << 60)]
    data = _header(len(keys)) + b"".join(keys)
    return _write(folder / "claims-2-60.gguf", data + b"\x00" * max(0, 430 - len(data)))


def gguf_array_20m(folder: Path, key: str = "llama.attention.head_count_kv") -> Path:
    """A 20 MB file with one 20M-element uint8 array (a per-layer key: 4 GB in the gguf package)."""
    n = 20_000_000
    keys = _llama_keys() + [_s(key) + struct.pack("<IIQ", ARRAY, U8, n)]
    return _write(folder / f"array-20m-{key.split('.')[0]}.gguf", _header(len(keys)) + b"".join(keys), 
                  size=len(_header(len(keys)) + b"".join(keys)) + n)


def gguf_many_tensors(folder: Path, n: int = 300_000) -> Path:
    """300k tensor entries after a valid header (1.5 GB in the gguf package; never read here)."""
    keys = _llama_keys()
    tensor = _s("t") + struct.pack("<I", 1) + struct.pack("<Q", 1) + struct.pack("<IQ", 0, 0)
    return _write(folder / "tensors-300k.gguf", _header(len(keys), tensor_count=n) + b"".join(keys) + tensor * n)


def gguf_empty_arrays(folder: Path, n: int = 1_000_000) -> Path:
    """1M empty arrays (1.3 GB in the gguf package)."""
    one = _s("x") + struct.pack("<IIQ", ARRAY, U8, 0)
    keys = _llama_keys()
    return _write(folder / f"empty-arrays-{n}.gguf", _header(len(keys) + n) + b"".join(keys) + one * n)


def gguf_empty_strings(folder: Path, n: int = 1 << 21) -> Path:
    """A valid tokenizer array of `n` empty strings: the most per-element work a header can ask for."""
    keys = _llama_keys() + [_s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, n)]
    return _write(folder / f"empty-strings-{n}.gguf", _header(len(keys)) + b"".join(keys) + b"\x00" * (8 * n))


def gguf_nested_arrays(folder: Path, n: int = 1 << 22) -> Path:
    """An array of `n` empty arrays (walked one by one)."""
    keys = _llama_keys() + [_s("tokenizer.x") + struct.pack("<IIQ", ARRAY, ARRAY, n)]
    inner = struct.pack("<IQ", U8, 0)
    return _write(folder / "nested.gguf", _header(len(keys)) + b"".join(keys) + inner * n)


def gguf_1gb_garbage(folder: Path) -> Path:
    """1 GB: a valid start, then a vocabulary of empty strings up to the element cap, then 1 GB of zeros."""
    n = (1 << 21) - 1
    keys = _llama_keys() + [_s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, n)]
    data = _header(len(keys) + 16_000) + b"".join(keys) + b"\x00" * (8 * n)
    return _write(folder / "garbage-1gb.gguf", data, size=1 << 30)


def gguf_1gb_long_keys(folder: Path) -> Path:
    """1 GB: 16,000 keys of 1 KiB names, each holding a 4 MiB string (the header cap is hit first)."""
    one = _s("k" * 1024) + struct.pack("<I", STRING) + _s("v" * (4 << 20))
    keys = _llama_keys()
    n = 16
    data = _header(len(keys) + 16_000) + b"".join(keys) + one * n
    return _write(folder / "long-keys-1gb.gguf", data, size=1 << 30)


BOMBS = {
    "2^60-element array (430 B)": gguf_claims_2_60_elements,
    "20M-element per-layer array (20 MB)": gguf_array_20m,
    "20M-element tokenizer array (20 MB)": lambda d: gguf_array_20m(d, "tokenizer.ggml.scores"),
    "300k tensor entries": gguf_many_tensors,
    "1M empty arrays": gguf_empty_arrays,
    "2M empty strings (at the cap)": gguf_empty_strings,
    "4M nested empty arrays": gguf_nested_arrays,
    "1 GB: cap-sized vocabulary + zeros": gguf_1gb_garbage,
    "1 GB: 4 MiB strings to the header cap": gguf_1gb_long_keys,
}


def run_limited(code: str, *, args: tuple[str, ...] = (), mem_bytes: int = 1 << 30, timeout: float = 60.0,
                env: dict | None = None) -> dict:
    """Run `code` in a child Python with RLIMIT_AS = mem_bytes and a wall-clock timeout.

    Returns {"rc", "stdout", "stderr", "wall_s", "maxrss_bytes", "hwm_bytes", "timed_out"}:
    `maxrss_bytes` is ru_maxrss from wait4() on that one child; Linux keeps it across fork + exec, so
    from a big parent (pytest with torch loaded) it is at least the parent's size. `hwm_bytes` is the
    child's own VmHWM (/proc/self/status, reset by exec), written at exit: the figure tests assert on.
    A child past `timeout` is killed and reported with timed_out=True.
    """
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    hwm_file = tempfile.NamedTemporaryFile(prefix="kvplan-hwm-", delete=False)
    hwm_file.close()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _HWM_HOOK + code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, preexec_fn=limit,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "KVPLAN_HWM_FILE": hwm_file.name,
                                 **(env or {})})
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda s=stream, k=k: chunks[k].extend(iter(lambda: s.read(65536), b"")),
                                daemon=True) for k, stream in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            timed_out = True
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    for t in readers:
        t.join(5)
    try:
        hwm = int(Path(hwm_file.name).read_text() or 0) * 1024 or None
    finally:
        os.unlink(hwm_file.name)
    return {"hwm_bytes": hwm, "rc": proc.returncode, "stdout": b"".join(chunks["out"]).decode(errors="replace"),
            "stderr": b"".join(chunks["err"]).decode(errors="replace"), "wall_s": wall,
            "maxrss_bytes": usage.ru_maxrss * 1024, "timed_out": timed_out}  # ru_maxrss: KiB on Linux


_HWM_HOOK = """
import atexit as _atexit, os as _os
def _kvplan_hwm():
    try:
        for _line in open("/proc/self/status"):
            if _line.startswith("VmHWM:"):
                open(_os.environ["KVPLAN_HWM_FILE"], "w").write(_line.split()[1])
    except OSError:
        pass
_atexit.register(_kvplan_hwm)
"""

# What a child runs to load a model file: one JSON line with the outcome.
LOAD_CHILD = """
import json, sys, time
t = time.perf_counter()
import kvplan
from kvplan.errors import KvplanError
try:
    kvplan.load_model(sys.argv[1])
    outcome = "ok"
except KvplanError as err:
    outcome = "typed error: " + str(err)[:200]
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - t}))
"""
