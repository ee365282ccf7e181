"""Labeling: Label Studio progress, agreement per language, annotators, the adjudication queue."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboard import analysis
from dashboard import ui as dui

ctx = dui.page("Labeling")

if ctx.ready:
    with dui.section("Label Studio progress", sources=["tasks", "annotations", "labels"]):
        progress = ctx.keep(ctx.load("labelstudio_progress"))
        if progress.empty:
            dui.empty("Nothing pushed to Label Studio yet: run `curate push`.")
        else:
            dui.metric_row(
                ("Tasks pushed", dui.fmt_int(progress["pushed"].sum())),
                (
                    "Annotated",
                    dui.fmt_int(progress["annotated"].sum()),
                    "Tasks with at least one valid annotation.",
                ),
                (
                    "Labeled",
                    dui.fmt_int(progress["labeled"].sum()),
                    "Pushed examples that have a resolved label.",
                ),
                (
                    "Waiting",
                    dui.fmt_int(progress["pending"].sum()),
                    "Pushed examples with no resolved label yet.",
                ),
            )
            long = progress.assign(
                **{
                    "annotated, unresolved": (progress["annotated"] - progress["labeled"]).clip(
                        lower=0
                    ),
                    "not annotated": (
                        progress["pushed"] - progress[["annotated", "labeled"]].max(axis=1)
                    ).clip(lower=0),
                }
            ).melt(
                id_vars="language",
                value_vars=["labeled", "annotated, unresolved", "not annotated"],
                var_name="state",
                value_name="tasks",
            )
            order = ["labeled", "annotated, unresolved", "not annotated"]
            dui.chart(
                alt.Chart(long, title="Label Studio tasks per language")
                .mark_bar()
                .encode(
                    x=alt.X("language:N", title=None, axis=alt.Axis(labelAngle=0)),
                    y=alt.Y("tasks:Q", title="tasks"),
                    color=alt.Color(
                        "state:N",
                        sort=order,
                        title=None,
                        scale=alt.Scale(domain=order, range=["#2e7d32", "#f9a825", "#b0bec5"]),
                    ),
                    tooltip=["language:N", "state:N", "tasks:Q"],
                )
                .properties(height=300),
                key="labeling_progress_chart",
            )
            dui.table(progress)

    annotations = ctx.keep(ctx.load("annotations"))

    with dui.section("Agreement per language", sources=["annotations", "agreement_stats"]):
        stored = ctx.load("stored_agreement")
        if stored is not None:
            agreement = ctx.keep(stored["table"])
            st.caption(
                "Per language: as measured by the last `curate pull` (`agreement_stats`, "
                f"{stored['computed_at']}). Totals: recomputed from `annotations`."
            )
        else:
            agreement = analysis.agreement_by_language(annotations)
        if agreement.empty:
            dui.empty(
                "No task has two or more annotations yet: agreement needs overlap "
                "(`[labelstudio] annotations_per_task` > 1)."
            )
        else:
            overall = analysis.agreement_scores(analysis.item_counts(annotations))
            dui.metric_row(
                ("Items with overlap", dui.fmt_int(overall["items"])),
                ("Krippendorff's alpha", dui.fmt_float(overall["alpha"])),
                ("Fleiss' kappa", dui.fmt_float(overall["kappa"])),
                ("Percent agreement", dui.fmt_pct(overall["percent"])),
            )
            long = agreement.melt(
                id_vars="language",
                value_vars=["alpha", "kappa", "percent"],
                var_name="measure",
                value_name="value",
            ).dropna()
            dui.chart(
                alt.Chart(long, title="Agreement per language")
                .mark_bar()
                .encode(
                    x=alt.X("language:N", title=None, axis=alt.Axis(labelAngle=0)),
                    xOffset="measure:N",
                    y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[-0.2, 1])),
                    color=alt.Color("measure:N", title=None),
                    tooltip=[
                        "language:N",
                        "measure:N",
                        alt.Tooltip("value:Q", format=".3f"),
                        "items:Q",
                    ],
                )
                .properties(height=280),
                key="labeling_agreement_chart",
            )
            dui.table(
                agreement,
                column_config={
                    "percent": st.column_config.NumberColumn("percent agreement", format="percent"),
                    "kappa": st.column_config.NumberColumn("Fleiss' kappa", format="%.3f"),
                    "alpha": st.column_config.NumberColumn("Krippendorff's alpha", format="%.3f"),
                },
            )

    with dui.section(
        "Annotators",
        sources=["annotations", "tasks.is_gold", "labels", "annotator_gold", "annotator_quality"],
    ):
        stats = analysis.annotator_stats(annotations, ctx.load("cancelled_by_annotator"))
        quality = ctx.load("stored_annotator_quality")
        if quality is not None and not stats.empty:
            rows = ctx.keep(quality["table"]).set_index("annotator")
            stats["estimated_accuracy"] = stats["annotator"].map(rows["accuracy"])
            method = rows["method"].iloc[0] if len(rows) else "majority"
            st.caption(
                "Estimated accuracy: "
                + (
                    "Dawid-Skene's, each annotator's confusion matrix fitted over every task "
                    '([labelstudio] aggregation = "dawid_skene")'
                    if method == "dawid_skene"
                    else "agreement with the majority label ([labelstudio] aggregation = "
                    '"majority"; "dawid_skene" estimates it from every task)'
                )
                + f", as of the last `curate pull` ({quality['computed_at']})."
            )
        stored_gold = ctx.load("stored_gold_accuracy")
        if stored_gold is not None and not stats.empty:
            gold_rows = ctx.keep(stored_gold["table"])
            per = gold_rows.groupby("annotator")[["answered", "correct"]].sum()
            stats["gold_items"] = stats["annotator"].map(per["answered"]).fillna(0).astype(int)
            stats["gold_accuracy"] = stats["annotator"].map(per["correct"] / per["answered"])
            st.caption(
                "Gold accuracy: as measured by the last `curate pull` (`annotator_gold`, "
                f"{stored_gold['computed_at']})."
            )
        if stats.empty:
            dui.empty("No annotation pulled yet: run `curate pull`.")
        else:
            answered = int(stats["gold_items"].fillna(0).sum())
            correct = float(
                (stats["gold_accuracy"].fillna(0) * stats["gold_items"].fillna(0)).sum()
            )
            dui.metric_row(
                ("Annotators", dui.fmt_int(len(stats))),
                (
                    "Median seconds per annotation",
                    dui.fmt_float(annotations["lead_time"].median(), 1),
                ),
                ("Gold accuracy", dui.fmt_pct(correct / answered) if answered else "—"),
            )
            dui.table(
                stats,
                column_config={
                    "median_seconds": st.column_config.NumberColumn(format="%.1f"),
                    "gold_accuracy": st.column_config.NumberColumn(format="percent"),
                    "majority_agreement": st.column_config.NumberColumn(
                        "agrees with majority", format="percent"
                    ),
                    "estimated_accuracy": st.column_config.NumberColumn(
                        "estimated accuracy", format="percent"
                    ),
                },
            )

    with dui.section("Adjudication queue", sources=["adjudication_queue", "annotations", "labels"]):
        threshold = ctx.source.config.labelstudio.min_agreement
        queue = ctx.load("stored_adjudication_queue")
        if queue is not None:
            queue = ctx.keep(queue)
            st.caption(
                "Rebuilt by every `curate pull` (`adjudication_queue`): ties, low agreement, "
                "all-skipped examples, crowd majorities against an imported label, and "
                "suspected label errors (cleanlab on the proxy's out-of-fold probabilities, at "
                "most [labelstudio] label_issues_per_language per language). Settle one with "
                "`curate adjudicate`."
            )
            suspects = queue[queue["reason"].str.startswith("suspected_label_error")]
            if not suspects.empty:
                per_language = suspects["language"].value_counts().sort_index()
                st.markdown(
                    f"**{len(suspects)}** suspected label errors: "
                    + ", ".join(f"{code} **{n}**" for code, n in per_language.items())
                )
            config = {
                "agreement": st.column_config.NumberColumn(format="percent"),
                "text": st.column_config.TextColumn(width="large"),
            }
        else:
            queue = analysis.adjudication_queue(annotations, threshold)
            st.caption(
                "Items with two or more annotations, no resolved label, and a tie or a top "
                f"choice below {threshold:.0%} ([labelstudio] min_agreement)."
            )
            if not queue.empty:
                texts = ctx.load("example_texts", tuple(queue["example_id"]))
                queue.insert(2, "text", queue["example_id"].map(texts))
            config = {
                "top_share": st.column_config.NumberColumn(format="percent"),
                "text": st.column_config.TextColumn(width="large"),
            }
        if queue.empty:
            dui.empty("Nothing waits for adjudication.")
        else:
            st.metric("Waiting for adjudication", dui.fmt_int(len(queue)))
            dui.table(queue, column_config=config)
