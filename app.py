"""kvplan web app: `streamlit run app.py`.

The router only: page config, the shared sidebar (model, engine, KV dtype, GPU, context, what-ifs),
and `st.navigation` over the page scripts in kvplan/ui/pages/. Pages draw; the core computes.
"""

import streamlit as st

from kvplan.ui import widgets

# No page_icon and no page icons: Streamlit fetches a :material: icon's favicon from fonts.gstatic.com,
# which fails offline (and shows as a console error).
st.set_page_config(page_title="kvplan — KV cache planner", layout="wide")

PAGES = "kvplan/ui/pages"
nav = st.navigation([
    st.Page(f"{PAGES}/size.py", title="Size", default=True),
    st.Page(f"{PAGES}/capacity.py", title="Capacity"),
    st.Page(f"{PAGES}/compare.py", title="Compare"),
    st.Page(f"{PAGES}/validate.py", title="Validate"),
    st.Page(f"{PAGES}/why.py", title="Why a KV cache"),
])
widgets.sidebar()
nav.run()
