"""The dashboard's Streamlit scripts, shipped inside the package so an installed `curate`
serves them (`curate dashboard`): app.py (the server), overview.py and pages/*.py."""

from pathlib import Path

#: The folder of app.py, overview.py and pages/.
WEB = Path(__file__).resolve().parent
