"""Import, once per server and under one lock, what the pages would otherwise import lazily.

Streamlit runs each browser session's script on its own thread. The first sessions of a fresh server
used to import numpy, pandas, pyarrow and plotly (whose graph objects load their trace classes and the
default template on first use) on several threads at once; Python breaks such an import race by
handing one thread a partially initialised module, and a page then failed with "partially initialized
module 'numpy' has no attribute 'ndarray'" (8 concurrent sessions, benchmarks/app_sessions.py: 5 of
48 pages). The router calls `load()` before any page runs: the first session does the imports, the
others wait for it, and later ones return at once.

Then the imported modules' objects (about 118,000 that the cyclic garbage collector tracks) are moved
out of its reach with `gc.freeze()`: they live as long as the server. Streamlit runs a full
`gc.collect()` after every script run (`runner.postScriptGC`), on the script's thread and holding the
GIL, so without the freeze each rerun ended with 50-100 ms of collecting in which the server could not
send the page's last messages to the browser (the Plan page's widget change to updated chart, issue
16). Frozen objects are still freed by reference counting; only a reference cycle among them would
stay, and `load()` collects those first.
"""

from __future__ import annotations

import gc
import threading

_LOCK = threading.Lock()
_done = False


def load() -> None:
    global _done
    if _done:
        return
    with _LOCK:
        if _done:
            return
        import numpy  # noqa: F401 - each import below is what a page would otherwise do lazily
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import streamlit.dataframe_util  # noqa: F401
        import streamlit.elements.lib.streamlit_plotly_theme  # noqa: F401

        import kvplan.api  # noqa: F401
        import kvplan.explain.accuracy  # noqa: F401
        import kvplan.launch  # noqa: F401
        import kvplan.planner  # noqa: F401
        import kvplan.recommend  # noqa: F401
        import kvplan.ui.accuracy  # noqa: F401
        import kvplan.ui.cached  # noqa: F401
        import kvplan.ui.charts  # noqa: F401
        import kvplan.ui.plan_chart  # noqa: F401
        import kvplan.ui.plan_view  # noqa: F401
        import kvplan.ui.sweeps  # noqa: F401
        import kvplan.ui.tables  # noqa: F401
        # What st.plotly_chart does on its first call: check a figure (which loads every trace class of
        # the default template) and serialise it.
        import plotly.graph_objects as go
        import plotly.io
        import plotly.tools
        fig = go.Figure(go.Scatter(x=[1, 2], y=[1, 2]))
        plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True),
                          validate=False)
        gc.collect()  # the imports' own garbage first: a frozen cycle would never be collected
        gc.freeze()
        _done = True
