"""Streamlit glue shared by every page: the sidebar, cached store reads, empty states, charts.

Safety: nothing read from the store is ever passed to Markdown or HTML. Data goes through
`st.dataframe`, `st.metric` values, `st.text`/`st.code` and Altair (Vega renders text as text);
Markdown is used only for fixed strings written here, and HTML is never switched on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.source import Source, fingerprint, open_read_only, resolve_source

log = logging.getLogger("curate.dashboard")

PAGES: list[tuple[str, str, str]] = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("pages/1_Selection.py", "Selection", ":material/checklist:"),
    ("pages/2_Labeling.py", "Labeling", ":material/edit_note:"),
    ("pages/3_Model.py", "Model", ":material/monitoring:"),
    ("pages/4_Quality.py", "Quality", ":material/rule:"),
]
FILTER_KEY = "language_filter"
_SAVED_FILTER_KEY = "_language_filter_saved"


@dataclass
class Context:
    """What a page needs: the store, its fingerprint, the sidebar's language filter."""

    source: Source
    fingerprint: tuple[int, ...]
    languages: list[str] = field(default_factory=list)  # every language in the store
    selected: list[str] = field(default_factory=list)  # the filter; empty = all
    error: str | None = None  # why the store cannot be read (no store, newer schema, ...)
    detail: str | None = None  # the underlying message, shown as plain text

    @property
    def ready(self) -> bool:
        return self.error is None

    def keep(self, table: pd.DataFrame, column: str = "language") -> pd.DataFrame:
        """Rows of the filtered languages (all rows when no filter is set)."""
        if not self.selected or table.empty or column not in table:
            return table
        return table[table[column].isin(self.selected)].reset_index(drop=True)

    def allows(self, language: str) -> bool:
        return not self.selected or language in self.selected

    def load(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """`queries.<name>(store, *args)`, cached until the store changes."""
        return _cached_query(
            str(self.source.store_path), self.fingerprint, name, args, tuple(sorted(kwargs.items()))
        )


@st.cache_data(show_spinner=False, max_entries=512)
def _cached_query(
    store_path: str, fp: tuple[int, ...], name: str, args: tuple, kwargs: tuple
) -> Any:
    del fp  # part of the cache key only: a new fingerprint means a fresh read
    function = getattr(queries, name)
    with open_read_only(store_path) as store:
        return function(store, *args, **dict(kwargs))


@st.cache_data(show_spinner=False, max_entries=64)
def _store_languages(store_path: str, fp: tuple[int, ...]) -> list[str]:
    del fp
    with open_read_only(store_path) as store:
        if not queries.has_table(store, "examples"):
            return []
        return [
            r[0]
            for r in store.conn.execute("SELECT DISTINCT language FROM examples ORDER BY language")
        ]


def read_ahead(source: Source, names: Sequence[str]) -> float | None:
    """Fill the cache with what a page will load: the store's languages and the queries
    `names` (no arguments). Seconds taken, or None when the store is absent or unreadable (the
    page itself then says why). Used by the server's start-up warm-up (dashboard/warmup.py)."""
    if source.config_error or not source.exists:
        return None
    start = time.perf_counter()
    # The page's own Context builds the cache keys, so they match what the page will ask for.
    ctx = Context(source=source, fingerprint=fingerprint(source.db_path))
    try:
        _store_languages(str(source.store_path), ctx.fingerprint)
        for name in names:
            ctx.load(name)
    except Exception as exc:  # a newer schema, a corrupt file, no permission
        log.warning("could not read ahead from %s: %s", source.store_path, exc)
        return None
    return time.perf_counter() - start


def _open_error(source: Source) -> tuple[str, str] | None:
    if source.config_error:
        return "The project file could not be read.", source.config_error
    if not source.exists:
        return None
    try:
        with open_read_only(source.store_path):
            return None
    except Exception as exc:  # a newer schema, a corrupt file, no permission
        return "The store could not be opened read-only.", str(exc)


def page(title: str) -> Context:
    """Set up a page: config, sidebar (navigation, store, language filter); returns its context."""
    st.set_page_config(
        page_title=f"curate · {title}", page_icon=":material/dataset:", layout="wide"
    )
    source = resolve_source()
    fp = fingerprint(source.db_path)
    error = _open_error(source)
    languages: list[str] = []
    if error is None and source.exists:
        try:
            languages = _store_languages(str(source.store_path), fp)
        except Exception as exc:
            error = ("The store could not be read.", str(exc))
    with st.sidebar:
        st.markdown("### curate")
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon)
        st.divider()
        selected = _language_filter(languages)
        st.caption("Store (read-only)")
        st.text(str(source.store_path))  # plain text: no highlighter to load
        st.caption(f"Chosen by: {source.origin}")
        if st.button(
            "Reload from store",
            icon=":material/refresh:",
            help="Reads are cached until the store's files change; this re-reads now.",
        ):
            _cached_query.clear()
            _store_languages.clear()
    st.title(title)
    ctx = Context(source, fp, languages, selected)
    if error is not None:
        ctx.error, ctx.detail = error
        st.error(ctx.error)
        st.text(ctx.detail)
    elif not source.exists:
        st.info(
            "No store yet at the path shown in the sidebar. Run `curate ingest FILES` (and "
            "`curate embed`, `curate select`) first, or point the dashboard at a store with "
            "`CURATE_STORE=PATH` or `streamlit run app.py -- --store PATH`."
        )
        ctx.error = "no store"
    return ctx


def _save_filter() -> None:
    st.session_state[_SAVED_FILTER_KEY] = list(st.session_state.get(FILTER_KEY, []))


def _language_filter(languages: list[str]) -> list[str]:
    """The global filter. A widget's own state does not survive a page switch, so the choice is
    kept under another key (saved by the widget's callback, which runs before the page) and
    handed back to the widget on every run; languages the store no longer has are dropped."""
    saved = st.session_state.get(_SAVED_FILTER_KEY, [])
    st.session_state[FILTER_KEY] = [code for code in saved if code in languages]
    chosen = st.multiselect(
        "Languages",
        languages,
        key=FILTER_KEY,
        on_change=_save_filter,
        placeholder="All languages",
        help="Filters every table and chart on every page. Empty: all languages.",
        disabled=not languages,
    )
    return list(chosen)


@contextmanager
def section(title: str, *, sources: Sequence[str] = ()) -> Iterator[None]:
    """A subheader, a note naming the store tables it reads, and a guard: an unexpected store
    state shows an error box for this section only, never a traceback."""
    st.subheader(title)
    if sources:
        st.caption("From: " + ", ".join(f"`{name}`" for name in sources))
    try:
        yield
    except Exception as exc:
        log.exception("dashboard section %r failed", title)
        st.error(f"This section could not be read from the store ({type(exc).__name__}).")
        st.text(str(exc)[:500])


def empty(message: str) -> None:
    st.info(message, icon=":material/info:")


def fmt_int(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{int(value):,}"


def fmt_float(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.{digits}f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.{digits}f}%"


def metric_row(*tiles: tuple[str, str] | tuple[str, str, str | None]) -> None:
    """Metric tiles side by side, one equal column each: ``(label, value)`` or
    ``(label, value, help)``."""
    for column, (label, value, *help_text) in zip(st.columns(len(tiles)), tiles, strict=True):
        column.metric(label, value, help=help_text[0] if help_text else None)


def table(data: pd.DataFrame, **kwargs: Any) -> None:
    """A sortable table; text cells are shown as text."""
    st.dataframe(data, hide_index=True, width="stretch", **kwargs)


def chart(spec: alt.TopLevelMixin, *, key: str) -> None:
    st.altair_chart(spec, width="stretch", key=key)


def language_color() -> alt.Color:
    return alt.Color("language:N", title="language", scale=alt.Scale(scheme="tableau20"))


def bar_per_language(data: pd.DataFrame, columns: Sequence[str], *, title: str) -> alt.Chart:
    """Grouped bars: one group per language, one bar per column."""
    long = data.melt(
        id_vars="language", value_vars=list(columns), var_name="count", value_name="examples"
    )
    return (
        alt.Chart(long, title=title)
        .mark_bar()
        .encode(
            x=alt.X("language:N", title=None),
            xOffset=alt.XOffset("count:N", sort=list(columns)),
            y=alt.Y("examples:Q", title="examples"),
            color=alt.Color("count:N", sort=list(columns), title=None),
            tooltip=["language:N", "count:N", alt.Tooltip("examples:Q", format=",")],
        )
        .properties(height=320)
    )
