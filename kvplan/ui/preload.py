"""Import, once per server and under one lock, what the pages would otherwise import lazily.

Streamlit runs each browser session's script on its own thread. The first sessions of a fresh server
used to import numpy, pandas, pyarrow and plotly (whose graph objects load their trace classes and the
default template on first use) on several threads at once; Python breaks such an import race by
handing one thread a partially initialised module, and a page then failed with "partially initialized
module 'numpy' has no attribute 'ndarray'" (8 concurrent sessions, benchmarks/app_sessions.py: 5 of
48 pages). The router calls `load()` before any page runs: the first session does the imports, the
others wait for it, and later ones return at once.
"""

from __future__ import annotations

import importlib
import threading

MODULES = (
    "numpy", "pandas", "pyarrow",
    "plotly.graph_objects", "plotly.io", "plotly.tools",
    "streamlit.dataframe_util", "streamlit.elements.lib.streamlit_plotly_theme",
    "kvplan.api", "kvplan.planner", "kvplan.recommend", "kvplan.launch", "kvplan.explain.accuracy",
    "kvplan.ui.charts", "kvplan.ui.plan_chart", "kvplan.ui.plan_view", "kvplan.ui.sweeps",
    "kvplan.ui.cached", "kvplan.ui.accuracy", "kvplan.ui.tables",
)
_LOCK = threading.Lock()
_done = False


def load() -> None:
    global _done
    if _done:
        return
    with _LOCK:
        if _done:
            return
        for name in MODULES:
            importlib.import_module(name)
        # What st.plotly_chart does on its first call: check a figure (which loads every trace class of
        # the default template) and serialise it.
        import plotly.graph_objects as go
        import plotly.io
        import plotly.tools
        fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2]))
        plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True),
                          validate=False)
        _done = True
