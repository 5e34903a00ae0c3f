"""Paged measurement: allocate the KV cache the way the `vllm` profile lays it out, and time decode reads.

vLLM allocates raw byte tensors, `page_size · num_blocks` bytes per KV-cache tensor (one per layer slot
of a group, ENGINE_KV_SPEC.md A.7). We allocate the same and check that `memory_allocated` grows by the
profile's `num_blocks · bytes_per_block`. Then a decode-shaped attention read (one query token per
sequence, torch SDPA) over K/V viewed out of those blocks is timed at several context lengths and set
beside a bandwidth roofline: the step must at least read every cached byte once.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import torch

from kvplan.engines import vllm
from kvplan.engines.common import Request, cdiv, grouped_stages
from kvplan.layers import MLA, FullAttention, ModelArch, SlidingWindow

DEFAULT_BUDGET_BYTES = 1 << 30
CUDA_BUDGET_BYTES = 16 << 30  # validate's paged cache on a GPU: room for decode reads of 32k tokens × batch 8


def _allocated(device: str) -> int:
    gc.collect()
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


def layout(arch: ModelArch, kv_dtype: str):
    """The vllm profile's single-GPU layout (groups, block size, pages) for `arch`."""
    return vllm._layout(grouped_stages(arch, 1)[0], Request(1, 1, kv_dtype), vllm.Options(), arch.dtype)


def _count(t) -> int:
    return t.count if hasattr(t, "count") else len(t.layers)


def _spec_for(t, arch: ModelArch, kv_dtype: str):
    """The first layer spec the vllm profile put in layout type `t` (same kind and bytes per token)."""
    from kvplan.dtypes import get_dtype

    dt = get_dtype(kv_dtype)
    for spec in arch.layers:
        if t.kind == "mla" and isinstance(spec, MLA) and dt.row_bytes(spec.latent_dim) == t.tok_bytes:
            return spec
        if t.kind in ("full", "sliding") and isinstance(spec, FullAttention) and \
                (t.kind == "sliding") == isinstance(spec, SlidingWindow) and \
                spec.num_kv_heads * (dt.row_bytes(spec.head_dim) + dt.row_bytes(spec.head_dim_v)) == t.tok_bytes:
            return spec
    return None


def allocate(arch: ModelArch, kv_dtype: str, device: str, *, budget_bytes: int = DEFAULT_BUDGET_BYTES,
             num_blocks: int | None = None) -> tuple[dict[str, Any], list[torch.Tensor], Any]:
    """Allocate the paged cache; return (result row, the tensors, the layout)."""
    lay = layout(arch, kv_dtype)
    if not lay.bytes_per_block:
        return {"skipped": "no layer holds a cache"}, [], lay
    num_blocks = num_blocks or max(2, budget_bytes // lay.bytes_per_block)
    uniform = lay.group_size == 1 and len(lay.types) > 1
    # UniformTypeKVCacheSpecs: one tensor per layer of its own page; otherwise group_size shared slots.
    sizes = ([t.page for t in lay.types for _ in range(_count(t))] if uniform
             else [lay.bytes_per_block // lay.group_size] * lay.group_size)
    predicted = num_blocks * lay.bytes_per_block
    cuda = device.startswith("cuda")
    before = _allocated(device) if cuda else 0
    tensors = [torch.empty(size * num_blocks, dtype=torch.int8, device=device) for size in sizes]
    measured = (_allocated(device) - before) if cuda else sum(t.numel() * t.element_size() for t in tensors)
    row = {"num_blocks": num_blocks, "block_size": min(t.block_size for t in lay.types),
           "bytes_per_block": lay.bytes_per_block, "num_tensors": len(tensors), "group_size": lay.group_size,
           "predicted_bytes": predicted, "measured_bytes": measured,
           "measured_by": "memory_allocated" if cuda else "tensor bytes",
           "error": (measured - predicted) / predicted, "notes": list(lay.notes)}
    return row, tensors, lay


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device: str, iters: int) -> float:
    """Milliseconds per call, after warm-up (CUDA events on GPU)."""
    for _ in range(2):
        fn()
    _sync(device)
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e3 / iters


def _attention_read(t, spec, buf: torch.Tensor, num_heads: int, tokens: int, batch: int, dtype: torch.dtype):
    """One layer's decode read over `tokens` cached tokens per sequence, viewed out of block storage."""
    bs = t.block_size
    nb = cdiv(tokens, bs)
    elem = torch.empty((), dtype=dtype).element_size()
    if isinstance(spec, MLA):  # one latent per token: [blocks, bs, kv_lora_rank + rope]
        dim = spec.latent_dim
        if batch * nb * bs * dim > buf.numel() // elem:
            return None
        lat = buf.view(dtype)[: batch * nb * bs * dim].view(batch, nb * bs, 1, dim)[:, :tokens].transpose(1, 2)
        # absorbed MLA decode: every head attends to the one latent, so the heads are the query rows of one
        # attention (as FlashMLA does), and the latent is read once, not broadcast to each head
        q = torch.randn(batch, 1, num_heads, dim, dtype=dtype, device=buf.device)
        k, v = lat, lat[..., : spec.kv_lora_rank]
    else:  # FlashAttention layout per layer: [2, blocks, bs, Hkv, D]
        hkv, d, dv = spec.num_kv_heads, spec.head_dim, spec.head_dim_v
        if d != dv:
            return None
        per_block = bs * hkv * d
        kv = buf.view(dtype)
        half = kv.numel() // 2
        if batch * nb * per_block > half:
            return None
        k = kv[: batch * nb * per_block].view(batch, nb * bs, hkv, d)[:, :tokens].transpose(1, 2)
        v = kv[half: half + batch * nb * per_block].view(batch, nb * bs, hkv, d)[:, :tokens].transpose(1, 2)
        # the query heads that share a KV head are the query rows of that head's attention (no causal mask
        # at decode), so K/V are read once per KV head and never expanded (MQA: one head, all rows)
        q = torch.randn(batch, hkv, max(1, num_heads // hkv), d, dtype=dtype, device=buf.device)
    fn = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
    return fn


def decode_timings(arch: ModelArch, lay, tensors: list[torch.Tensor], kv_dtype: str, device: str,
                   contexts: list[int], *, batch: int = 1, bandwidth_bytes_per_s: int | None = None,
                   iters: int = 20) -> list[dict[str, Any]]:
    """Per context: ms of one decode step's attention reads over every attention layer, and the
    bandwidth roofline (cached bytes read / bandwidth). Recurrent layers are not timed."""
    from kvplan.validate.measure import TORCH_DTYPES

    dtype = TORCH_DTYPES.get(kv_dtype)
    heads = arch.weight_dims.num_attention_heads
    attn = [t for t in lay.types if t.kind in ("full", "sliding", "mla")]
    if dtype is None or not attn or not tensors or not heads:
        return []
    buf = max(tensors, key=lambda x: x.numel())
    rows = []
    for ctx in contexts:
        ms = 0.0
        read = 0
        ok = True
        for t in attn:
            spec = _spec_for(t, arch, kv_dtype)
            if spec is None:
                ok = False
                break
            tokens = min(ctx, spec.window - 1) if isinstance(spec, SlidingWindow) else ctx
            fn = _attention_read(t, spec, buf, heads, tokens, batch, dtype)
            if fn is None:
                ok = False
                break
            ms += _time(fn, device, iters) * _count(t)
            read += batch * tokens * t.tok_bytes * _count(t)
        if not ok:
            continue
        roof = read / bandwidth_bytes_per_s * 1e3 if bandwidth_bytes_per_s else None
        rows.append({"context_len": ctx, "batch": batch, "ms_per_step": ms, "kv_bytes_read": read,
                     "roofline_ms": roof, "ratio_to_roofline": ms / roof if roof else None,
                     "bandwidth_fraction": roof / ms if roof and ms else None})
    return rows
