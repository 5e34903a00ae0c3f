"""vLLM (V1 engine) KV-cache allocation, per ENGINE_KV_SPEC.md §A.

Paged blocks of `block_size` tokens; one KV-cache tensor per layer slot; hybrid models grouped so all
groups share one page size (A.7); Mamba/GDN states padded up to one attention page. Per-request
memory is what vLLM's own `max_memory_usage_bytes` budgets for a request of that length (the figure
its "Maximum concurrency" uses), so sliding layers count `window − 1 + in-flight` tokens plus one block.
This module knows nothing of GPUs or weights: the KV budget is an input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kvplan.dtypes import get_dtype
from kvplan.engines.common import (
    Capacity, KindBytes, KVEstimate, Request, cdiv, check_tp, grouped_stages, kv_heads_per_rank,
    mamba_state_elems,
)
from kvplan.errors import InvalidInputError, UnsupportedConfigError
from kvplan.layers import MLA, ChunkedLocal, FullAttention, ModelArch, RecurrentState, SlidingWindow
from kvplan.versions import VersionRule, VersionTable

NAME = "vllm"
KV_DTYPES = ("bf16", "fp16", "fp32", "fp8", "fp8_e4m3", "fp8_e5m2", "nvfp4")
DEFAULT_BLOCK_SIZE = 16  # vllm/config/cache.py
MLA_BLOCK_SIZE = 64  # FlashMLA (A.5), the default MLA backend of 0.8-0.11.0; see VERSIONS mla_block_size


_VLLM = "https://github.com/vllm-project/vllm"
# Which vLLM rule changes at which release. Keys that name an `Options` field become that option's
# default at the requested version (an explicit option still wins); the others are read by the planner.
VERSIONS = VersionTable("vllm", oldest="0.4.0", latest="0.28.0", scheme="semver", rules=(
    VersionRule("engine_core", "0.8.0", "v0", "v1",
                "V1 engine by default (V0 until 0.10 with VLLM_USE_V1=0, removed in 0.11). V0's profile run "
                "holds max_num_batched_tokens = max(max_model_len, 2048) tokens when chunked prefill is off "
                "(it is on above 32k tokens), so its activation peak grows with max_model_len",
                f"{_VLLM}/releases/tag/v0.8.0; V0 sizing: {_VLLM}/issues/10517, {_VLLM}/issues/8185"),
    VersionRule("activation_profile", "0.17.0", "v0.16", "v0.17+",
                "profile-run sampler peak: 9.67·S·V·4 B up to 0.16, 3.615·S·V·4 + 0.119 GiB from 0.17 "
                "(fit on the logs in tests/golden/startup_logs.json)",
                "llm-d-planner accuracy/results version sweep (Qwen3-14B, H100: v0.15.0/v0.16.0 vs v0.17.0 logs), "
                "https://github.com/llm-d-incubation/llm-d-planner"),
    VersionRule("non_torch_tp1", "0.18.0", 13 * 2**30 // 100, 25 * 2**30 // 100,
                "non-torch memory counted by the profiler at TP=1: 0.13 GiB up to 0.17, 0.25 GiB from 0.18 "
                "(memory in use before the profile is now counted)",
                "llm-d-planner version sweep logs v0.15-v0.17 (0.13 GiB) and v0.19.0 logs (0.24-0.27 GiB); "
                "llm-d-benchmark empirical-vllm-memory-results.md (0.13 GiB)"),
    VersionRule("non_torch_tp", "0.18.0", 54 * 2**30 // 100, 207 * 2**30 // 100,
                "non-torch memory per GPU at TP>=2 (custom all-reduce and NCCL buffers now counted): "
                "0.54 GiB before, 2.07 GiB from 0.18",
                "llm-d-benchmark empirical-vllm-memory-results.md (Qwen3-32B TP=2: 0.54 GiB); v0.19.0 llm-d-planner "
                "logs (2.06-2.21 GiB)"),
    VersionRule("kv_tokens_rule", "0.20.2", "blocks", "concurrency",
                "\"GPU KV cache size: N tokens\" prints num_blocks // groups × block_size up to 0.20.1, "
                "int(max_concurrency × max_model_len) from 0.20.2 (differs on hybrid models)",
                f"{_VLLM}/pull/13596 (blocks × block_size), {_VLLM}/issues/40691 and {_VLLM}/pull/38364 (concurrency)"),
    VersionRule("cuda_graphs_in_budget", "0.21.0", False, True,
                "the CUDA-graph memory estimate is subtracted from the KV budget "
                "(VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default on); before, graphs came out of the 1 − "
                "gpu_memory_utilization headroom",
                f"{_VLLM}/pull/30515 (estimate, opt-in), log 'default since v0.21.0' quoted in "
                "https://github.com/gpustack/runner/pull/251, {_VLLM}/issues/45178".replace("{_VLLM}", _VLLM)),
    VersionRule("gpu_memory_utilization", "0.21.0", 0.9, 0.92,
                "default --gpu-memory-utilization: 0.9 (docs up to v0.6.4 and later releases), 0.92 in current "
                "docs and LLM(); the exact release of the change is not pinned here, kvplan switches with 0.21",
                "https://docs.vllm.ai/en/v0.6.4/models/engine_args.html (0.9), "
                "https://docs.vllm.ai/en/stable/cli/serve/ (0.92)"),
    VersionRule("mla_block_size", "0.8.0", 16, 64,
                "MLA models on Hopper: FlashMLA became the default MLA backend (64-token blocks); before, Triton "
                "MLA with 16-token blocks",
                f"{_VLLM}/pull/14451 (Default to FlashMLA backend for MLA, 2025-03)"),
    VersionRule("mla_block_size", "0.11.1", 64, 16,
                "FlashAttention-MLA preferred over FlashMLA on Hopper: 16-token blocks again (v0.19.0 logs "
                "'Using FLASH_ATTN_MLA attention backend out of potential backends: [FLASH_ATTN_MLA, FLASHMLA, "
                "TRITON_MLA]' and 94,097 blocks of 16 for DeepSeek-V2-Lite, llm-d v0.19)",
                f"{_VLLM}/pull/27363 (Prefer FlashAttention MLA as default over FlashMLA, 2025-10)"),
    VersionRule("needed_includes_padding", "0.26.0", False, True,
                "\"X GiB KV cache is needed\" (the one-request check) counts hybrid group padding slots "
                "from 0.26; before, only real layers",
                "reported from v0.26 startup errors in kvplan issue 13; the vLLM commit is not pinned here "
                f"(padding slots: {_VLLM}/issues/46462)"),
))


@dataclass(frozen=True)
class Options:
    """vLLM knobs that change the bytes. Defaults are the current `vllm serve` behaviour."""

    block_size: int | None = None
    """Tokens per block; None = the attention backend's choice (16; MLA: `mla_block_size`)."""
    mla_block_size: int = 16
    """Block size of the default MLA backend on Hopper: 16 (FlashAttention-MLA, from 0.11.1; Triton MLA
    before 0.8), 64 (FlashMLA, 0.8-0.11.0). CUTLASS MLA on Blackwell uses 128: pass block_size."""
    max_num_batched_tokens: int = 8192
    """Scheduler token budget (`vllm serve` on >= 70 GiB GPUs); enters the sliding-window count."""
    async_scheduling: bool = True
    """With async scheduling two batches are in flight, so SWA layers keep 2× the batched tokens."""
    hybrid_kv_cache_manager: bool = True
    """False = --disable-hybrid-kv-cache-manager: sliding layers then take full-length memory."""
    mamba_cache_mode: Literal["none", "align", "all"] = "align"
    """State blocks per request: none = 1, align = 2 (prefix caching on, the current default), all."""
    mamba_cache_dtype: str = "auto"
    mamba_ssm_cache_dtype: str = "auto"
    num_speculative_tokens: int = 0
    """Tokens proposed per step by speculative decoding (`--speculative` / `--draft-model` add the draft's
    layers); on hybrid recurrent models vLLM keeps k more conv rows and k more state blocks per request."""
    kv_tokens_rule: Literal["concurrency", "blocks"] = "concurrency"
    """How "GPU KV cache size: N tokens" is computed: newest int(concurrency·len), older blocks·size."""

    def __post_init__(self):
        if type(self.num_speculative_tokens) is not int or not 0 <= self.num_speculative_tokens <= 64:
            raise InvalidInputError("num_speculative_tokens", f"must be between 0 and 64, got "
                                                              f"{self.num_speculative_tokens!r}")
        if self.block_size is not None and not (1 <= self.block_size <= 1 << 16):
            raise InvalidInputError("block_size", f"must be between 1 and 65536, got {self.block_size}")
        if not 1 <= self.max_num_batched_tokens <= 1 << 30:
            raise InvalidInputError("max_num_batched_tokens", "must be a positive token count")
        if self.mamba_cache_mode not in ("none", "align", "all"):
            raise InvalidInputError("mamba_cache_mode", "choose none, align or all")
        if self.kv_tokens_rule not in ("concurrency", "blocks"):
            raise InvalidInputError("kv_tokens_rule", "choose concurrency or blocks")


@dataclass
class _Type:
    """Layers sharing one vLLM KV-cache spec."""

    kind: str
    label: str = ""  # breakdown row name when it differs from `kind` (the DSA "indexer")
    count: int = 0  # layers with this spec
    tok_bytes: int = 0  # bytes per token per layer (attention); 0 for state
    k_tok: int = 0
    v_tok: int = 0
    state_bytes: int = 0  # unpadded state page (state only)
    window: int = 0
    block_size: int = 0
    page: int = 0
    groups: int = 1
    spec_blocks: int = 0  # state only: one more state block per speculative token (MambaSpec.num_speculative_blocks)

    def blocks(self, num_tokens: int, in_flight: int, mode: str) -> int:
        """Blocks one request of `num_tokens` needs (vLLM max_memory_usage_bytes / page)."""
        f = self.blocks_fn(in_flight, mode)
        return f if isinstance(f, int) else f([num_tokens])[0]

    def blocks_fn(self, in_flight: int, mode: str) -> Callable[[list[int]], list[int]] | int:
        """`blocks` for a list of request lengths at once (a sweep's contexts), or an int where the
        length does not matter. Comprehensions with cdiv and min inlined (no call per element): a sweep
        evaluates them 10^5 times."""
        block = self.block_size
        if self.kind == "sliding":
            cap = self.window - 1 + in_flight
            return lambda lens: [-(-(n if n < cap else cap) // block) + 1 for n in lens]
        if self.kind == "chunked":
            cap = self.window + in_flight
            return lambda lens: [-(-(n if n < cap else cap) // block) for n in lens]
        if self.kind == "state" and mode in ("none", "align"):
            return {"none": 1, "align": 2}[mode] + self.spec_blocks
        extra = self.spec_blocks if self.kind == "state" else 0  # one state block per speculative token
        if extra:
            return lambda lens: [-(-n // block) + extra for n in lens]
        return lambda lens: [-(-n // block) for n in lens]


@dataclass
class _Layout:
    types: list[_Type]
    group_size: int
    bytes_per_block: int
    notes: list[str]


def _state_dtypes(spec: RecurrentState, model_dtype: str, opts: Options) -> tuple[int, int]:
    conv = model_dtype if opts.mamba_cache_dtype == "auto" else opts.mamba_cache_dtype
    conv = "bf16" if conv == "fp32" and opts.mamba_cache_dtype == "auto" else conv
    if opts.mamba_ssm_cache_dtype != "auto":
        ssm = opts.mamba_ssm_cache_dtype
    else:
        ssm = spec.ssm_dtype or conv  # Qwen3.5 pins mamba_ssm_dtype float32 in its config
    return get_dtype(conv).block_bytes, get_dtype(ssm).block_bytes


def _layout(groups, req: Request, opts: Options, model_dtype: str) -> _Layout:
    """vLLM's KV-cache groups for one GPU's layers, given as (spec, count) pairs."""
    dt = req.dtype
    types: dict[tuple, _Type] = {}
    notes: list[str] = []
    for spec, n in groups:
        if isinstance(spec, FullAttention):
            heads = kv_heads_per_rank(spec.num_kv_heads, req.tp)
            k_tok, v_tok = heads * dt.row_bytes(spec.head_dim), heads * dt.row_bytes(spec.head_dim_v)
            kind, window = "full", 0
            if opts.hybrid_kv_cache_manager and isinstance(spec, SlidingWindow):
                kind, window = "sliding", spec.window
            elif opts.hybrid_kv_cache_manager and isinstance(spec, ChunkedLocal):
                kind, window = "chunked", spec.chunk
            key = (kind, k_tok, v_tok, window)
            t = types.setdefault(key, _Type(kind, tok_bytes=k_tok + v_tok, k_tok=k_tok, v_tok=v_tok,
                                            window=window))
        elif isinstance(spec, MLA):
            # The latent is one vector, no K/V pair, replicated on every TP rank (A.3).
            tok = dt.row_bytes(spec.latent_dim)
            if spec.index_head_dim and req.kv_dtype.startswith("fp8"):
                tok = spec.latent_fp8_ds_bytes  # DeepSeek-V3.2 turns an fp8 cache into fp8_ds_mla (656 B)
            t = types.setdefault(("mla", tok), _Type("mla", tok_bytes=tok))
            if spec.index_head_dim:
                # DeepseekV32IndexerCache: its own MLAAttentionSpec (1 head of 132 uint8) per layer, paged
                # with the latent; both are MLA specs, so one UniformType group holds them.
                ib = spec.indexer_fp8_bytes
                types.setdefault(("indexer", ib), _Type("mla", label="indexer", tok_bytes=ib)).count += n
        elif isinstance(spec, RecurrentState):
            # With k speculative tokens the conv state keeps kernel - 1 + k rows (mamba_utils state shapes)
            k = opts.num_speculative_tokens
            conv_elems, ssm_elems = mamba_state_elems(spec, req.tp, spec.conv_kernel - 1 + k)
            conv_b, ssm_b = _state_dtypes(spec, model_dtype, opts)
            page = conv_elems * conv_b + ssm_elems * ssm_b
            t = types.setdefault(("state", page), _Type("state", state_bytes=page, spec_blocks=k))
        else:  # pragma: no cover - the parser only makes the kinds above
            raise UnsupportedConfigError("layers", f"vLLM profile cannot size {type(spec).__name__}")
        t.count += n
    if not types:
        return _Layout([], 1, 0, ["no layer on this GPU holds a cache"])
    if not opts.hybrid_kv_cache_manager and any(
            isinstance(s, (SlidingWindow, ChunkedLocal)) for s, _ in groups):
        notes.append("hybrid KV cache manager disabled: sliding/chunked layers take full-length memory")

    attn = [t for t in types.values() if t.kind != "state"]
    state = [t for t in types.values() if t.kind == "state"]
    kernel_min = opts.mla_block_size if any(t.kind == "mla" for t in attn) else DEFAULT_BLOCK_SIZE
    block = opts.block_size or kernel_min
    if any(t.label == "indexer" for t in attn) and block != MLA_BLOCK_SIZE:
        notes.append(f"block size {block} -> {MLA_BLOCK_SIZE}: vLLM sets it for the DEEPSEEK_V32_INDEXER backend")
        block = MLA_BLOCK_SIZE
    if attn and state:
        # A.7: raise the attention block so one attention page holds a whole Mamba state page.
        align = max(kernel_min, opts.block_size or 0)
        attn_tok = attn[0].tok_bytes
        mamba_page = max(t.state_bytes for t in state)
        block = align * cdiv(mamba_page, align * attn_tok)
        notes.append(f"attention block size raised to {block} tokens so a page ({block * attn_tok:,} B) "
                     f"holds one state ({mamba_page:,} B)")
    for t in attn:
        t.block_size, t.page = block, block * t.tok_bytes
    uniform_type = not state and len({(t.kind, t.window) for t in attn}) == 1
    if attn and not uniform_type:
        max_page = max(t.page for t in attn)
        for t in attn:  # A.7 unify_kv_cache_spec_page_size
            if max_page % t.page:
                raise UnsupportedConfigError("layers", f"vLLM cannot unify attention pages of {t.page:,} and "
                                                       f"{max_page:,} bytes (not a whole ratio)")
            t.block_size *= max_page // t.page
            t.page = max_page
    for t in state:
        t.block_size = block
        t.page = attn[0].page if attn else t.state_bytes
        if t.page < t.state_bytes:  # pragma: no cover - block chosen above guarantees it
            raise AssertionError("state page larger than attention page")

    all_types = list(types.values())
    if len(all_types) == 1:
        t = all_types[0]
        return _Layout(all_types, t.count, t.count * t.page, notes)
    same_kind = len({(t.kind, t.window) for t in all_types}) == 1 and not state
    if same_kind:
        # UniformTypeKVCacheSpecs: one group whose page is the sum of the per-layer pages.
        for t in all_types:
            t.block_size, t.page = block, block * t.tok_bytes
        return _Layout(all_types, 1, sum(t.count * t.page for t in all_types), notes)
    counts = [t.count for t in all_types]
    lo, hi = min(counts), max(counts)
    group_size = hi if hi < 1.5 * lo else lo
    for t in all_types:
        t.groups = cdiv(t.count, group_size)
    page = all_types[0].page
    num_groups = sum(t.groups for t in all_types)
    padding = num_groups * group_size - sum(counts)
    notes.append(f"hybrid layout: {num_groups} KV-cache groups of {group_size} layer slots"
                 + (f" ({padding} padding slots)" if padding else ""))
    return _Layout(all_types, group_size, group_size * page, notes)


def _in_flight(req: Request, opts: Options) -> int:
    batches = (req.pp + 1 if req.pp > 1 else 2) if opts.async_scheduling else req.pp
    return batches * opts.max_num_batched_tokens


def _request_bytes(lay: _Layout, num_tokens: int, in_flight: int, opts: Options) -> list[KindBytes]:
    rows = []
    uniform = lay.group_size == 1 and len(lay.types) > 1
    for t in lay.types:
        blocks = t.blocks(num_tokens, in_flight, opts.mamba_cache_mode)
        n = t.count
        real = n * blocks * t.page
        tokens = 0 if t.kind == "state" else blocks * t.block_size
        if t.kind in ("full", "sliding", "chunked"):
            rows.append(KindBytes(t.kind, n, tokens, real, n * tokens * t.k_tok, n * tokens * t.v_tok))
        else:
            rows.append(KindBytes(t.label or t.kind, n, tokens, real))
        slots = n if uniform or len(lay.types) == 1 else t.groups * lay.group_size
        if slots > n:
            rows.append(KindBytes("padding", slots - n, tokens, (slots - n) * blocks * t.page))
    return rows


def _blocks_per_request(lay: _Layout, num_tokens: int, in_flight: int, opts: Options) -> int:
    if len(lay.types) == 1 or lay.group_size == 1:
        return max(t.blocks(num_tokens, in_flight, opts.mamba_cache_mode) for t in lay.types)
    return sum(t.groups * t.blocks(num_tokens, in_flight, opts.mamba_cache_mode) for t in lay.types)


def kv_cache(arch: ModelArch, req: Request, opts: Options) -> KVEstimate:
    check_tp(arch, req.tp)
    in_flight = _in_flight(req, opts)
    best = None
    total = 0
    for stage in grouped_stages(arch, req.pp):
        lay = _layout(stage, req, opts, arch.dtype)
        rows = _request_bytes(lay, req.context_len, in_flight, opts)
        stage_bytes = sum(r.bytes for r in rows) * req.batch
        total += stage_bytes * req.tp
        if best is None or stage_bytes > best[0]:
            best = (stage_bytes, lay, rows)
    _, lay, rows = best
    return _estimate(arch, req, lay, rows, total)


def _estimate(arch, req, lay, rows, total) -> KVEstimate:
    b = req.batch
    merged: dict[str, KindBytes] = {}
    for r in rows:
        m = merged.get(r.kind)
        scaled = KindBytes(r.kind, r.num_layers, r.tokens_per_seq, r.bytes * b,
                           None if r.k_bytes is None else r.k_bytes * b,
                           None if r.v_bytes is None else r.v_bytes * b)
        if m is None:
            merged[r.kind] = scaled
        else:
            merged[r.kind] = KindBytes(r.kind, m.num_layers + r.num_layers,
                                       max(m.tokens_per_seq, r.tokens_per_seq), m.bytes + scaled.bytes,
                                       None if m.k_bytes is None else m.k_bytes + (scaled.k_bytes or 0),
                                       None if m.v_bytes is None else m.v_bytes + (scaled.v_bytes or 0))
    breakdown = tuple(merged.values())
    ks = [r.k_bytes for r in breakdown if r.k_bytes is not None]
    vs = [r.v_bytes for r in breakdown if r.v_bytes is not None]
    state = sum(r.bytes for r in breakdown if r.kind == "state")
    return KVEstimate(
        model=arch.model_id, engine=NAME, context_len=req.context_len, batch=b, kv_dtype=req.kv_dtype,
        tp=req.tp, pp=req.pp, kv_bytes=sum(r.bytes for r in breakdown), k_bytes=sum(ks) if ks else None,
        v_bytes=sum(vs) if vs else None, state_bytes=state, total_bytes=total, breakdown=breakdown,
        **_layout_fields(lay),
    )


def _layout_fields(lay: _Layout) -> dict:
    """The KVEstimate fields the most-loaded stage's layout fixes, whatever the context."""
    per_token = sum(t.count * t.tok_bytes for t in lay.types if t.kind in ("full", "mla"))
    blocks = sorted({t.block_size for t in lay.types if t.kind != "state"}) or [None]
    return {"bytes_per_token": per_token, "block_size": blocks[0], "notes": tuple(lay.notes)}


def sweep_plan(arch: ModelArch, req: Request, opts: Options):
    """kv_cache as arithmetic in the context (see kvplan.engines.sweep): the units are the blocks each
    layout type's request needs (`_Type.blocks_fn`); rows merge by kind as `_estimate` merges them.
    None for a layer kind this does not know."""
    from kvplan.engines.sweep import SweepPlan, estimate_fields, sweep_stage

    check_tp(arch, req.tp)  # as kv_cache validates (the layouts below raise what kv_cache's raise)
    in_flight = _in_flight(req, opts)
    b = req.batch
    units: list = []
    index: dict[tuple, int] = {}
    stages = []
    for stage in grouped_stages(arch, req.pp):
        if not all(isinstance(s, (FullAttention, MLA, RecurrentState)) for s, _ in stage):
            return None
        lay = _layout(stage, req, opts, arch.dtype)
        rows: dict[str, list] = {}

        def merge(kind, n, tok, byt, k, v):
            m = rows.get(kind)
            if m is None:
                rows[kind] = [n, tok, byt, k, v]
            else:  # _estimate: layers add, tokens are the larger, bytes add, K/V follow the first row
                m[0] += n
                m[1] += tok
                m[2] += byt
                if m[3] is not None:
                    m[3] += k or ()
                    m[4] += v or ()

        uniform = lay.group_size == 1 and len(lay.types) > 1
        for t in lay.types:
            f = t.blocks_fn(in_flight, opts.mamba_cache_mode)
            if isinstance(f, int):
                i, per = 0, f
            else:
                key = (t.kind if t.kind in ("sliding", "chunked") else "", t.window, t.block_size)
                if key not in index:
                    units.append(f)
                    index[key] = len(units)
                i, per = index[key], 1
            n = t.count
            tok = () if t.kind == "state" else ((i, per * t.block_size),)
            if t.kind in ("full", "sliding", "chunked"):
                merge(t.kind, n, tok, ((i, per * n * t.page * b),), ((i, per * n * t.block_size * t.k_tok * b),),
                      ((i, per * n * t.block_size * t.v_tok * b),))
            else:
                merge(t.label or t.kind, n, tok, ((i, per * n * t.page * b),), None, None)
            slots = n if uniform or len(lay.types) == 1 else t.groups * lay.group_size
            if slots > n:
                merge("padding", slots - n, tok, ((i, per * (slots - n) * t.page * b),), None, None)
        stages.append(sweep_stage(rows, **_layout_fields(lay)))
    # bytes_per_token, block_size and notes come from the most-loaded stage's layout (its `fixed`)
    return SweepPlan(tuple(units), tuple(stages), estimate_fields(arch, NAME, req, bytes_per_token=0, block_size=None))


def capacity(arch: ModelArch, req: Request, opts: Options, kv_memory_bytes: int) -> Capacity:
    """Blocks, logged tokens and max concurrency for `kv_memory_bytes` per GPU at `req.context_len`."""
    check_tp(arch, req.tp)
    in_flight = _in_flight(req, opts)
    layouts = [_layout(stage, req, opts, arch.dtype) for stage in grouped_stages(arch, req.pp)]
    layouts = [lay for lay in layouts if lay.bytes_per_block]
    num_blocks = min(kv_memory_bytes // lay.bytes_per_block for lay in layouts)
    per_req = max(_blocks_per_request(lay, req.context_len, in_flight, opts) for lay in layouts)
    lay = max(layouts, key=lambda x: x.bytes_per_block)
    concurrency = num_blocks / per_req
    if opts.kv_tokens_rule == "concurrency":
        kv_tokens = int(concurrency * req.context_len)
    else:  # PR #13596 era: blocks per group times the smallest block size
        num_groups = sum(t.groups for t in lay.types) if lay.group_size > 1 or len(lay.types) == 1 else 1
        kv_tokens = num_blocks // num_groups * min(t.block_size for t in lay.types)
    notes = list(lay.notes)
    if num_blocks < per_req:
        notes.append(f"not even one {req.context_len:,}-token request fits: it needs {per_req:,} blocks, "
                     f"the budget holds {num_blocks:,}")
    return Capacity(
        model=arch.model_id, engine=NAME, kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp,
        kv_memory_bytes=kv_memory_bytes, max_model_len=req.context_len,
        block_size=min((t.block_size for t in lay.types if t.kind != "state"), default=None),
        num_blocks=num_blocks, bytes_per_block=lay.bytes_per_block, blocks_per_request=per_req,
        kv_tokens=kv_tokens, max_concurrency=concurrency,
        max_sequences=max(0, num_blocks - 1) // per_req,  # block 0 is the null block
        notes=tuple(notes),
    )
