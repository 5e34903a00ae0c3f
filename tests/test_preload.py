"""The app's first imports under concurrency (kvplan/ui/preload.py).

Eight threads stand for eight browser sessions' script threads on a fresh server. Each first calls
`preload.load()`, as the router does before any page, then imports what one page needs and serialises a
figure as `st.plotly_chart` does. Without the preload, this very script fails in at least one thread on
this machine, in every run (Python hands the losers of an import race a half-initialised module: "partially
initialized module 'pandas' has no attribute 'Series'"); with it, none may fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import importlib, json, threading
barrier = threading.Barrier(8)
errors = []
# Half the sessions start with a table (Streamlit's dataframe code), half with a chart.
PAGE_IMPORTS = [["streamlit.dataframe_util"], ["kvplan.ui.charts"]] * 4

def session(i):
    try:
        barrier.wait()
        from kvplan.ui import preload
        preload.load()
        for name in PAGE_IMPORTS[i]:
            importlib.import_module(name)
        import pandas, plotly.graph_objects as go, plotly.io, plotly.tools
        pandas.DataFrame({"a": [1]})
        fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2]))
        plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True), validate=False)
    except Exception as err:
        errors.append(f"thread {i}: {type(err).__name__}: {err}")

threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import gc
from kvplan.ui import preload
print(json.dumps({"errors": errors, "done": preload._done, "frozen": gc.get_freeze_count(),
                  "tracked": len(gc.get_objects())}))
"""


def test_eight_first_sessions_at_once_import_cleanly():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {k: result[k] for k in ("errors", "done")} == {"errors": [], "done": True}
    # The imports' objects are frozen (issue 16): Streamlit's gc.collect() after every script run walks only
    # what runs create since, not the ~118,000 objects of numpy, pandas, pyarrow, plotly and streamlit.
    assert result["frozen"] > 50_000
    assert result["tracked"] < result["frozen"] // 10, result


def test_the_router_preloads_before_any_page():
    from streamlit.testing.v1 import AppTest

    from kvplan.ui import preload
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert preload._done
    src = (ROOT / "kvplan" / "ui" / "app.py").read_text()
    assert src.index("preload.load()") < src.index("nav.run()")
