"""The llama-server command allocates the cache kvplan planned.

kvplan plans llama.cpp as slots × the cache of one sequence (planner: budget // per-sequence bytes).
llama-server with an explicit `-np N` keeps one stream of `-c / N` cells per slot (kv_unified stays
off; only the automatic -np turns it on: ggml-org/llama.cpp tools/server/server.cpp, "n_parallel is
set to auto, using n_parallel = 4 and kv_unified = true"; ENGINE_KV_SPEC C.1). These tests read the
command's own -c / -np / --kv-unified / -ub / --swa-full back and size that launch with the llama.cpp
profile: it must be the planned slots' cache and fit the planned KV budget.
"""

from __future__ import annotations

import re

import pytest

import kvplan
from kvplan.launch import launch_command, option_flags


def _launched(p, options: dict) -> str:
    cmd = launch_command("llama.cpp", p.model, tp=p.tp, pp=p.pp, max_model_len=p.max_model_len,
                         max_num_seqs=max(1, p.max_sequences), kv_dtype=p.kv_dtype, weights_dtype="auto",
                         memory_fraction=None)
    flags = option_flags("llama.cpp", options)
    return f"{cmd} {flags}".strip()


def _cache_of(cmd: str, model: str, kv_dtype: str, pp: int) -> tuple[int, int, int]:
    """(bytes llama-server allocates for this command, slots, per-slot context), per the profile."""
    n_ctx = int(re.search(r"-c (\d+)", cmd).group(1))
    slots = int(re.search(r"-np (\d+)", cmd).group(1))
    ub = re.search(r"-ub (\d+)", cmd)
    opts = {"parallel": slots, "kv_unified": "--kv-unified" in cmd, "swa_full": "--swa-full" in cmd}
    if ub:
        opts["ubatch"] = int(ub.group(1))
    assert n_ctx % slots == 0
    est = kvplan.kv_cache(model, context_len=n_ctx // slots, batch=slots, engine="llama.cpp", kv_dtype=kv_dtype,
                          pp=pp, **opts)
    return est.kv_bytes, slots, n_ctx // slots


@pytest.mark.parametrize("model,gpu,ctx,options", [
    ("meta-llama/Llama-3.1-8B", "L40S", 8000, {}),  # full attention; 8,000 is not a multiple of 256
    ("google/gemma-3-27b-it", "H100-SXM", 32768, {}),  # sliding layers: window + ubatch cells per stream
    ("google/gemma-3-27b-it", "H100-SXM", 8192, {"ubatch": 1024, "swa_full": True}),
    ("google/gemma-3-27b-it", "H100-SXM", 32768, {"kv_unified": True}),
    ("google/gemma-2-9b", "L40S", 8192, {"kv_unified": True, "ubatch": 256}),
])
def test_llama_server_allocates_what_was_planned(model, gpu, ctx, options):
    p = kvplan.plan(model, gpu=gpu, max_model_len=ctx, engine="llama.cpp", **options)
    assert p.max_sequences >= 2, "pick a case with several slots"
    cmd = _launched(p, options)
    assert ("--kv-unified" in cmd) == bool(options.get("kv_unified"))
    launched, slots, per_slot = _cache_of(cmd, model, p.kv_dtype, p.pp)
    assert (slots, per_slot) == (p.max_sequences, ctx)
    one = kvplan.kv_cache(model, context_len=ctx, engine="llama.cpp", kv_dtype=p.kv_dtype, pp=p.pp, **options).kv_bytes
    if options.get("kv_unified"):
        # One shared stream: the ubatch and the padding once, not per slot; never more than planned.
        assert launched <= slots * one
    else:
        assert launched == slots * one  # exactly the planner's slots × one sequence's cache
    assert launched <= p.kv_budget_bytes


def test_without_np_llama_server_would_not_do_what_was_planned():
    # Why -np is always written: left out, llama-server picks 4 unified slots whatever -c says, so the
    # planned count of sequences would not be the server's.
    p = kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100-SXM", max_model_len=8192, engine="llama.cpp")
    assert p.max_sequences != 4
    assert f"-np {p.max_sequences}" in _launched(p, {})


def test_kv_unified_flag():
    assert option_flags("llama.cpp", {"kv_unified": True, "ubatch": 256}) == "-ub 256 --kv-unified"
    assert option_flags("llama.cpp", {"kv_unified": False}) == ""
