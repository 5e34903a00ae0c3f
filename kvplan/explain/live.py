"""`kvplan validate MODEL --engine vllm|sglang|llama.cpp`: start the installed engine with dummy weights,
wait for its startup log, stop it, and explain that log (predicted vs what the engine itself allocated).

vLLM and SGLang load random weights (`--load-format dummy`), so only the config is downloaded; llama.cpp
needs a GGUF (`gguf=`). The engine runs in its own process group and is always stopped (SIGTERM, then
SIGKILL); its output is read line by line, bounded like any log (logtext.MAX_LOG_CHARS).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from kvplan.errors import InvalidInputError, LogParseError
from kvplan.explain.logtext import MAX_LINE_CHARS, MAX_LOG_CHARS

# A line that says the engine finished starting (its KV cache is allocated and printed by then).
READY = {
    "vllm": ("Application startup complete", "Starting vLLM API server", "Uvicorn running on"),
    "sglang": ("The server is fired up", "Uvicorn running on", "max_total_num_tokens="),
    "llama.cpp": ("server is listening", "main: model loaded", "starting the main loop", "all slots are idle"),
}
_ALIASES = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp"}


@dataclass(frozen=True)
class EngineRun:
    command: list[str]
    log: str
    ready: bool
    returncode: int | None
    seconds: float


def engine_command(engine: str, model: str, *, gguf: str | None = None, executable: str | None = None,
                   port: int = 18123, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The command line that starts `engine` on `model` with dummy weights (and nothing else changed)."""
    if engine == "vllm":
        exe = shlex.split(executable) if executable else ["vllm"]
        return exe + ["serve", model, "--load-format", "dummy", "--port", str(port), *extra_args]
    if engine == "sglang":
        exe = shlex.split(executable) if executable else ["python", "-m", "sglang.launch_server"]
        return exe + ["--model-path", model, "--load-format", "dummy", "--port", str(port), *extra_args]
    if engine == "llama.cpp":
        if not gguf:
            raise InvalidInputError("--gguf", "llama.cpp needs a GGUF file to load: give --gguf PATH")
        exe = shlex.split(executable) if executable else ["llama-server"]
        return exe + ["-m", gguf, "--port", str(port), *extra_args]
    raise InvalidInputError("--engine", f"validate starts vllm, sglang or llama.cpp, not {engine!r}")


def run_engine(command: list[str], engine: str, *, timeout_s: float = 900.0, env: dict | None = None) -> EngineRun:
    """Start `command`, collect its output until a ready line, exit or timeout, then stop it."""
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    except FileNotFoundError:
        raise InvalidInputError("--engine", f"{command[0]!r} is not installed here (or give --engine-exe PATH)") from None
    except PermissionError:
        raise InvalidInputError("--engine-exe", f"{command[0]!r} is not executable") from None
    lines: list[str] = []
    size = 0
    ready = threading.Event()
    saw_ready = threading.Event()
    marks = READY[engine]

    def reader() -> None:
        nonlocal size
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw[:MAX_LINE_CHARS].decode("utf-8", errors="replace").rstrip("\r\n")
            if size + len(line) < MAX_LOG_CHARS:
                lines.append(line)
                size += len(line) + 1
            if any(m in line for m in marks):
                saw_ready.set()
                ready.set()
        ready.set()  # the engine exited (or closed its output)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    ready.wait(timeout_s)
    thread.join(0.5)
    if not thread.is_alive():  # output closed: the engine is exiting; collect its code
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    returncode = proc.poll()
    is_ready = saw_ready.is_set() and returncode is None
    _stop(proc)
    thread.join(5)
    return EngineRun(command, "\n".join(lines), is_ready, returncode, round(time.monotonic() - t0, 1))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def validate_engine(model: str, engine: str, *, gguf: str | None = None, executable: str | None = None,
                    extra_args: tuple[str, ...] = (), timeout_s: float = 900.0, port: int = 18123,
                    config: Any = None):
    """Start the engine and explain its startup log against kvplan: (JSON-ready dict, Explanation)."""
    from kvplan.explain import explain

    key = _ALIASES.get(str(engine).lower(), str(engine).lower())
    cmd = engine_command(key, model, gguf=gguf, executable=executable, port=port, extra_args=tuple(extra_args))
    run = run_engine(cmd, key, timeout_s=timeout_s)
    out: dict[str, Any] = {"command": run.command, "ready": run.ready, "returncode": run.returncode,
                           "seconds": run.seconds, "log_lines": run.log.count("\n") + 1 if run.log else 0}
    if not run.log.strip():
        raise InvalidInputError("--engine", f"{cmd[0]} printed nothing (exit code {run.returncode})")
    try:
        ex = explain(run.log, None if config is not None else model, config=config, engine=key)
    except LogParseError as err:
        tail = " | ".join(t[:160] for t in run.log.splitlines()[-3:])
        raise LogParseError(key, f"{str(err).removeprefix('log: ')} (the engine's last lines: {tail})",
                            missing=err.missing) from None
    out["explain"] = ex.to_dict()
    checked = [q for q in ex.quantities if q.within_precision is not None]
    out["within_precision"] = sum(1 for q in checked if q.within_precision)
    out["compared"] = len(checked)
    return out, ex
