"""The Plan page's pure pieces: the users-vs-context curve, the longest context that fits, the chart.

Hand-worked example used below: Llama-3.1-8B stores 32 layers × 8 KV heads × 128 dims × 2 (K,V) ×
2 B = 131,072 B per token; vLLM pages hold 16 tokens (2 MiB a page). A 16 GiB KV budget is
8,192 pages, one of which is vLLM's null block: 8,191 usable.
"""

from __future__ import annotations

import re

import pytest

import kvplan
from kvplan.ui import plan_view as pv

pytest.importorskip("plotly")

from kvplan.ui import plan_chart  # noqa: E402

GiB = 1 << 30


@pytest.fixture(scope="module")
def llama8b():
    return kvplan.load_model("meta-llama/Llama-3.1-8B")


def _inst(prefix: int = 0) -> pv.Instance:
    return pv.Instance(gpu="H100-SXM", prefix_tokens=prefix, options=(("kv_memory", 16 * GiB),))


def test_curve_counts_whole_requests(llama8b):
    c = pv.instance_curve(llama8b, _inst(), [1024, 8192, 8193, 131072])
    # 1,024 tokens = 64 pages: 8,191 // 64 = 127. 8,192 = 512 pages: 15 (15 × 512 = 7,680 ≤ 8,191).
    # 8,193 tokens need 513 pages: still 15. 131,072 = 8,192 pages > 8,191 usable: none.
    assert c.points == [(1024, 127), (8192, 15), (8193, 15), (131072, 0)]
    assert c.longest_fitting == 8193 and not c.errors


def test_curve_matches_the_planner_at_every_point():
    arch = kvplan.load_model("meta-llama/Llama-3.1-70B")
    inst = pv.Instance(gpu="H100-SXM", tp=4)
    grid = pv.context_points(arch.max_position_embeddings, 8000)
    c = pv.instance_curve(arch, inst, grid)
    for ctx, n in c.points:
        assert n == kvplan.plan(arch, gpu="H100-SXM", tp=4, num_gpus=4, max_model_len=ctx).max_sequences
    users = [n for _, n in c.points]
    assert users == sorted(users, reverse=True) and all(isinstance(n, int) for n in users)


def test_longest_context_for_users(llama8b):
    # 16 users share 8,191 pages: 511 pages each = 8,176 tokens.
    assert pv.longest_context_for(llama8b, _inst(), 16, 131072) == 8176
    assert pv.longest_context_for(llama8b, _inst(), 8192, 131072) == 0  # not one page each


def test_shared_prefix_is_stored_once(llama8b):
    inst = _inst(prefix=2048)  # 128 pages shared by every request
    c = pv.instance_curve(llama8b, inst, [4096, 8192])
    # 4,096 tokens = 256 pages, 128 of them shared: (8,191 − 128) // 128 = 62.
    # 8,192 tokens = 512 pages: (8,191 − 128) // 384 = 20.
    assert c.points == [(4096, 62), (8192, 20)]
    # 20 users: 128 + 20·(p − 128) ≤ 8,191 → p ≤ 531 pages = 8,496 tokens (bracketed or not).
    assert pv.longest_context_for(llama8b, inst, 20, 131072, curve=c) == 8496
    assert pv.longest_context_for(llama8b, inst, 20, 131072) == 8496


def test_context_points_keep_ends_and_marks():
    g = pv.context_points(131072, 8000, 10**9)
    assert g[0] == 1024 and g[-1] == 131072 and 8000 in g and 10**9 not in g
    assert g == sorted(set(g))
    ratios = [b / a for a, b in zip(g, g[1:])]
    assert max(ratios) < 1.5  # log-spaced, no big holes
    assert pv.context_points(2048, start=4096)[0] == 4096  # a shared prefix moves the start


def test_deployment_rows_scale_by_replicas():
    c = pv.Curve(points=[(1024, 10), (2048, 0)])
    assert pv.deployment_rows(c, 3, "x") == [{"deployment": "x", "context_len": 1024, "users": 30},
                                             {"deployment": "x", "context_len": 2048, "users": 0}]


def test_layout_text():
    assert pv.layout_text(4, 1, 2) == "TP 4 × 2 replicas"
    assert pv.layout_text(8, 2, 1) == "TP 8 × PP 2"
    assert pv.layout_text(1, 1, 1) == "single GPU"
    assert pv.layout_text(1, 1, 3) == "3 replicas"
    assert pv.plural(1, "user") == "1 user" and pv.plural(1200, "user") == "1,200 users"


def _layer(spec, kind):
    """The spec's layers drawn from the data rows of `kind` (their filter names it)."""
    return [layer for layer in spec["layer"] if f"'{kind}'" in str(layer.get("transform"))]


def test_chart_marks_target_fit_and_longest():
    rows = [{"deployment": "8 × H100", "context_len": c, "users": n}
            for c, n in [(1024, 860), (8192, 110), (65536, 12), (131072, 0)]]
    data, spec = plan_chart.users_vs_context(rows, target_users=100, request_tokens=8000, longest=8800, title="t")
    (lines,) = _layer(spec, "line")
    x, y = lines["encoding"]["x"], lines["encoding"]["y"]
    assert x["scale"]["type"] == "log" and y["scale"]["type"] == "log" and y["scale"]["domainMin"] == 0.3
    assert y["axis"]["values"] == [1, 10, 100, 1000]  # decades only
    assert x["axis"]["values"] == [1024 << k for k in range(8)]  # 1k ... 128k, labelled by the expression
    assert lines["mark"]["interpolate"] == "step-after"  # users drop at block boundaries, not between points
    by_kind = {}
    for d in data:
        by_kind.setdefault(d["kind"], []).append(d)
    assert [d["tip"] for d in by_kind["line"]][-2:] == ["12 users at 65,536 tokens (8 × H100)",
                                                        "0 users at 131,072 tokens (8 × H100)"]  # whole users
    assert by_kind["line"][-1]["y"] == plan_chart.FLOOR < 1  # 0 users: drawn in the shaded band
    band = spec["layer"][0]
    assert band["mark"]["type"] == "rect" and band["encoding"]["y2"] == {"datum": 1}  # the band ends at 1 user
    assert "does not fit (0 users)" in str(spec["layer"][1])
    (target,) = by_kind["target"]
    assert target["y"] == 100 and target["label"] == "target: 100 users"
    (request,) = by_kind["request_right"]  # 8,000 tokens is left of 1/8 of 128k: its label goes right of it
    assert request["context_len"] == 8000 and request["label"] == "your requests: 8,000 tokens"
    (marker,) = by_kind["longest"]
    assert (marker["context_len"], marker["y"]) == (8800, 100)
    assert marker["label"] == "100 users fit up to 8,800 tokens each"
    assert max(d["y"] for d in data if d["y"] is not None) > 860  # headroom above the top line


def test_chart_spec_does_not_change_with_the_numbers():
    """The browser updates the chart's data in place only when the spec is the same: a change of users,
    target or request length must change the data alone."""
    def chart(scale, target, request):
        rows = [{"deployment": f"{scale} × H100", "context_len": c, "users": n * scale}
                for c, n in [(1024, 860), (8192, 110), (131072, 0)]]
        return plan_chart.users_vs_context(rows, target_users=target, request_tokens=request, longest=8800, title="t")
    (d1, s1), (d2, s2) = chart(1, 100, 8000), chart(1, 120, 60000)
    assert s1 == s2 and d1 != d2
    assert chart(2, 100, 8000)[1] == s1 and chart(20, 100, 8000)[1] != s1  # a new decade of users: new y ticks


def test_chart_text_is_data_not_markup():
    rows = [{"deployment": "<b>x</b>", "context_len": 1024, "users": 1},
            {"deployment": "<b>x</b>", "context_len": 2048, "users": 1}]
    data, spec = plan_chart.users_vs_context(rows, title="<a href='http://e'>t</a>")
    # Vega draws text as SVG text and escapes tooltips: the names stay exactly as given, and the spec
    # holds no expression built from them
    assert data[0]["deployment"] == "<b>x</b>" and spec["title"]["text"] == "<a href='http://e'>t</a>"
    assert "<b>" not in str(spec["layer"])
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg"


def test_ledger_bar_is_escaped_html_with_every_part_on_hover():
    gib = 2**30
    rows = [{"part": "weights", "bytes": 60 * gib}, {"part": "activations", "bytes": gib},
            {"part": "KV in use", "bytes": 19 * gib}, {"part": "KV free", "bytes": 0},
            {"part": "<img src=x>", "bytes": 20 * gib}]
    out = plan_chart.memory_ledger(rows, title="<b>GiB</b> per GPU")
    assert "<img" not in out and "<b>" not in out and "&lt;img src=x&gt;" in out
    widths = [float(w) for w in re.findall(r"flex:0 0 ([\d.]+)%", out)]
    assert len(widths) == 4 and sum(widths) == pytest.approx(100, abs=0.01)  # a 0-byte part has no segment
    assert 'title="weights: 60.00 GiB"' in out and 'title="activations: 1.00 GiB"' in out
    assert ">60.0<" in out and ">1.0<" not in out  # a label shows where its segment has room (1 % has not)


def test_answer_and_table_read_as_sentences():
    from kvplan.recommend import recommend
    rec = recommend("meta-llama/Llama-3.1-70B", users=100, prompt_tokens=7000, output_tokens=1000,
                    gpus=["H100-SXM", "H200"])
    best = rec.best
    sentence = pv.answer_sentence(rec)
    assert sentence.startswith(f"{best.num_gpus} × {best.gpu} (") and "serve 100 users of 8,000 tokens" in sentence
    rows = pv.alternatives_rows(rec)
    assert len(rows) == len(rec.deployments) >= 2
    for row in rows:
        assert all("_" not in k for k in row)  # human column names
        assert all(v is not None and "None" not in str(v) for v in row.values())
    # The ledger's parts add up to the GPU, and the table ends with the total.
    ledger = pv.ledger_rows(best)
    assert sum(r["bytes"] for r in ledger) == best.memory.gpu_memory_bytes
    assert pv.ledger_table(ledger, best.memory.gpu_memory_bytes)[-1]["Part"] == "total"
    assert any("not measurements" in line for line in pv.latency_notes(rec))
    # On a phone the same deployments are cards: the table's numbers, in words, with the version modelled.
    cards = pv.alternative_cards(rec)
    assert len(cards) == len(rows)
    for (title, line), row, d in zip(cards, rows, rec.deployments):
        assert title == f"{row['Rank']}. {row['Deployment']} · {row['Engine']}" and row["Engine"] == f"vLLM {d.engine_version}"
        assert line.startswith(f"{d.users:,} users (room for {d.max_users:,}) · {row['Tokens/s per user']} tokens/s per "
                               f"user · first token {row['First token']} · limit: {row['Limit']}")
    measured = {r["Part"]: r["What it is"] for r in pv.ledger_table(ledger, 1, kv_measured=True)}
    assert "measured KV memory" in measured["not reserved"]


def test_fixed_deployment_sentence():
    arch = kvplan.load_model("meta-llama/Llama-3.1-70B")
    p = pv.fixed_plan(arch, gpu="H100-SXM", num_gpus=8, tp=4, engine="vllm", kv_dtype="auto", weights_dtype="auto",
                      prefix_tokens=0, request_tokens=8000)
    users = pv.fixed_users(p)
    assert users == p.total_sequences >= 2  # 2 replicas
    assert pv.fixed_sentence(p) == f"8 × H100-SXM (TP 4 × 2 replicas) on vLLM hold {users:,} users of 8,000 tokens at once."
    tiny = pv.fixed_plan(arch, gpu="L4", num_gpus=1, tp=1, engine="vllm", kv_dtype="auto", weights_dtype="auto",
                         prefix_tokens=0, request_tokens=8000)
    assert "not one 8,000-token request fits" in pv.fixed_sentence(tiny)
    assert sum(r["bytes"] for r in pv.fixed_ledger_rows(p)) == p.gpu_memory_bytes


def test_launch_commands_shown_one_option_per_line_are_the_same_command():
    import shlex

    from kvplan.launch import launch_command
    for engine in ("vllm", "sglang", "llama.cpp", "trtllm"):
        cmd = launch_command(engine, "meta-llama/Llama-3.1-70B", tp=4, pp=2, max_model_len=8000, max_num_seqs=16,
                             kv_dtype="fp8", weights_dtype="auto", memory_fraction=0.9)
        shown = pv.shell_lines(cmd)
        # a shell joins backslash-newline continuations: the same words as the one-line command
        assert shlex.split(shown.replace("\\\n", "")) == shlex.split(cmd), engine
        lines = shown.splitlines()
        assert all(line.startswith("  -") for line in lines[1:]), (engine, lines)  # each option its own line
        assert len(lines) > 3, engine
    assert pv.shell_lines("python -m sglang.launch_server --tp-size 2").splitlines()[0] == \
        "python -m sglang.launch_server \\"


def test_memory_ledgers_one_bar_per_gpu_to_scale():
    gib = 2**30
    rows = [{"gpu": g, "part": p, "bytes": b * gib} for g, parts in
            (("H100-SXM", [("weights", 15), ("KV cache", 55), ("free", 10)]),
             ("<b>H200</b>", [("weights", 15), ("KV cache", 110), ("free", 15)]))
            for p, b in parts]
    out = plan_chart.memory_ledgers(rows, title="Memory per GPU at 32,768 tokens (GiB)")
    assert out.count('role="img"') == 2 and "<b>H200" not in out and "&lt;b&gt;H200&lt;/b&gt;: 140.0 GiB" in out
    assert "H100-SXM: 80.0 GiB" in out
    bar_widths = [float(w) for w in re.findall(r"display:flex;width:([\d.]+)%;height:36px", out)]
    assert bar_widths == [pytest.approx(100 * 80 / 140, abs=0.01), 100.0]  # to scale: 80 of 140 GiB
