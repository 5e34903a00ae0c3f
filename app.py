"""kvplan web app: `streamlit run app.py` (or `kvplan app` once kvplan is installed).

The router (page list, sidebar) lives in kvplan/ui/app.py so that an installed package has it too.
"""

from kvplan.ui.app import main

main()
