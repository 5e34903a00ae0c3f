"""llama.cpp KV-cache allocation, per ENGINE_KV_SPEC.md §C.

The whole cache is created once for `-c N` with `-np` sequences: `n_ctx` padded to 256 cells, one
stream (unified) or one stream per sequence; iSWA models get a second, smaller cache for their
sliding layers; K/V rows use ggml block sizes (q8_0 = 34 bytes per 32 values); MLA caches the latent
in K with no V (PR #19067); recurrent state is a separate F32 memory, one row per sequence.
This module sizes what is allocated; it knows nothing of offloading or which GPU holds a layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kvplan.dtypes import get_dtype
from kvplan.engines.common import (
    Capacity, KindBytes, KVEstimate, Request, cdiv, grouped_stages, largest_true, mamba_state_elems,
)
from kvplan.errors import InvalidInputError
from kvplan.layers import MLA, ChunkedLocal, FullAttention, ModelArch, RecurrentState, SlidingWindow
from kvplan.versions import VersionRule, VersionTable

NAME = "llama.cpp"
KV_DTYPES = ("fp16", "bf16", "fp32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")

# NOTE: llama.cpp builds an iSWA cache only for architectures whose loader sets a SWA pattern
# (C.4): Gemma 2/3/3n, Cohere2, gpt-oss, EXAONE 4, Llama 4 (chunked). Mistral-7B-v0.1 converts to the
# plain llama arch and Phi-3's window is ignored (addendum I.6): both are cached at full length.
SWA_MODEL_TYPES = {"gemma2", "gemma3", "gemma3_text", "gemma3n", "gemma3n_text", "cohere2", "gpt_oss",
                   "exaone4", "llama4", "llama4_text"}


_LCPP = "https://github.com/ggml-org/llama.cpp"
# Mainline builds are "bNNNN" release tags. A rule's build is the first release after its PR merged,
# counted from the merge date (the logs in tests/golden bracket it: b4905 still per-head MLA, b5640
# on). The ik_llama.cpp fork ("ik") keeps its own layout: no iSWA cache, `-mla 0/1/2/3`.
VERSIONS = VersionTable("llama.cpp", oldest="b1000", latest="b8200", scheme="build", rules=(
    VersionRule("mla_per_head", "b5145", True, False,
                "DeepSeek (deepseek2 arch) before the MLA rework cached per-head K (heads × 192) and V "
                "(heads × 128) per token per layer; after, the latent (kv_lora_rank + rope = 576)",
                f"{_LCPP}/pull/12801 (merged 2025-04-15); per-head K/V logged by mainline build 4905 in "
                "https://github.com/ikawrakow/ik_llama.cpp/issues/285"),
    VersionRule("iswa", "b5440", False, True,
                "interleaved sliding-window models (Gemma 2/3, Cohere2, gpt-oss, Llama 4) get a second, small "
                "cache of window·n_seq + n_ubatch cells for their sliding layers; before, every layer was "
                "cached at n_ctx",
                f"{_LCPP}/pull/13194 (llama_kv_cache_unified_iswa, merged 2025-05-20)"),
    VersionRule("mla_v_cache", "b7830", True, False,
                "MLA layers also stored a V cache of kv_lora_rank values per token; from the V-less cache "
                "on, only the latent in K",
                f"{_LCPP}/pull/19067 (kv-cache: support V-less cache, 2026-01-24)"),
), forks=("ik",), fork_values=(("ik", "iswa", False), ("ik", "mla_per_head", False), ("ik", "mla_v_cache", False),
                              ("ik", "mla", 3)),
   fork_sources=(("ik", "https://github.com/ikawrakow/ik_llama.cpp: -mla 0 per-head K/V, 1 latent + kv^T "
                        "(kv_lora_rank), 2/3 latent only (PR #259 log 'kv^T: not used'); no iSWA cache "
                        "(ik_llama.cpp issue #1607)"),))


@dataclass(frozen=True)
class Options:
    """llama.cpp context parameters that change the cache. Defaults are current llama.cpp."""

    parallel: int | None = None
    """-np: sequences (slots). None = the request's batch. `-c` is context × batch."""
    kv_unified: bool = False
    """--kv-unified: all sequences share one stream of n_ctx cells (llama-server's auto mode)."""
    ubatch: int = 512
    """-ub: physical batch; the SWA cache keeps window + ubatch cells."""
    swa_full: bool = False
    """--swa-full: sliding layers get full-size caches (needed for context shift / cache reuse)."""
    ctx_pad: int = 256
    """n_ctx padding: 256 (PR #17046); older builds padded the cache to 256 with flash-attn, else 32."""
    mla_v_cache: bool = False
    """True = builds before PR #19067, which also stored a V cache of kv_lora_rank per MLA layer."""
    mla_per_head: bool = False
    """True = builds before PR #12801: MLA models cached decompressed per-head K and V."""
    iswa: bool = True
    """False = builds before PR #13194 (and ik_llama.cpp): sliding layers cached at full length."""
    mla: int | None = None
    """ik_llama.cpp `-mla N`: 0 per-head K/V, 1 latent + V (kv^T), 2 or 3 latent only."""
    type_v: str | None = None
    """-ctv when it differs from -ctk (the request's kv dtype)."""
    num_speculative_tokens: int = 0
    """Tokens proposed per step by speculative decoding (`--speculative` / `--draft-model` add the draft's
    layers). Accepted so one command line works on every engine: here the pool changes only by the
    draft's layers (SGLang's per-draft-token Mamba states for hybrid models are not modelled)."""
    dsa_indexer: bool = True
    """DeepSeek-V3.2 / GLM-5 keep lightning-indexer keys in a second cache (llama.cpp PR #23346 and
    #25407, 2026); False = older builds, which ran these models as dense MLA with no indexer cache."""

    def __post_init__(self):
        if type(self.num_speculative_tokens) is not int or not 0 <= self.num_speculative_tokens <= 64:
            raise InvalidInputError("num_speculative_tokens", f"must be between 0 and 64, got "
                                                              f"{self.num_speculative_tokens!r}")
        for name in ("ubatch", "ctx_pad"):
            if not 1 <= getattr(self, name) <= 1 << 24:
                raise InvalidInputError(name, f"must be a positive count, got {getattr(self, name)}")
        if self.mla is not None and self.mla not in (0, 1, 2, 3):
            raise InvalidInputError("mla", f"ik_llama.cpp -mla takes 0, 1, 2 or 3, got {self.mla}")
        if self.parallel is not None and not 1 <= self.parallel <= 4096:
            raise InvalidInputError("parallel", f"must be between 1 and 4096, got {self.parallel}")


def _pad(n: int, to: int) -> int:
    return cdiv(n, to) * to


def _row(dtype_name: str, num_elems: int, field: str) -> int:
    dt = get_dtype(dtype_name)
    if num_elems % dt.block_elems:
        raise InvalidInputError(field, f"{dtype_name} needs rows that are a multiple of {dt.block_elems} "
                                       f"values; this model's rows have {num_elems}")
    return dt.row_bytes(num_elems)


def _mla_layout(opts: Options) -> tuple[bool, bool]:
    """(per-head K/V, latent plus a V cache) for MLA layers: ik_llama.cpp's -mla wins when given."""
    if opts.mla is not None:
        return opts.mla == 0, opts.mla == 1
    return opts.mla_per_head, opts.mla_v_cache


def _streams(batch: int, opts: Options) -> tuple[int, int, bool]:
    """(n_seq, n_stream, unified)."""
    n_seq = opts.parallel or batch
    unified = opts.kv_unified or n_seq == 1
    return n_seq, 1 if unified else n_seq, unified


Cells = Callable[[list[int]], list[int]]


def _cell_fns(arch: ModelArch, batch: int, opts: Options) -> tuple[Cells, Cells]:
    """(base cells per stream, swa cells per stream) for a list of context lengths at once
    (n_ctx = context × batch padded to ctx_pad; cdiv and min inlined: a sweep evaluates these 10^5 times)."""
    n_seq, _, unified = _streams(batch, opts)
    pad = opts.ctx_pad
    if unified:
        def base(lens: list[int]) -> list[int]:
            return [-(-n * batch // pad) * pad for n in lens]
    else:
        def base(lens: list[int]) -> list[int]:
            return [-(-(-(-n * batch // pad) * pad // n_seq) // pad) * pad for n in lens]
    windows = [s.window if isinstance(s, SlidingWindow) else s.chunk for s, _ in grouped_stages(arch, 1)[0]
               if isinstance(s, (SlidingWindow, ChunkedLocal))]
    if not windows or opts.swa_full:
        return base, base
    cap = max(windows) * (n_seq if unified else 1) + opts.ubatch
    return base, lambda lens: [-(-(b if b < cap else cap) // pad) * pad for b in base(lens)]


def _cells(arch: ModelArch, req: Request, opts: Options) -> tuple[int, int, int, int]:
    """(n_seq, n_stream, base cells per stream, swa cells per stream)."""
    n_seq, n_stream, _ = _streams(req.batch, opts)
    base, swa = _cell_fns(arch, req.batch, opts)
    return n_seq, n_stream, base([req.context_len])[0], swa([req.context_len])[0]


def _notes_fn(arch: ModelArch, batch: int, n_seq: int, n_stream: int, iswa: bool,
              opts: Options) -> Callable[[list[int], list[int], list[int]], list[tuple[str, ...]]]:
    """The notes for lists of context lengths, base cells and swa cells (one tuple per context); the parts
    that do not change are built once (a sweep writes them for every context, in one comprehension).
    Cell counts are written as llama.cpp's own log writes them ("4096 cells", no thousands separator),
    which also keeps a sweep's per-context note cheap (a `:,` format costs as much as the rest of it)."""
    streams = f" -np {n_seq}: {n_stream} stream(s) of "
    fixed: list[str] = []
    if arch.windowed and not iswa:
        why = "this build has no iSWA cache" if not opts.iswa else f"its {arch.model_type} loader sets no SWA pattern"
        fixed.append(f"llama.cpp caches the window layers at full length ({why})")
    if _mla_layout(opts)[0] and any(isinstance(s, MLA) for s, _ in grouped_stages(arch, 1)[0]):
        fixed.append("MLA cached as per-head K and V (before the MLA rework, or ik_llama.cpp -mla 0)")
    rest = tuple(fixed)
    if iswa and arch.windowed:
        full = " (--swa-full)" if opts.swa_full else ""

        def notes(contexts: list[int], bases: list[int], swas: list[int]) -> list[tuple[str, ...]]:
            # the SWA cache stops growing: most contexts share its note, written once per value
            swa_note = {swa: f"iSWA: sliding layers keep {swa} cells{full}" for swa in set(swas)}
            return [(f"-c {c * batch}{streams}{b} cells", swa_note[s], *rest)
                    for c, b, s in zip(contexts, bases, swas)]
        return notes
    if not rest:
        return lambda contexts, bases, _: [(f"-c {c * batch}{streams}{b} cells",) for c, b in zip(contexts, bases)]
    return lambda contexts, bases, _: [(f"-c {c * batch}{streams}{b} cells", *rest)
                                       for c, b in zip(contexts, bases)]


def _cell_bytes(spec, iswa: bool, type_k: str, type_v: str, per_head: bool,
                v_latent: bool) -> tuple[str, bool, int, int] | None:
    """(breakdown kind, in the SWA cache, K bytes, V bytes) of one cell of one attention layer; None for
    recurrent state and anything else."""
    if isinstance(spec, FullAttention):
        sliding = iswa and isinstance(spec, (SlidingWindow, ChunkedLocal))
        return (spec.kind if sliding else "full", sliding,
                _row(type_k, spec.num_kv_heads * spec.head_dim, "kv_dtype"),
                _row(type_v, spec.num_kv_heads * spec.head_dim_v, "type_v"))
    if isinstance(spec, MLA) and per_head:
        return ("full", False, _row(type_k, spec.num_heads * (spec.qk_nope_head_dim + spec.rope_dim), "kv_dtype"),
                _row(type_v, spec.num_heads * spec.v_head_dim, "type_v"))
    if isinstance(spec, MLA):
        return ("mla", False, _row(type_k, spec.latent_dim, "kv_dtype"),
                _row(type_v, spec.kv_lora_rank, "type_v") if v_latent else 0)
    return None


def _indexer_cell(spec, type_k: str, opts: Options) -> int:
    """Bytes of one cell of a DSA layer's indexer-key cache (0 for other layers or older builds)."""
    if isinstance(spec, MLA) and spec.index_head_dim and opts.dsa_indexer:
        return _row(type_k, spec.index_head_dim, "kv_dtype")
    return 0


def _setup(arch: ModelArch, req: Request, opts: Options) -> tuple[str, str, bool, bool, bool]:
    """Validate the request; (type_k, type_v, iswa, per-head MLA, MLA V cache)."""
    if req.tp > 1:
        raise InvalidInputError("tp", "llama.cpp splits layers across GPUs, not heads; use pp instead of tp")
    type_k = req.kv_dtype
    type_v = opts.type_v or type_k
    if opts.type_v is not None and opts.type_v not in KV_DTYPES:
        raise InvalidInputError("type_v", f"llama.cpp V cache type must be one of {', '.join(KV_DTYPES)}")
    iswa = opts.iswa and arch.model_type in SWA_MODEL_TYPES
    return (type_k, type_v, iswa, *_mla_layout(opts))


def _per_token(arch: ModelArch, type_k: str, type_v: str, iswa: bool, per_head: bool, v_latent: bool,
               opts: Options) -> int:
    """bytes_per_token: one cell of every layer in the base cache (not the SWA cache), plus indexer keys."""
    per_token = 0
    for spec, n in grouped_stages(arch, 1)[0]:
        cell = _cell_bytes(spec, iswa, type_k, type_v, per_head, v_latent)
        if cell is not None and not cell[1]:
            per_token += n * (cell[2] + cell[3])
        per_token += n * _indexer_cell(spec, type_k, opts)
    return per_token


def kv_cache(arch: ModelArch, req: Request, opts: Options) -> KVEstimate:
    type_k, type_v, iswa, per_head, v_latent = _setup(arch, req, opts)
    n_seq, n_stream, base, swa = _cells(arch, req, opts)
    if not iswa:
        swa = base
    notes = _notes_fn(arch, req.batch, n_seq, n_stream, iswa, opts)([req.context_len], [base], [swa])[0]

    best = None
    total = 0
    for stage in grouped_stages(arch, req.pp):
        rows: dict[str, list[int]] = {}  # kind -> [layers, cells, bytes, k, v]
        for spec, n in stage:
            cell = _cell_bytes(spec, iswa, type_k, type_v, per_head, v_latent)
            if cell is not None:
                kind, sliding, k_cell, v_cell = cell
                cells = swa if sliding else base
                k, v = k_cell * cells * n_stream, v_cell * cells * n_stream
            elif isinstance(spec, RecurrentState):
                # Recurrent state is always F32, whatever -ctk/-ctv say (C.5); one row per sequence.
                conv, ssm = mamba_state_elems(spec, 1, spec.conv_kernel - 1)
                kind, cells, k, v = "state", 0, 4 * (conv + ssm) * max(1, n_seq), 0
            else:  # pragma: no cover
                continue
            r = rows.setdefault(kind, [0, cells, 0, 0, 0])
            r[0] += n
            r[2] += (k + v) * n
            r[3] += k * n
            r[4] += v * n
            ik = _indexer_cell(spec, type_k, opts)
            if ik:  # llama_kv_cache_dsa: a second cache of lightning-indexer keys in the -ctk type, same cells
                r = rows.setdefault("indexer", [0, cells, 0, 0, 0])
                r[0] += n
                r[2] += ik * cells * n_stream * n
        stage_bytes = sum(r[2] for r in rows.values())
        total += stage_bytes
        if best is None or stage_bytes > best[0]:
            best = (stage_bytes, rows)
    _, rows = best
    breakdown = []
    for kind, (n, cells, nbytes, k, v) in rows.items():
        if kind in ("full", "sliding", "chunked"):
            breakdown.append(KindBytes(kind, n, cells, nbytes, k, v))
        else:
            breakdown.append(KindBytes(kind, n, cells, nbytes))
    ks = [r.k_bytes for r in breakdown if r.k_bytes is not None]
    vs = [r.v_bytes for r in breakdown if r.v_bytes is not None]
    return KVEstimate(
        model=arch.model_id, engine=NAME, context_len=req.context_len, batch=req.batch,
        kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp, kv_bytes=sum(r.bytes for r in breakdown),
        k_bytes=sum(ks) if ks else None, v_bytes=sum(vs) if vs else None,
        state_bytes=sum(r.bytes for r in breakdown if r.kind == "state"),
        bytes_per_token=_per_token(arch, type_k, type_v, iswa, per_head, v_latent, opts),
        total_bytes=total, block_size=None, breakdown=tuple(breakdown), notes=notes,
    )


def sweep_plan(arch: ModelArch, req: Request, opts: Options):
    """kv_cache as arithmetic in the context (see kvplan.engines.sweep): the units are the base and SWA
    cells per stream; the notes name them. None for a layer kind this does not know."""
    from kvplan.engines.sweep import SweepPlan, estimate_fields, merge_row, sweep_stage

    type_k, type_v, iswa, per_head, v_latent = _setup(arch, req, opts)
    n_seq, n_stream, _ = _streams(req.batch, opts)
    base, swa = _cell_fns(arch, req.batch, opts)
    units = (base,) if not iswa or swa is base else (base, swa)
    swa_i = len(units)
    stages = []
    for stage in grouped_stages(arch, req.pp):
        rows: dict[str, list] = {}
        for spec, n in stage:
            cell = _cell_bytes(spec, iswa, type_k, type_v, per_head, v_latent)
            if cell is not None:
                kind, sliding, k_cell, v_cell = cell
                i = swa_i if sliding else 1
                k, v = k_cell * n_stream * n, v_cell * n_stream * n
                separate = kind in ("full", "sliding", "chunked")  # the breakdown's K/V columns
                merge_row(rows, kind, n, ((i, 1),), ((i, k + v),), ((i, k),) if separate else None,
                          ((i, v),) if separate else None)
                ik = _indexer_cell(spec, type_k, opts)
                if ik:
                    merge_row(rows, "indexer", n, ((i, 1),), ((i, ik * n_stream * n),), None, None)
            elif isinstance(spec, RecurrentState):
                conv, ssm = mamba_state_elems(spec, 1, spec.conv_kernel - 1)
                merge_row(rows, "state", n, (), ((0, 4 * (conv + ssm) * max(1, n_seq) * n),), None, None)
            else:
                return None
        stages.append(sweep_stage(rows))

    notes = _notes_fn(arch, req.batch, n_seq, n_stream, iswa, opts)
    fixed = estimate_fields(arch, NAME, req, block_size=None,
                            bytes_per_token=_per_token(arch, type_k, type_v, iswa, per_head, v_latent, opts))
    return SweepPlan(units, tuple(stages), fixed,
                     notes=lambda contexts, cols: notes(contexts, cols[1], cols[swa_i]))


def capacity(arch: ModelArch, req: Request, opts: Options, kv_memory_bytes: int) -> Capacity:
    """The largest unified `-c` whose cache fits `kv_memory_bytes`, and how many full-length
    sequences share it. llama.cpp has no blocks: the cache is created whole at start-up."""
    def size(n_ctx: int) -> int:
        one = Request(n_ctx, 1, req.kv_dtype, req.tp, req.pp)
        return kv_cache(arch, one, Options(**{**opts.__dict__, "parallel": 1})).kv_bytes

    # the largest multiple of ctx_pad that fits (0 if none)
    n_ctx = largest_true(1, (1 << 34) // opts.ctx_pad, lambda k: size(k * opts.ctx_pad) <= kv_memory_bytes) \
        * opts.ctx_pad
    return Capacity(
        model=arch.model_id, engine=NAME, kv_dtype=req.kv_dtype, tp=req.tp, pp=req.pp,
        kv_memory_bytes=kv_memory_bytes, max_model_len=req.context_len, block_size=None, num_blocks=None,
        bytes_per_block=None, blocks_per_request=None, kv_tokens=n_ctx,
        max_concurrency=n_ctx / req.context_len, max_sequences=n_ctx // req.context_len,
        notes=(f"largest -c that fits as one --kv-unified cache: {n_ctx:,} cells (the max concurrency); "
               "with -np slots and no --kv-unified each slot keeps its own cells, sliding-window layers "
               "included, so the full-length sequences count is what fits that way",),
    )
