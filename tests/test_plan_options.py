"""The Plan page's "Engine options" (kvplan/ui/plan_options.py): which input becomes which option,
for which engine, and that the engine lists it keeps agree with the planner."""

from __future__ import annotations

import pytest

from kvplan.engines import get_engine
from kvplan.errors import InvalidInputError
from kvplan.planner import plan
from kvplan.ui import plan_options as po

L8 = "meta-llama/Llama-3.1-8B"
SERVERS = ("vllm", "sglang", "llama.cpp", "trtllm", "transformers")


def test_untouched_options_pass_nothing():
    ch = po.Choices(engines=SERVERS)
    assert ch.common() == {} and ch.by_engine() == {}
    assert ch.engine_specs() == SERVERS
    assert all(ch.plan_options(e) == {} for e in SERVERS)


def test_each_option_reaches_only_the_engines_that_take_it():
    ch = po.Choices(engines=("vllm", "sglang", "llama.cpp"), versions={"vllm": "0.19"},
                    knobs={"vllm_block": 32, "sgl_dp": 2, "lcpp_swa_full": True, "trt_block": 64},
                    kv_memory=20 << 30, max_loras=4, max_lora_rank=64, speculative="eagle", num_speculative_tokens=3)
    assert ch.engine_specs() == ("vllm@0.19", "sglang", "llama.cpp")
    assert ch.common() == {}  # the measured KV memory is for the deployment you have only:
    assert ch.plan_options("sglang") == {**ch.own("sglang"), "kv_memory": 20 << 30}
    assert ch.own("vllm") == {"block_size": 32, "max_loras": 4, "max_lora_rank": 64, "speculative": "eagle",
                              "num_speculative_tokens": 3}
    assert ch.own("sglang") == {"dp_attention": 2, "max_loras": 4, "max_lora_rank": 64, "speculative": "eagle",
                                "num_speculative_tokens": 3}
    # llama.cpp: no LoRA slots in its plan; trt_block belongs to an engine not chosen.
    assert ch.own("llama.cpp") == {"swa_full": True, "speculative": "eagle", "num_speculative_tokens": 3}
    assert ch.plan_options("vllm")["engine_version"] == "0.19"
    said = ch.describe({"vllm": "0.19.0", "sglang": "0.5.9", "llama.cpp": "b8200"})
    assert said.startswith("Modelled on vLLM 0.19.0 (as asked), SGLang 0.5.9 (newest), llama.cpp b8200 (newest)")
    assert "SGLang DP-attention size: 2" in said and "20.00 GiB per GPU" in said
    assert "4 LoRA slots of rank 64 (vLLM, SGLang)" in said


def test_every_knob_is_an_option_its_engine_takes():
    # The knob's option name must be one the engine's Options (or the planner) knows: a renamed
    # option would otherwise fail only when someone sets it.
    for k in po.KNOBS:
        p = plan(L8, gpu="H100", tp=2 if k.option == "dp_attention" else 1, max_model_len=8000, engine=k.engine,
                 **{k.option: (not k.default) if k.is_switch else 2})
        assert p.max_sequences >= 1, k


@pytest.mark.parametrize("engine", SERVERS)
def test_engine_lists_agree_with_the_planner(engine):
    def takes(**kw) -> bool:
        try:
            plan(L8, gpu="H100", max_model_len=8000, engine=engine, **kw)
            return True
        except InvalidInputError:
            return False
    assert takes(max_loras=2) == (engine in po.LORA_ENGINES)
    assert takes(speculative="eagle") == (engine in po.SPECULATIVE_ENGINES)
    assert ("num_speculative_tokens" in {f for f in get_engine(engine).Options.__dataclass_fields__}) \
        == (engine in po.SPECULATIVE_ENGINES)


def test_kv_memory_is_read_as_the_cli_reads_it():
    assert po.parse_kv_memory("") is None
    assert po.parse_kv_memory("51.38GiB") == 55_168_854_917  # int(51.38 × 2³⁰), as `--kv-memory` reads vLLM's log value
    assert po.parse_kv_memory("80GB") == 80 * 10**9
    for bad in ("lots", "-3GiB", "0", "1e999"):
        with pytest.raises(InvalidInputError) as err:
            po.parse_kv_memory(bad)
        assert err.value.field == "kv_memory"
