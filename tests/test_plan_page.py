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
    assert len(at.get("plotly_chart")) == 2 and len(at.table) == 2
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
