"""The core stays light: `import kvplan` and `kvplan size` load no torch, streamlit, plotly,
transformers or huggingface_hub (DESIGN.md: the core imports none of them at module level)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "streamlit", "plotly", "transformers", "huggingface_hub", "gguf", "numpy")

CHECK = """
import sys, kvplan
import kvplan.api, kvplan.cli, kvplan.engines, kvplan.gpus, kvplan.registry, kvplan.hf_config
import kvplan.planner, kvplan.weights, kvplan.roofline, kvplan.gguf_file
kvplan.kv_cache("meta-llama/Llama-3.1-8B", context_len=8192)
kvplan.plan("meta-llama/Llama-3.1-8B", gpu="H100", max_model_len=8192)
from kvplan.cli import main
main(["size", "deepseek-ai/DeepSeek-V3", "--context", "8k", "--json"])
loaded = [m for m in %r if m in sys.modules]
assert not loaded, loaded
"""


def test_core_imports_nothing_heavy():
    proc = subprocess.run([sys.executable, "-c", CHECK % (HEAVY,)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
