"""Pay the dashboard's one-time costs when the server starts, not on the first visit.

A fresh Python process spends ~1.5 s importing pandas, Altair and the dashboard's own modules,
and ~0.2 s on Altair's first chart (it loads and compiles the Vega-Lite schema); on a 100k
store the Overview's queries take another ~0.4 s. `app.py` calls `warm_up()` from the server's
startup hook, before it accepts connections, so the first visit after a restart costs what
every later one costs. The imports run in one thread before any page script: two threads
importing the same module tree in different orders could deadlock.

The store reads go through the pages' own cache (`ui.read_ahead`), keyed by the store's
fingerprint: if the nightly job writes before anyone visits, the page simply reads again.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger("curate.dashboard")

MODULES: tuple[str, ...] = (
    "pandas",
    "altair",
    "dashboard.queries",
    "dashboard.analysis",
    "dashboard.ui",
)
# Every `ctx.load(...)` of overview.py (a test keeps the two in step).
OVERVIEW_QUERIES: tuple[str, ...] = (
    "overview",
    "pool_status",
    "labels_by_source",
    "training_runs",
    "annotation_count",
    "round_budgets",
    "last_nightly_run",
)


def warm_imports() -> dict[str, float]:
    """Import MODULES and serialise one small chart; returns seconds per step."""
    seconds: dict[str, float] = {}
    for name in MODULES:
        start = time.perf_counter()
        importlib.import_module(name)
        seconds[name] = time.perf_counter() - start

    import altair as alt
    import pandas as pd

    start = time.perf_counter()
    table = pd.DataFrame({"language": ["en", "fr"], "examples": [1, 2]})
    alt.Chart(table).mark_bar().encode(x="language:N", y="examples:Q").to_dict()
    seconds["altair_first_chart"] = time.perf_counter() - start
    return seconds


def warm_overview() -> float | None:
    """Read the Overview's queries into the pages' cache; seconds, or None when there is no
    store to read (the page then shows why: this never stops the server from starting)."""
    from dashboard import ui
    from dashboard.source import resolve_source

    return ui.read_ahead(resolve_source(), OVERVIEW_QUERIES)


def warm_up() -> dict[str, float | None]:
    """Both of the above; returns seconds per step (``store`` None when nothing was read)."""
    seconds: dict[str, float | None] = dict(warm_imports())
    seconds["store"] = warm_overview()
    log.info("dashboard warm-up: %s", seconds)
    return seconds


@asynccontextmanager
async def warm_up_then_serve(_app: object) -> AsyncIterator[None]:
    """The st.App lifespan hook (app.py): warm up before the server accepts connections."""
    try:
        warm_up()
    except Exception:  # a slow first visit beats a dashboard that does not start
        log.exception("dashboard warm-up failed")
    yield
