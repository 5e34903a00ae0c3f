"""The Streamlit web app's building blocks (not imported by the core).

`whatif`, `sweeps`, `formulas` and `charts` are pure (no streamlit import): they turn core results
into rows and plotly figures, and are testable on their own. `widgets` holds the Streamlit sidebar
and helpers; `pages/` holds one script per page, routed by the repository's `app.py`.
"""
