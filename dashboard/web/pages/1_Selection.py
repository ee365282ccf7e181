"""Selection: rounds over time, a round's picks and why, the allocator's decision, a pool map."""

from __future__ import annotations

import importlib.util

import altair as alt
import streamlit as st

from curation.embeddings import model_key
from dashboard import ui as dui

ctx = dui.page("Selection")

if ctx.ready:
    rounds = ctx.load("rounds")

    with dui.section("Rounds over time", sources=["selection_rounds", "round_items"]):
        if rounds.empty:
            dui.empty("No selection round yet: run `curate select`.")
        else:
            per_language = ctx.keep(ctx.load("round_language_counts"))
            dui.metric_row(
                ("Rounds", dui.fmt_int(len(rounds))),
                ("Examples selected", dui.fmt_int(per_language["selected"].sum())),
                ("Random control", dui.fmt_int(per_language["control"].sum())),
                ("Latest round", f"#{int(rounds['round'].iloc[-1])}"),
            )
            dui.chart(
                alt.Chart(per_language, title="Examples selected per round and language")
                .mark_bar()
                .encode(
                    x=alt.X("round:O", title="round", axis=alt.Axis(labelAngle=0)),
                    y=alt.Y("selected:Q", title="examples"),
                    color=dui.language_color(),
                    tooltip=["round:O", "language:N", "selected:Q", "control:Q"],
                )
                .properties(height=300),
                key="selection_rounds_chart",
            )
            dui.table(rounds.sort_values("round", ascending=False))

    if not rounds.empty:
        strategies = sorted(rounds["strategy"].unique().tolist())
        with dui.section("A round's examples", sources=["round_items", "examples", "labels"]):
            left, middle, right = st.columns([2, 2, 3])
            chosen_strategies = left.multiselect(
                "Strategy", strategies, placeholder="All strategies", key="selection_strategy"
            )
            listed = (
                rounds[rounds["strategy"].isin(chosen_strategies)] if chosen_strategies else rounds
            )
            if listed.empty:
                dui.empty("No round used the chosen strategies.")
                round_id = None
            else:
                options = listed["round"].astype(int).tolist()[::-1]  # latest first
                labels = {
                    int(r["round"]): f"#{int(r['round'])} · {r['strategy']} · {r['created_at']}"
                    for r in listed.to_dict("records")
                }
                round_id = middle.selectbox(
                    "Round", options, index=0, format_func=labels.__getitem__, key="selection_round"
                )
            if round_id is not None:
                items = ctx.keep(ctx.load("round_items", int(round_id)))
                local = right.multiselect(
                    "Languages in this table",
                    sorted(items["language"].unique().tolist()),
                    placeholder="All (after the sidebar filter)",
                    key="selection_round_languages",
                )
                if local:
                    items = items[items["language"].isin(local)]
                kinds = (
                    st.segmented_control(
                        "Picks",
                        ["strategy", "random control"],
                        selection_mode="multi",
                        default=["strategy", "random control"],
                        key="selection_kind",
                    )
                    or []
                )
                keep = items["control"].map(
                    lambda c: ("random control" if c else "strategy") in kinds
                )
                items = items[keep]
                dui.metric_row(
                    ("Examples shown", dui.fmt_int(len(items))),
                    ("Languages", dui.fmt_int(items["language"].nunique())),
                    (
                        "Mean score",
                        dui.fmt_float(items["score"].mean())
                        if items["score"].notna().any()
                        else "—",
                    ),
                    ("Labeled since", dui.fmt_int(items["label_now"].notna().sum())),
                )
                if items.empty:
                    dui.empty("No pick of this round matches the filters.")
                else:
                    dui.table(
                        items,
                        column_config={
                            "score": st.column_config.NumberColumn(format="%.4f"),
                            "predicted_score": st.column_config.NumberColumn(format="%.3f"),
                            "text": st.column_config.TextColumn(width="large"),
                            "reason": st.column_config.TextColumn(width="medium"),
                        },
                    )

                decision = ctx.load("round_decision", int(round_id))
                with dui.section(
                    "The allocator's decision", sources=["selection_rounds.allocation_decision"]
                ):
                    if not decision:
                        dui.empty("This round stored no allocation decision.")
                    else:
                        decided = ctx.keep(decision["table"])
                        dui.metric_row(
                            ("Method", str(decision.get("method") or "—")),
                            ("Budget", dui.fmt_int(decision.get("budget"))),
                            ("Allocated", dui.fmt_int(decision.get("total"))),
                        )
                        if not decided.empty:
                            dui.chart(
                                alt.Chart(decided, title="Budget per language")
                                .mark_bar()
                                .encode(
                                    x=alt.X("language:N", title=None, axis=alt.Axis(labelAngle=0)),
                                    y=alt.Y("allocated:Q", title="examples"),
                                    color=dui.language_color(),
                                    tooltip=[
                                        "language:N",
                                        "allocated:Q",
                                        alt.Tooltip("validation_f1:Q", format=".3f"),
                                        alt.Tooltip("mean_uncertainty:Q", format=".3f"),
                                    ],
                                )
                                .properties(height=260),
                                key="selection_allocation_chart",
                            )
                        dui.table(
                            decided,
                            column_config={
                                "explanation": st.column_config.TextColumn(width="large"),
                                "validation_f1": st.column_config.NumberColumn(format="%.3f"),
                                "mean_uncertainty": st.column_config.NumberColumn(format="%.3f"),
                            },
                        )

    with dui.section(
        "Map of the pool", sources=["embeddings", "vectors/", "labels", "round_items"]
    ):
        # find_spec, not import: importing umap (numba) costs seconds the page need not pay
        # until someone picks it.
        methods = ["PCA", "UMAP"] if importlib.util.find_spec("umap") is not None else ["PCA"]
        method = st.radio(
            "Projection",
            methods,
            horizontal=True,
            key="selection_map_method",
            help="UMAP is offered where the `umap-learn` package is installed.",
        )
        key = ctx.load("pick_model_key", model_key(ctx.source.config.embedding))
        if key is None:
            dui.empty("No vectors yet: run `curate embed`.")
        else:
            result = ctx.load("pool_map", key, method=method.lower())
            points = ctx.keep(result["points"])
            if points.empty:
                dui.empty("No embedded example in the chosen languages.")
            else:
                st.caption(
                    f"{result['method'].upper()} of {len(points):,} points "
                    f"({result['shown']:,} sampled of {result['total']:,} embedded; every pick "
                    "of the latest round is kept). Colour: language; shape: status."
                )
                shapes = ["circle", "square", "triangle-up", "diamond"]
                order = ["unlabeled", "selected earlier", "labeled", "selected (latest round)"]
                marker = {  # status -> (size, opacity): the latest picks stand out
                    "unlabeled": (14, 0.35),
                    "selected earlier": (40, 0.8),
                    "labeled": (40, 0.8),
                    "selected (latest round)": (110, 1.0),
                }
                points = points.assign(
                    marker_size=points["status"].map(lambda s: marker[s][0]),
                    marker_opacity=points["status"].map(lambda s: marker[s][1]),
                )
                dui.chart(
                    alt.Chart(points)
                    .mark_point(filled=True)
                    .encode(
                        x=alt.X("x:Q", title="component 1", axis=alt.Axis(labels=False)),
                        y=alt.Y("y:Q", title="component 2", axis=alt.Axis(labels=False)),
                        color=dui.language_color(),
                        shape=alt.Shape(
                            "status:N",
                            scale=alt.Scale(domain=order, range=shapes),
                            title="status",
                            legend=alt.Legend(orient="bottom", symbolFillColor="#555"),
                        ),
                        size=alt.Size("marker_size:Q", scale=None, legend=None),
                        opacity=alt.Opacity("marker_opacity:Q", scale=None, legend=None),
                        order=alt.Order("marker_size:Q"),
                        tooltip=["example_id:N", "language:N", "status:N"],
                    )
                    .properties(height=520)
                    .interactive(),
                    key="selection_map_chart",
                )
                st.text("vectors of model: " + str(result["model"]))
