"""AppTest of the Plan page (the landing page): the answer, the table, both charts, the launch command,
and every input taken from the URL. `not at.exception` after every run: no traceback reaches the page."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _plan(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _answer(at: AppTest) -> str:
    return at.subheader[0].value


def test_landing_answers_in_one_sentence():
    at = _plan()
    assert at.title[0].value.startswith("Plan")
    assert "how many GPUs" in at.caption[0].value  # what the tool answers, on landing
    assert " × " in _answer(at) and "serve 100 users of 8,000 tokens" in _answer(at)
    assert "tokens/s per user" in _answer(at)
    assert len(at.get("vega_lite_chart")) == 1 and len(at.table) == 2  # the users chart; the ledger is HTML
    ledger = [h.proto.body for h in at.get("html") if "GiB per GPU" in h.proto.body]
    assert len(ledger) == 1 and 'title="weights: ' in ledger[0]  # one bar, each part's GiB on hover
    code = at.code[0].value
    assert code.startswith("vllm serve meta-llama/Llama-3.1-8B") and "--max-model-len 8000" in code
    assert not at.error


def test_url_carries_every_input():
    at = _plan(plan_model="meta-llama/Llama-3.1-70B", users="100", prompt="7000", output="1000",
               gpus=["H100-SXM"], engines=["vllm"], kv="fp8", wdtype="auto", prefix="2048")
    assert at.selectbox(key="plan_model").value == "meta-llama/Llama-3.1-70B"
    assert at.multiselect(key="gpus").value == ["H100-SXM"]
    assert at.selectbox(key="kv").value == "fp8" and at.text_input(key="prefix").value == "2048"
    assert "H100-SXM" in _answer(at) and "serve 100 users" in _answer(at)
    assert "--kv-cache-dtype fp8" in at.code[0].value


def test_widget_changes_update_the_answer():
    at = _plan(plan_model="meta-llama/Llama-3.1-70B", gpus=["H100-SXM"])
    before = _answer(at)
    at.number_input(key="users").set_value(1000).run()
    assert not at.exception
    after = _answer(at)
    assert "serve 1,000 users" in after and after != before
    at.radio(key="wl").set_value("Requests/s").run()
    assert not at.exception and "requests/s" in _answer(at)


def test_a_given_deployment_says_how_many_users():
    at = _plan(plan_model="meta-llama/Llama-3.1-70B", gpus=["H100-SXM"], have="2", tp="2")
    assert _answer(at).startswith("2 × H100-SXM (TP 2) on vLLM hold ")
    assert any("To serve the workload" in i.value for i in at.info)


def test_bad_input_is_an_inline_message():
    at = _plan(prompt="lots")
    assert any("Prompt tokens" in e.value for e in at.error)
    at = _plan(plan_model="meta-llama/Llama-3.1-8B", prompt="200k")  # beyond the model's 131,072
    assert at.error and not at.exception


def test_nothing_fits_says_what_would():
    at = _plan(plan_model="deepseek-ai/DeepSeek-V3", gpus=["L4"], users="10")
    assert any("Nothing fits" in e.value for e in at.error)


# --- Engine options and the deployment's layout: each input reaches the planner ----------------------
# Each check compares the page with kvplan.plan / kvplan.recommend called with the same inputs (the
# CLI's `kvplan plan ... --pp 2 --kv-memory 20GiB` is the same call), never with a number written here.

import re  # noqa: E402

import kvplan  # noqa: E402
from kvplan.recommend import recommend  # noqa: E402
from kvplan.ui import plan_view  # noqa: E402

L8, L70 = "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B"


def _held(at: AppTest) -> int:
    """Users from the answer for a deployment you have: '... hold 56 users of 8,000 tokens at once.'"""
    return int(re.search(r"hold ([\d,]+) users?", _answer(at)).group(1).replace(",", ""))


def _ledger(at: AppTest) -> dict[str, str]:
    table = at.table[-1].value
    return dict(zip(table["Part"], table["Per GPU"]))


def _plan_of(model: str, **kw):
    return kvplan.plan(model, gpu="H100-SXM", max_model_len=8000, **kw)


def _errors(at: AppTest) -> list[str]:
    from kvplan.ui.text import unescape_md
    return [unescape_md(e.value) for e in at.error]


def test_pp_changes_the_per_gpu_ledger():
    one = _plan(plan_model=L70, gpus=["H100-SXM"], have="2", tp="2")
    two = _plan(plan_model=L70, gpus=["H100-SXM"], have="2", tp="1", pp="2")
    p = _plan_of(L70, num_gpus=2, tp=1, pp=2)
    assert _answer(two).startswith("2 × H100-SXM (PP 2) on vLLM hold ")
    assert _held(two) == plan_view.fixed_users(p)
    assert _ledger(two)["weights"] == plan_view.gib(p.weights_bytes)
    assert _ledger(two)["weights"] != _ledger(one)["weights"] or _held(one) != _held(two)
    assert "--pipeline-parallel-size 2" in two.code[0].value
    bad = _plan(plan_model=L70, gpus=["H100-SXM"], have="2", tp="2", pp="2")
    assert _errors(bad) == ["GPUs you have: 2 is fewer than one instance of TP 2 × PP 2 = 4 GPUs."]


def test_measured_kv_memory_replaces_the_budget_as_the_cli_does():
    base = _plan(plan_model=L8, gpus=["H100-SXM"], have="1")
    at = _plan(plan_model=L8, gpus=["H100-SXM"], have="1", kvmem="20GiB")
    p = _plan_of(L8, kv_memory="20GiB")
    assert _held(at) == plan_view.fixed_users(p) != _held(base)
    assert "KV memory 20.00 GiB per GPU as measured" in " ".join(c.value for c in at.caption).replace("\\", "")
    # Measured on one layout, it is not applied to the search for the fewest GPUs (other layouts):
    # without GPUs you have, the box is off and the answer is the computed one.
    at = _plan(plan_model=L8, gpus=["H100-SXM"], kvmem="20GiB")
    assert at.text_input(key="kvmem").disabled
    r = recommend(L8, users=100, prompt_tokens=7000, output_tokens=1000, gpus=("H100-SXM",))
    assert _answer(at) == plan_view.answer_sentence(r)
    # A KV memory that cannot be there (70B weights on one H100 and 30 GiB more) is said, not hidden.
    at = _plan(plan_model=L70, gpus=["H100-SXM"], have="2", tp="2", kvmem="30GiB")
    over = -_plan_of(L70, num_gpus=2, tp=2, kv_memory="30GiB").free_bytes
    assert over > 0 and [w.value.replace("\\", "") for w in at.warning] == [
        f"Measured KV memory per GPU: the weights, the overheads and 30.0 GiB of KV exceed the H100-SXM's memory "
        f"by {plan_view.gib(over)}; check the GPU, the layout and the measured value."]
    at = _plan(plan_model=L8, have="1", kvmem="lots")
    assert _errors(at) == ["Measured KV memory per GPU: write a size per GPU such as 51.38GiB or 20GB "
                           "(blank = computed)"]


def test_one_version_per_engine_and_the_version_modelled_is_shown():
    at = _plan(plan_model=L8, gpus=["H100-SXM"], engines=["vllm", "sglang"], ver_vllm="0.19", have="1")
    p = _plan_of(L8, engine_version="0.19")
    assert _held(at) == plan_view.fixed_users(p)
    said = " ".join(c.value for c in at.caption).replace("\\", "")
    from kvplan.engines import engine_versions
    sgl = engine_versions("sglang")["default"]
    assert f"Modelled on vLLM 0.19.0 (as asked), SGLang {sgl} (newest)" in said
    engines = set(at.table[0].value["Engine"])
    assert engines <= {"vLLM 0.19.0", f"SGLang {sgl}"} and "vLLM 0.19.0" in engines
    assert at.text_input(key="ver_vllm").value == "0.19"
    at = _plan(plan_model=L8, engines=["vllm", "sglang"], ver_sglang="banana")
    assert len(at.error) == 1 and _errors(at)[0].startswith("SGLang version: 'banana' is not a sglang version")


def _longest(at: AppTest) -> int:
    """The chart's 'N users fit up to X tokens each' (exact to the token: the planner's
    max_context_for_users), so options that move the budget by less than a request still show."""
    import pyarrow as pa

    rows = pa.ipc.open_stream(at.get("vega_lite_chart")[0].proto.data.data).read_all().to_pylist()
    (label,) = [r["label"] for r in rows if r["kind"] == "longest"]
    return int(re.search(r"fit up to ([\d,]+) tokens each", label).group(1).replace(",", ""))


@pytest.mark.parametrize("model, params, engine, options", [
    (L8, {"vllm_block": "2048"}, "vllm", {"block_size": 2048}),  # 8,000 tokens in 4 blocks of 2,048
    (L8, {"util": "0.5"}, "vllm", {"gpu_memory_utilization": 0.5}),
    (L8, {"loras": "8", "lora_rank": "64"}, "vllm", {"max_loras": 8, "max_lora_rank": 64}),
    (L8, {"loras": "8"}, "sglang", {"max_loras": 8, "max_lora_rank": 16}),
    (L8, {"spec": "eagle", "spec_k": "3"}, "vllm", {"speculative": "eagle", "num_speculative_tokens": 3}),
    (L8, {"spec": "draft_model", "draft": "meta-llama/Llama-3.2-1B"}, "vllm",
     {"speculative": "draft_model", "draft_model": "meta-llama/Llama-3.2-1B"}),
    (L8, {"sgl_page": "256"}, "sglang", {"block_size": 256}),
    (L8, {"trt_block": "128"}, "trtllm", {"block_size": 128}),
    ("Qwen/Qwen2.5-VL-7B-Instruct", {"mm": "image=0,video=0"}, "vllm", {"limit_mm_per_prompt": "image=0,video=0"}),
])
def test_engine_options_reach_the_planner(model, params, engine, options):
    base = _plan(plan_model=model, gpus=["H100-SXM"], engines=[engine], have="1")
    at = _plan(plan_model=model, gpus=["H100-SXM"], engines=[engine], have="1", **params)
    assert not at.error, at.error
    p = _plan_of(model, engine=engine, **options)
    assert _held(at) == plan_view.fixed_users(p)
    assert _ledger(at) == dict((r["Part"], r["Per GPU"]) for r in
                               plan_view.ledger_table(plan_view.fixed_ledger_rows(p), p.gpu_memory_bytes))
    longest = kvplan.plan(model, gpu="H100-SXM", max_model_len=at_max_context(model), users=100, engine=engine,
                          **options)
    assert _longest(at) == longest.max_context_for_users
    assert (_held(at), _ledger(at), _longest(at)) != (_held(base), _ledger(base), _longest(base))


def at_max_context(model: str) -> int:
    """The chart's longest context: the model's maximum (kvplan/ui/pages/plan.py)."""
    return max(kvplan.load_model(model).max_position_embeddings or 131072, 8000)


def test_sglang_dp_attention_and_llamacpp_swa_full():
    at = _plan(plan_model=L70, gpus=["H100-SXM"], engines=["sglang"], have="4", tp="4", sgl_dp="2")
    assert _held(at) == plan_view.fixed_users(_plan_of(L70, engine="sglang", num_gpus=4, tp=4, dp_attention=2))
    assert "SGLang DP-attention size: 2" in " ".join(c.value for c in at.caption).replace("\\", "")
    assert at.code[0].value.replace(" \\\n  ", " ").endswith(" --enable-dp-attention --dp-size 2")  # launched as it was sized
    at = _plan(plan_model=L70, gpus=["H100-SXM"], engines=["sglang"], have="2", tp="2", sgl_dp="4")
    assert _errors(at) == ["SGLang DP-attention size: DP size 4 must divide tp 2"]
    g3 = "google/gemma-3-27b-it"
    base = _plan(plan_model=g3, gpus=["H100-SXM"], engines=["llama.cpp"], have="1")
    at = _plan(plan_model=g3, gpus=["H100-SXM"], engines=["llama.cpp"], have="1", lcpp_swa_full="true")
    p = _plan_of(g3, engine="llama.cpp", swa_full=True)
    assert _held(at) == plan_view.fixed_users(p) < _held(base)  # sliding layers at full length hold fewer


def test_vllm_max_sequences_caps_users_per_instance():
    at = _plan(plan_model=L8, gpus=["H100-SXM"], vllm_seqs="16")
    r = recommend(L8, users=100, prompt_tokens=7000, output_tokens=1000, gpus=("H100-SXM",), max_num_seqs=16)
    assert _answer(at) == plan_view.answer_sentence(r) and r.best.replicas == 7
    assert "--max-num-seqs 16" in at.code[0].value


def test_search_limits_and_the_multimodal_box():
    at = _plan(plan_model=L8, gpus=["H100-SXM"], max_tp="1")
    assert _answer(at).startswith("2 × H100-SXM (2 replicas)")  # not TP 2
    at = _plan(plan_model="Qwen/Qwen2.5-VL-7B-Instruct", gpus=["H100-SXM"])
    assert "mm" in [t.key for t in at.text_input]  # a vision model on vLLM: the box is offered
    assert "mm" not in [t.key for t in _plan(plan_model=L8).text_input]  # a text-only model: no such box


def test_engine_option_links_are_checked_like_the_others():
    at = _plan(plan_model=L8, gpus=["H100-SXM"], engines=["vllm", "sglang"], sgl_dp="1e999", vllm_seqs="-3",
               util="2")
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any(w.startswith("SGLang DP-attention size: the link's value '1e999' is not a finite number") for w in warnings)
    assert any(w.startswith("vLLM max sequences per instance: the link's value '-3' must be between") for w in warnings)
    assert any(w.startswith("GPU memory fraction: the link's value '2' must be between") for w in warnings)
    assert at.subheader and not at.error  # answered with the defaults
    # A choice that is not offered (Streamlit would show the default without a word) is named too.
    at = _plan(plan_model=L70, gpus=["H100-SXM"], have="4", pp="3", spec="bogus")
    assert [w.value.replace("\\", "") for w in at.warning] == [
        "PP per instance: the link's value '3' is not one of the choices; using 1.",
        "Speculative decoding: the link's value 'bogus' is not one of the choices; using off."]
    assert "PP" not in _answer(at)  # 4 GPUs as 4 replicas: PP 1
    at = _plan(plan_model=L8, spec="draft_model")
    assert _errors(at) == ["Draft model: pick the draft model that speculative decoding draft_model runs."]
