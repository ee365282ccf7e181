"""The dashboard server inside the package: what `curate dashboard` runs.

It defines an `st.App`, which `streamlit run` serves (ASGI mode), so that the start-up hook can
load the dashboard's imports and read the Overview's queries before the first visit: on a
freshly started server that visit would otherwise wait ~2 s longer than every later one
(dashboard/warmup.py, BENCHMARKS.md). The script path is absolute, so this works from any
working directory and from an installed package.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.warmup import warm_up_then_serve

app = st.App(str(Path(__file__).resolve().parent / "overview.py"), lifespan=warm_up_then_serve)
