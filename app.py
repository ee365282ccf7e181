"""curate dashboard: `streamlit run app.py` (add `-- --store PATH` to pick a store).

This file is the server; the pages are `overview.py` and `pages/*.py`. It defines an `st.App`,
which `streamlit run` serves (ASGI mode), so that the start-up hook can load the dashboard's
imports and read the Overview's queries before the first visit: on a freshly started server
that visit would otherwise wait ~2 s longer than every later one (dashboard/warmup.py,
BENCHMARKS.md). `streamlit run overview.py` also works, without the warm-up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st


@asynccontextmanager
async def _warm_up_then_serve(_app: st.App) -> AsyncIterator[None]:
    try:
        from dashboard.warmup import warm_up

        warm_up()
    except Exception:  # a slow first visit beats a dashboard that does not start
        logging.getLogger("curate.dashboard").exception("dashboard warm-up failed")
    yield


app = st.App("overview.py", lifespan=_warm_up_then_serve)
