"""The dashboard's Overview page. Served by `streamlit run app.py` (see app.py); the other pages
live in pages/.

Reads the store read-only; see dashboard/source.py for how the store is found
(`-- --store PATH`, $CURATE_STORE, or the project file like the CLI).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import analysis, queries
from dashboard import ui as dui

ctx = dui.page("Overview")

if ctx.ready:
    data = ctx.load("overview")
    per_language = ctx.keep(data["per_language"])
    # Totals follow the language filter; unfiltered, quarantined counts every quarantine row.
    totals = {
        c: int(per_language[c].sum())
        for c in (
            "pool",
            "labeled",
            "in_label_studio",
            "written_to_file",
            "selected",
            "embedded",
            "quarantined",
        )
    }

    languages = int((per_language["pool"] > 0).sum())
    run = ctx.load("last_nightly_run")
    # The figures first as one line of Markdown. Metric tiles, charts and grids are lazily
    # loaded front-end components, which Streamlit reveals together once all their code has
    # loaded: for a browser without Streamlit in its cache, ~1 s after plain text paints
    # (BENCHMARKS.md, "Dashboard first paint"). The key gives the line a stable CSS class.
    with st.container(key="overview-summary"):
        st.markdown(analysis.overview_summary(totals, languages=languages, run=run))

    with dui.section("Pool", sources=["examples", "labels", "tasks", "quarantine"]):
        dui.metric_row(
            (
                "Pool size",
                dui.fmt_int(totals["pool"]),
                "Distinct examples in the store (`examples`).",
            ),
            (
                "Labeled",
                dui.fmt_int(totals["labeled"]),
                "Examples with a current verified label (`labels`).",
            ),
            (
                "In Label Studio",
                dui.fmt_int(totals["in_label_studio"]),
                "Pushed to a Label Studio project (`tasks`) and not labeled yet.",
            ),
            (
                "Written to file",
                dui.fmt_int(totals["written_to_file"]),
                "Written to a Label Studio import file (`tasks` of no project: no server was "
                "configured) and not labeled yet; import the file into Label Studio.",
            ),
            (
                "Quarantined",
                dui.fmt_int(totals["quarantined"]),
                "Rejected rows (`quarantine`), by the language written in the row.",
            ),
        )
        dui.metric_row(
            (
                "Embedded",
                dui.fmt_int(totals["embedded"]),
                "Examples with a cached vector (`embeddings`).",
            ),
            (
                "Ever selected",
                dui.fmt_int(totals["selected"]),
                "Examples chosen in any selection round (`round_items`).",
            ),
            (
                "Exact duplicates linked",
                dui.fmt_int(data["totals"]["duplicates"]),
                "Later rows whose text was already stored (`duplicates`); all languages.",
            ),
            ("Languages", dui.fmt_int(languages)),
        )

        if per_language.empty:
            dui.empty("The store holds no examples yet: run `curate ingest FILES`.")
        else:
            left, right = st.columns([3, 2])
            with left:
                status = ctx.keep(ctx.load("pool_status"))
                order = list(queries.POOL_STATUSES)
                dui.chart(
                    alt.Chart(status, title="Pool per language")
                    .mark_bar()
                    .encode(
                        x=alt.X("language:N", title=None, axis=alt.Axis(labelAngle=0)),
                        y=alt.Y("examples:Q", title="examples", stack="zero"),
                        color=alt.Color(
                            "status:N",
                            sort=order,
                            title=None,
                            scale=alt.Scale(
                                domain=order,
                                range=["#2e7d32", "#f9a825", "#8d6e63", "#1565c0", "#b0bec5"],
                            ),
                        ),
                        order=alt.Order("status_order:Q"),
                        tooltip=["language:N", "status:N", alt.Tooltip("examples:Q", format=",")],
                    )
                    .transform_calculate(status_order=f"indexof({order!r}, datum.status)")
                    .properties(height=340),
                    key="overview_pool_chart",
                )
            with right:
                quarantined = per_language[per_language["quarantined"] > 0]
                if quarantined.empty:
                    st.caption("No quarantined rows.")
                else:
                    dui.chart(
                        alt.Chart(quarantined, title="Quarantined rows per language")
                        .mark_bar(color="#c62828")
                        .encode(
                            x=alt.X("language:N", title=None, axis=alt.Axis(labelAngle=0)),
                            y=alt.Y("quarantined:Q", title="rows"),
                            tooltip=["language:N", "quarantined:Q"],
                        )
                        .properties(height=340),
                        key="overview_quarantine_chart",
                    )
            dui.table(
                per_language.rename(
                    columns={
                        "in_label_studio": "in Label Studio",
                        "written_to_file": "written to file",
                    }
                ),
                column_config={"language": st.column_config.TextColumn("language")},
            )
            st.caption(
                "in Label Studio: pushed to a project and not labeled yet. written to file: in "
                "a Label Studio import file only (no server configured). quarantined: by the "
                "`language` field of the rejected row when it is a valid BCP-47 tag, "
                "`(unknown)` when the row had none, an invalid one, or was unreadable."
            )

    with dui.section(
        "Budget", sources=["labels", "annotations", "selection_rounds", "training_runs"]
    ):
        caps = analysis.budget_caps(ctx.source.config)
        by_source = ctx.load("labels_by_source")
        bought = sum(n for s, n in by_source.items() if s != "import")
        runs = [analysis.run_summary(r) for r in ctx.load("training_runs")]
        gpu = sum(s["gpu_minutes"] or 0 for s in runs)
        gpu_known = any(s["gpu_minutes"] is not None for s in runs)
        dui.metric_row(
            (
                "Labels bought",
                dui.fmt_int(bought),
                "Labels from Label Studio or adjudication (`labels`, source "
                "other than import); all languages.",
            ),
            (
                "Annotations",
                dui.fmt_int(ctx.load("annotation_count")),
                "Valid annotations pulled from Label Studio (`annotations`).",
            ),
            (
                "Labels requested",
                dui.fmt_int(ctx.load("round_budgets")),
                "Sum of the budgets of all selection rounds (`selection_rounds`).",
            ),
            (
                "GPU minutes",
                dui.fmt_float(gpu, 1) if gpu_known else "—",
                "Sum over training runs of the GPU time they recorded (`training_runs.metrics`).",
            ),
        )
        if caps["labels"]:
            st.progress(
                min(1.0, bought / caps["labels"]),
                text=f"Labels: {bought:,} of {caps['labels']:,} ({caps['labels_key']})",
            )
        else:
            st.caption("No label cap is set in the project file.")
        if caps["gpu_minutes"]:
            if caps["gpu_key"].startswith("[training"):
                worst = max((s["gpu_minutes"] or 0 for s in runs), default=0)
                st.progress(
                    min(1.0, worst / caps["gpu_minutes"]),
                    text=f"GPU minutes, largest run: {worst:,.1f} of "
                    f"{caps['gpu_minutes']:,.0f} per run ({caps['gpu_key']})",
                )
            else:
                st.progress(
                    min(1.0, gpu / caps["gpu_minutes"]),
                    text=f"GPU minutes: {gpu:,.1f} of {caps['gpu_minutes']:,.0f} "
                    f"({caps['gpu_key']})",
                )
        else:
            st.caption("No GPU cap is set in the project file.")

    with dui.section("Last nightly run", sources=["runs", "run_steps"]):
        if run is None:
            dui.empty("No nightly run recorded yet (`curate run` writes the `runs` table).")
        else:
            started, finished = run.get("started_at"), run.get("finished_at")
            dui.metric_row(
                ("Status", str(run.get("status"))),
                (
                    "Started (UTC)",
                    analysis.short_time(started),
                    "Month-day hour:minute; the full timestamps are under the tiles.",
                ),
                ("Took", analysis.duration_text(started, finished)),
                ("Runs recorded", dui.fmt_int(run.get("total_runs"))),
            )
            # Full timestamps as plain text: metric tiles are too narrow for ISO 8601.
            st.text(
                f"run {run.get('id')}: {started or '—'} -> {finished or 'not finished'}"
                + ("  (dry run)" if run.get("dry_run") else "")
            )
            warnings = run.get("warnings")
            if warnings:
                st.warning("The run left warnings:")
                st.text(
                    "\n".join(str(w) for w in warnings)
                    if isinstance(warnings, list)
                    else str(warnings)
                )
            steps = run.get("steps")
            if isinstance(steps, pd.DataFrame) and not steps.empty:
                dui.table(steps.drop(columns=["run_id"], errors="ignore"))
