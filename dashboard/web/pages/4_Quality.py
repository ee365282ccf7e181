"""Quality: quarantined rows with reasons, duplicate clusters, language-detection uncertainty."""

from __future__ import annotations

import altair as alt
import streamlit as st

from curation.config import max_similarity_for
from curation.embeddings import model_key
from dashboard import ui as dui

ctx = dui.page("Quality")

if ctx.ready:
    with dui.section("Quarantine", sources=["quarantine"]):
        data = ctx.load("quarantine_rows")
        rows = ctx.keep(data["rows"])
        if data["total"] == 0:
            dui.empty("No row was quarantined.")
        else:
            by_reason = (
                rows.groupby("reason", as_index=False).size().rename(columns={"size": "rows"})
                if ctx.selected
                else data["by_reason"]
            )
            dui.metric_row(
                ("Quarantined rows", dui.fmt_int(by_reason["rows"].sum())),
                ("Reasons", dui.fmt_int(len(by_reason))),
                ("Files", dui.fmt_int(rows["file"].nunique())),
            )
            dui.chart(
                alt.Chart(by_reason, title="Quarantined rows by reason")
                .mark_bar(color="#c62828")
                .encode(
                    x=alt.X("rows:Q", title="rows", axis=alt.Axis(tickMinStep=1, format="d")),
                    y=alt.Y("reason:N", title=None, sort="-x", axis=alt.Axis(labelLimit=420)),
                    tooltip=["reason:N", "rows:Q"],
                )
                .properties(height=alt.Step(24)),
                key="quality_quarantine_chart",
            )
            if len(data["rows"]) < data["total"]:
                st.caption(f"The {len(data['rows']):,} most recent rows of {data['total']:,}.")
            dui.table(
                rows,
                column_order=[
                    "language",
                    "reason",
                    "field",
                    "raw",
                    "line",
                    "file",
                    "source",
                    "created_at",
                ],
                column_config={
                    "raw": st.column_config.TextColumn("raw row", width="large"),
                    "line": st.column_config.NumberColumn(format="%d"),
                },
            )

    with dui.section("Exact duplicates", sources=["duplicates", "examples"]):
        exact = ctx.load("exact_duplicate_clusters")
        clusters = ctx.keep(exact["clusters"])
        if clusters.empty:
            dui.empty("No exact duplicate was seen at ingest.")
        else:
            dui.metric_row(
                ("Texts seen more than once", dui.fmt_int(len(clusters))),
                (
                    "Duplicate rows linked",
                    dui.fmt_int(int(clusters["copies"].sum() - len(clusters))),
                ),
            )
            dui.table(clusters, column_config={"text": st.column_config.TextColumn(width="large")})

    with dui.section("Near-duplicate clusters", sources=["embeddings", "vectors/"]):
        left, right = st.columns(2)
        guard = float(max_similarity_for(ctx.source.config) or 1.0)
        # The slider's floor follows the model's scale: under e5, 83% of tweet pairs are above
        # 0.80 (MiniLM: 0.1%), and a range search that low returns millions of pairs that
        # collapse into one cluster (benchmarks/results/near_duplicate_geometry.json).
        floor = round(max(0.80, min(guard, 1.0) - 0.06), 2)
        threshold = left.slider(
            "Cosine similarity at least",
            min_value=floor,
            max_value=1.0,
            step=0.01,
            value=max(floor, min(1.0, guard)),
            key="quality_threshold",
            help="Default: [selection] max_similarity, the near-duplicate guard of selection.",
        )
        scan = right.select_slider(
            "Vectors to scan",
            options=[2000, 5000, 10000, 20000, 50000],
            value=5000,
            key="quality_scan",
            help="An exact search over a seeded sample of this many vectors: about a second "
            "for 5,000 on two cores, growing with the square of the number.",
        )
        key = ctx.load("pick_model_key", model_key(ctx.source.config.embedding))
        if key is None:
            dui.empty("No vectors yet: run `curate embed`.")
        else:
            near = ctx.load(
                "near_duplicate_clusters",
                key,
                threshold=round(threshold, 2),
                languages=tuple(ctx.selected),
                max_vectors=int(scan),
            )
            members = near["members"]
            dui.metric_row(
                ("Clusters", dui.fmt_int(near["clusters"])),
                ("Examples in clusters", dui.fmt_int(len(members))),
                ("Vectors scanned", dui.fmt_int(near["scanned"])),
            )
            if near["scanned"] < near["total"]:
                st.caption(
                    f"A seeded sample of {near['scanned']:,} of {near['total']:,} vectors "
                    "was scanned."
                )
            if members.empty:
                dui.empty("No near-duplicates at this threshold.")
            else:
                sizes = members.drop_duplicates("cluster")[["cluster", "size", "languages"]]
                cross = int((sizes["languages"].str.contains(",")).sum())
                st.caption(
                    f"{cross:,} of {len(sizes):,} clusters span several languages "
                    "(often translations)."
                )
                dui.table(
                    members, column_config={"text": st.column_config.TextColumn(width="large")}
                )

    with dui.section("Language-detection uncertainty", sources=["examples"]):
        detection = ctx.load("language_detection")
        summary = (
            ctx.keep(detection["summary"])
            if not detection["summary"].empty
            else detection["summary"]
        )
        by_source = detection["by_source"]
        dui.metric_row(
            ("Given by the data", dui.fmt_int(by_source.get("given", 0))),
            ("Detected", dui.fmt_int(by_source.get("detected", 0))),
            (
                "Undetermined (und)",
                dui.fmt_int(by_source.get("undetermined", 0)),
                "Detection below [languages] min_confidence: stored as `und`.",
            ),
        )
        if summary.empty:
            dui.empty("Every language was given by the data: nothing was detected.")
        else:
            histogram = detection["histogram"]
            if not histogram.empty:
                dui.chart(
                    alt.Chart(histogram, title="Detector confidence")
                    .mark_bar()
                    .encode(
                        x=alt.X("bin:O", title="confidence (bin start)"),
                        y=alt.Y("examples:Q", title="examples"),
                        color=alt.Color(
                            "language_source:N",
                            title=None,
                            scale=alt.Scale(
                                domain=["detected", "undetermined"], range=["#1565c0", "#c62828"]
                            ),
                        ),
                        tooltip=["bin:O", "language_source:N", "examples:Q"],
                    )
                    .properties(height=240),
                    key="quality_detection_chart",
                )
            dui.table(
                summary,
                column_config={
                    "mean_confidence": st.column_config.NumberColumn(format="%.3f"),
                    "min_confidence": st.column_config.NumberColumn(format="%.3f"),
                },
            )
            st.caption(
                "Least certain first (undetermined, then lowest confidence). For `und` "
                "rows, the language column of the summary is the detector's best guess."
            )
            uncertain = detection["uncertain"]
            if ctx.selected:
                uncertain = uncertain[
                    uncertain["language"].isin(ctx.selected)
                    | uncertain["detected_guess"].isin(ctx.selected)
                ]
            dui.table(
                uncertain,
                column_config={
                    "language_confidence": st.column_config.NumberColumn(format="%.3f"),
                    "text": st.column_config.TextColumn(width="large"),
                },
            )
