"""`kvplan.sweep` evaluates each engine's per-context arithmetic (`sweep_plan`, issue 16) instead of
running kv_cache once per context. These tests hold it identical to kv_cache, field for field and to
the byte (and `kvplan.sweep_bytes` to its kv_bytes and total_bytes), on every bundled model × engine,
at contexts on and around every block, page, window, in-flight and cell-padding boundary, under every
engine option and version that changes the layout."""

from __future__ import annotations

import copy
import pickle
import random

import pytest

import kvplan
from kvplan.api import _prepare
from kvplan.engines import ENGINE_NAMES
from kvplan.engines.common import KindBytes, KVEstimate
from kvplan.layers import ChunkedLocal, SlidingWindow

BLOCKS = (1, 16, 32, 64, 128, 256, 512)
# Tokens in flight past a vLLM window: (pp + 1 or 2) × max_num_batched_tokens, for the option values below.
IN_FLIGHT = (0, 2048, 4096, 8192, 16384, 24576)


def boundary_contexts(arch) -> list[int]:
    """Contexts at and next to every boundary where some engine's bytes change slope or step."""
    points = {1, 2, 3, 7, 1000, 10**6, 2**20 + 1, 3 * 10**6, 2**34 - 1, 2**34}  # 2**34: the largest context
    for b in BLOCKS:
        for k in (1, 3):
            points.update((k * b - 1, k * b, k * b + 1))
    windows = {s.window for s in arch.layers if isinstance(s, SlidingWindow)}
    windows |= {s.chunk for s in arch.layers if isinstance(s, ChunkedLocal)}
    for w in windows:
        # vLLM keeps window - 1 + in-flight tokens; llama.cpp window · n_seq + ubatch cells (n_seq 1 or 4)
        edges = [w + extra for extra in IN_FLIGHT] + [w + 512, w + 2048, 4 * w + 512, 4 * w + 2048]
        for edge in edges:
            points.update((edge - 2, edge - 1, edge, edge + 1))
        for b in BLOCKS[1:]:  # the window rounded to blocks/pages
            points.add(-(-w // b) * b + 1)
    return sorted(p for p in points if p >= 1)


def assert_identical(got, expected) -> None:
    """Two KVEstimates alike in every way a caller can see: fields, their types, the order of their
    __dict__ (as vars() and pickle see it), breakdown rows likewise, hash, and a pickle round trip."""
    assert type(got) is KVEstimate and all(type(r) is KindBytes for r in got.breakdown)
    assert got == expected, (expected.model, expected.engine, expected.context_len)
    assert repr(got) == repr(expected) and got.to_dict() == expected.to_dict()  # same types (int, None, tuples)
    assert list(vars(got).items()) == list(vars(expected).items())
    for g, e in zip(got.breakdown, expected.breakdown):
        assert list(vars(g).items()) == list(vars(e).items())
    assert type(got.breakdown) is tuple and type(got.notes) is tuple
    assert hash(got) == hash(expected) and pickle.loads(pickle.dumps(got)) == expected


def assert_same(arch, contexts, **kwargs):
    """sweep(...) == [kv_cache(...) for each context], or both raise the same typed error."""
    try:
        expected = [kvplan.kv_cache(arch, context_len=c, **kwargs) for c in contexts]
    except kvplan.KvplanError as err:
        for fn in (kvplan.sweep, kvplan.sweep_bytes):
            with pytest.raises(type(err)) as got:
                fn(arch, context_lens=contexts, **kwargs)
            assert str(got.value) == str(err)
        return False
    # sweep_bytes: the same bytes without the results (kv_bytes, and total_bytes with total=True)
    for total, field in ((False, "kv_bytes"), (True, "total_bytes")):
        got = kvplan.sweep_bytes(arch, context_lens=contexts, total=total, **kwargs)
        assert type(got) is list and all(type(x) is int for x in got)
        assert got == [getattr(e, field) for e in expected], (arch.model_id, kwargs, field)
    got = kvplan.sweep(arch, context_lens=contexts, **kwargs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g == e, (arch.model_id, kwargs, e.context_len)
        assert repr(g) == repr(e) and g.to_dict() == e.to_dict()  # same types too (int, None, tuples)
        assert list(vars(g)) == list(vars(e)) and [list(vars(r)) for r in g.breakdown] == \
            [list(vars(r)) for r in e.breakdown]  # fields stored in the same order
    assert_identical(got[-1], expected[-1])
    return True


def _archs():
    return [kvplan.load_model(m) for m in kvplan.list_models()]


def representatives():
    """One bundled model per (layer kinds, model type, layer shapes) family: every kind on main."""
    seen, out = set(), []
    for arch in _archs():
        shapes = {(type(s),) + tuple(v for k, v in vars(s).items() if k != "index") for s in arch.layers}
        # model_type picks SGLang's hybrid SWA pool and llama.cpp's iSWA cache for windowed models
        kinds = frozenset((type(s).__name__, getattr(s, "mixer", ""), getattr(s, "ssm_dtype", "")) for s in arch.layers)
        heads = len({s.num_kv_heads for s in arch.layers if hasattr(s, "num_kv_heads")})  # NAS: per-layer heads
        key = (kinds, min(len(shapes), 3), heads > 1, arch.model_type if arch.windowed else "", arch.dtype == "fp32")
        if key not in seen:
            seen.add(key)
            out.append(arch)
    return out


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_sweep_equals_kv_cache_on_every_bundled_model(engine):
    checked = 0
    for arch in _archs():
        checked += assert_same(arch, boundary_contexts(arch), engine=engine)
    assert checked >= len(kvplan.list_models()) - 2  # a few models cannot run on an engine (typed errors)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_every_bundled_model_takes_the_fast_path(engine):
    """The identity above would also hold on the slow fallback; this proves the sweep's arithmetic is
    what runs. A new layer kind needs its rows in each engine's `sweep_plan` (the fallback keeps
    results right until then, but slow)."""
    slow = []
    for arch in _archs():
        try:
            _, mod, first, opts, _ = _prepare(arch, engine, "auto", 4096, 1, 1, 1, {})
            plan = mod.sweep_plan(arch, first, opts)
        except kvplan.KvplanError:
            continue
        if plan is None:
            slow.append(arch.model_id)
    assert not slow, f"{engine} sweep_plan does not cover: {slow}"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_slow_fallback_gives_the_same_answers(engine, monkeypatch):
    """A plan the engine cannot make (None: a layer kind its sweep_plan does not know) falls back to
    kv_cache per context, for sweep and sweep_bytes alike; the answers stay kv_cache's."""
    from kvplan.engines import get_engine

    monkeypatch.setattr(get_engine(engine), "sweep_plan", lambda *args: None)
    for model_id in ("meta-llama/Llama-3.1-8B", "google/gemma-3-27b-it", "Qwen/Qwen3-Next-80B-A3B-Thinking"):
        for kwargs in (dict(batch=2), dict(pp=2)):  # pp: total_bytes differs from kv_bytes
            assert_same(kvplan.load_model(model_id), [1, 4096, 70_000, 2**20], engine=engine, **kwargs)


LAYOUTS = [dict(tp=2), dict(pp=2), dict(pp=3, batch=2), dict(kv_dtype="fp8", batch=3)]
OPTIONS = {
    "vllm": [dict(block_size=32), dict(block_size=128, pp=2), dict(hybrid_kv_cache_manager=False),
             dict(mamba_cache_mode="none"), dict(mamba_cache_mode="all"),
             dict(async_scheduling=False, pp=2), dict(max_num_batched_tokens=2048, tp=4),
             dict(mamba_ssm_cache_dtype="fp32", mamba_cache_dtype="bf16"), dict(engine_version="0.10"),
             dict(engine_version="0.19"), dict(kv_dtype="nvfp4"), dict(engine_version="0.99", pp=2)],
    "sglang": [dict(block_size=64), dict(hybrid_swa_memory=True), dict(hybrid_swa_memory=False),
               dict(dp_attention=2, tp=2), dict(mamba_ssm_dtype="bf16"), dict(block_size=16, pp=2),
               dict(engine_version="0.9")],
    "llama.cpp": [dict(parallel=4, batch=4), dict(parallel=4, batch=4, kv_unified=True), dict(batch=3),
                  dict(swa_full=True), dict(ubatch=2048), dict(ctx_pad=32), dict(mla_v_cache=True),
                  dict(kv_dtype="q8_0"), dict(kv_dtype="q4_0", type_v="q8_0"), dict(engine_version="b4905"),
                  dict(engine_version="b5200"), dict(engine="ik_llama.cpp"), dict(engine="ik_llama.cpp", mla=0),
                  dict(engine="ik_llama.cpp", mla=1), dict(pp=2, parallel=2, batch=2), dict(engine_version="b99999")],
    "transformers": [dict(mla_cache="decompressed"), dict(kv_dtype="fp32"), dict(batch=5)],
    "trtllm": [dict(block_size=64), dict(max_attention_window=True), dict(max_attention_window=True, pp=2),
               dict(kv_dtype="int8"), dict(engine_version="2.0")],
    "naive": [dict(tp=8, pp=2, batch=3), dict(kv_dtype="int4")],
}


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_sweep_equals_kv_cache_under_every_option_and_layout(engine):
    archs = representatives()
    assert len(archs) >= 10
    for kwargs in LAYOUTS + OPTIONS[engine]:
        checked = sum(assert_same(arch, boundary_contexts(arch), **{"engine": engine, **kwargs}) for arch in archs)
        # each option runs on some model (not only typed errors); llama.cpp has no TP, HF one device
        assert checked >= 1 or kwargs in LAYOUTS and engine in ("llama.cpp", "transformers"), kwargs


def test_sweep_equals_kv_cache_at_random_contexts():
    """Contexts drawn at random (seeded), in no order and with repeats, on every representative model
    and engine: away from the boundaries too, and through the same fast paths a chart takes."""
    rng = random.Random(16)
    for arch in representatives():
        contexts = [rng.choice((rng.randint(1, 4096), rng.randint(1, 2**20), rng.randint(1, 2**34)))
                    for _ in range(60)]
        contexts += contexts[:5]
        for engine in ENGINE_NAMES:
            assert_same(arch, contexts, engine=engine, batch=rng.choice((1, 2, 7)))


def test_sweep_results_are_independent_objects():
    """Each result owns its fields: changing one (object.__setattr__ gets past frozen) changes no other
    result of the sweep, and no later sweep (the per-sweep templates are copied, not shared)."""
    arch = kvplan.load_model("meta-llama/Llama-3.1-8B")
    for engine in ENGINE_NAMES:
        first = kvplan.sweep(arch, context_lens=[1024, 2048, 1024], engine=engine)
        before = copy.deepcopy(first)
        object.__setattr__(first[0], "kv_bytes", -1)
        object.__setattr__(first[0], "notes", ("changed",))
        assert first[1:] == before[1:] and first[0] != first[2]
        assert kvplan.sweep(arch, context_lens=[1024, 2048, 1024], engine=engine) == before


def test_common_plans_take_the_one_pass_path():
    """The one-pass build (`_one_row`) serves the commonest plans (one attention kind on any engine,
    llama.cpp's per-context notes included; naive on one GPU); other shapes decline it and take the
    column path. Identity is tested above on both; this keeps the fast path from silently going unused."""
    from kvplan.engines import sweep as sweep_mod

    calls = []
    real = sweep_mod._one_row

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    sweep_mod._one_row = spy
    try:
        for engine in ("vllm", "sglang", "trtllm", "transformers", "naive", "llama.cpp"):
            kvplan.sweep("meta-llama/Llama-3.1-8B", context_lens=range(1000, 200_000, 997), engine=engine)
        kvplan.sweep("google/gemma-3-27b-it", context_lens=range(1000, 200_000, 997), engine="vllm")
    finally:
        sweep_mod._one_row = real
    assert calls[:6] == [True] * 6 and calls[6:] in ([], [False])


def test_sweep_keeps_order_duplicates_and_string_contexts():
    arch = kvplan.load_model("google/gemma-3-27b-it")
    contexts = [131072, "32k", 5, 5, 1024, "1M", 1]
    assert_same(arch, [kvplan.units.parse_tokens(c) for c in contexts], engine="vllm")
    got = kvplan.sweep(arch, context_lens=contexts, engine="vllm")
    assert [e.context_len for e in got] == [131072, 32768, 5, 5, 1024, 2**20, 1]
    assert kvplan.sweep(arch, context_lens=[]) == []


@pytest.mark.parametrize("bad", [[4096, 0], [4096, -1], [4096, 2**40], [True], ["lots"], [1.5]])
def test_sweep_rejects_bad_contexts_like_kv_cache(bad):
    for fn in (kvplan.sweep, kvplan.sweep_bytes):
        with pytest.raises(kvplan.InvalidInputError, match="context"):
            fn("meta-llama/Llama-3.1-8B", context_lens=bad)
