"""kvplan web app router: page config, the shared sidebar and `st.navigation` over `pages/`.

Plan, the landing page, keeps its inputs in the page (a phone collapses the sidebar), so the shared
sidebar (model, engine, KV dtype, GPU, context, what-ifs) is drawn for the other pages only.

Run by the repository's `app.py` (`streamlit run app.py`) and by `kvplan app` from an installed
package (`streamlit run <package>/kvplan/ui/app.py`). Page paths are resolved from this file, so the
app starts from any working directory. Pages draw; the core computes.
"""

from pathlib import Path

import streamlit as st

from kvplan.ui import preload, widgets

PAGES = Path(__file__).resolve().parent / "pages"


def main() -> None:
    # No page_icon and no page icons: Streamlit fetches a :material: icon's favicon from
    # fonts.gstatic.com, which fails offline (and shows as a console error).
    st.set_page_config(page_title="kvplan — KV cache planner", layout="wide")
    preload.load()  # before any page: concurrent first sessions must not import on several threads
    plan = st.Page(PAGES / "plan.py", title="Plan", default=True)
    nav = st.navigation([
        plan,
        st.Page(PAGES / "size.py", title="Size"),
        st.Page(PAGES / "capacity.py", title="Capacity"),
        st.Page(PAGES / "compare.py", title="Compare"),
        st.Page(PAGES / "accuracy.py", title="Accuracy"),
        st.Page(PAGES / "why.py", title="Why a KV cache", url_path="why_a_kv_cache"),
    ])
    if nav.url_path != plan.url_path:
        widgets.sidebar(nav.url_path)
    nav.run()


if __name__ == "__main__":  # `streamlit run kvplan/ui/app.py` runs this file as __main__
    main()
