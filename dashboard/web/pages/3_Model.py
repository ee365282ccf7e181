"""Model: per-language learning curves, the worst-language gap, confusion matrices, training
runs' cost, and label savings against random."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import analysis, queries
from dashboard import ui as dui


def _curve(data: pd.DataFrame, x: str, x_title: str, title: str, key: str) -> None:
    dui.chart(
        alt.Chart(data, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X(x, title=x_title, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("macro_f1:Q", title="macro-F1", scale=alt.Scale(domain=[0, 1])),
            color=dui.language_color(),
            tooltip=[x, "language:N", alt.Tooltip("macro_f1:Q", format=".3f")],
        )
        .properties(height=300),
        key=key,
    )


def _confusion(data: pd.DataFrame, key: str) -> None:
    languages = sorted(data["language"].unique())
    heat = (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X("predicted_label:N", title="predicted"),
            y=alt.Y("true_label:N", title="true"),
            color=alt.Color("count:Q", scale=alt.Scale(scheme="blues"), title="examples"),
            tooltip=["language:N", "true_label:N", "predicted_label:N", "count:Q"],
        )
        .properties(width=180, height=180)
    )
    text = (
        alt.Chart(data)
        .mark_text(fontSize=12)
        .encode(x="predicted_label:N", y="true_label:N", text="count:Q")
    )
    dui.chart(
        alt.layer(heat, text).facet(
            facet=alt.Facet("language:N", sort=languages, title=None), columns=4
        ),
        key=key,
    )


ctx = dui.page("Model")

if ctx.ready:
    summaries = [analysis.run_summary(r) for r in ctx.load("training_runs")]
    with_scores = [s for s in summaries if s["per_language"]]
    evaluations = ctx.keep(ctx.load("evaluations"))
    proxy = ctx.keep(ctx.load("proxy_f1_by_round"))

    with dui.section(
        "Learning curves: per-language macro-F1",
        sources=["training_runs.metrics", "evaluations", "selection_rounds.allocation_decision"],
    ):
        shown = False
        runs_curve = ctx.keep(analysis.run_curves(with_scores))
        if not runs_curve.empty:
            shown = True
            x = "train_examples:Q" if runs_curve["train_examples"].notna().all() else "run:O"
            _curve(
                runs_curve,
                x,
                "training examples" if x.startswith("train") else "run",
                "Adapter training runs (best checkpoint)",
                "model_runs_curve",
            )
        if not evaluations.empty:
            shown = True
            x = "labels:Q" if evaluations["labels"].notna().all() else "evaluation:O"
            _curve(
                evaluations,
                x,
                "labels" if x.startswith("labels") else "evaluation",
                "Evaluations over time",
                "model_evaluations_curve",
            )
        if not proxy.empty:
            shown = True
            _curve(
                proxy,
                "round:O",
                "selection round",
                "Selection proxy, cross-validated at each round",
                "model_proxy_curve",
            )
        if not shown:
            dui.empty(
                "No per-language scores yet: they come from training runs (`curate "
                "train`), evaluations, or rounds selected with the `need` allocation."
            )

    with dui.section(
        "Worst-language gap",
        sources=["training_runs.metrics", "evaluations", "selection_rounds.allocation_decision"],
    ):
        latest, origin = None, None
        if with_scores:
            latest = with_scores[-1]["per_language"]
            origin = f"training run {with_scores[-1]['run_id']}"
        elif not evaluations.empty:
            last = evaluations[evaluations["evaluation"] == evaluations["evaluation"].max()]
            latest = dict(zip(last["language"], last["macro_f1"], strict=True))
            origin = f"evaluation {int(last['evaluation'].iloc[0])}"
        elif not proxy.empty:
            last = proxy[proxy["round"] == proxy["round"].max()]
            latest = dict(zip(last["language"], last["macro_f1"], strict=True))
            origin = f"selection proxy, round {int(last['round'].iloc[0])}"
        latest = {k: v for k, v in (latest or {}).items() if ctx.allows(k)}
        gap = analysis.gap(latest)
        if gap is None:
            dui.empty("No per-language score to compare yet.")
        else:
            dui.metric_row(
                ("Worst language", str(gap["worst_language"])),
                ("Worst-language macro-F1", dui.fmt_float(gap["worst_f1"])),
                (
                    "Gap to the mean",
                    dui.fmt_float(gap["gap_to_mean"]),
                    "Mean over languages minus the worst language.",
                ),
                (
                    "Gap to the best",
                    dui.fmt_float(gap["gap_to_best"]),
                    "Best language minus the worst.",
                ),
            )
            st.text(f"from {origin}; best language {gap['best_language']}")

    with dui.section(
        "Confusion matrix per language", sources=["training_runs.metrics", "round_items", "labels"]
    ):
        with_confusion = [s for s in summaries if s["confusion_matrices"]]
        if with_confusion:
            names = {s["run_id"]: s for s in with_confusion}
            run_id = st.selectbox("Training run", list(names)[::-1], key="model_confusion_run")
            data = analysis.confusion_frame(
                names[run_id]["confusion_matrices"], ctx.load("label_names")
            )
            data = ctx.keep(data)
            if data.empty:
                dui.empty("No matrix for the chosen languages.")
            else:
                st.caption("Validation split of the run's best checkpoint.")
                _confusion(data, "model_confusion_chart")
        else:
            proxy_conf = ctx.keep(ctx.load("proxy_confusion"))
            if proxy_conf.empty:
                dui.empty(
                    "No confusion matrix yet: training runs store one per language; "
                    "until then the proxy's predictions are compared with labels bought "
                    "for selected examples."
                )
            else:
                st.caption(
                    "No training run stored a matrix yet: the selection proxy's "
                    "prediction at selection time against the label bought since."
                )
                merged = proxy_conf.groupby(
                    ["language", "true_label", "predicted_label"], as_index=False
                )["count"].sum()
                _confusion(merged, "model_confusion_chart")

    with dui.section(
        "Calibration per language", sources=["training_runs.metrics", "proxy_calibrations"]
    ):
        calibrated = [s for s in summaries if s["calibration"]]
        proxy_calibration = ctx.load("proxy_calibration")
        if calibrated:
            table = analysis.calibration_frame(calibrated[-1]["calibration"])
            st.caption(
                f"Training run {calibrated[-1]['run_id']}: a temperature per language fitted "
                "on its validation split (the global one below "
                "30 labels). ECE after is cross-fitted: each half of the split is scaled by "
                "the temperature fitted on the other half."
            )
        elif proxy_calibration is not None:
            table = analysis.calibration_frame(proxy_calibration["report"])
            st.caption(
                "The selection proxy (no training run calibrated yet): temperatures fitted on "
                f"its out-of-fold predictions ({proxy_calibration['created_at']}); ECE after "
                "is cross-fitted."
            )
        else:
            table = None
        table = (
            None
            if table is None
            else table[table["language"].map(lambda code: code == "all" or ctx.allows(code))]
        )
        if table is None or table.empty:
            dui.empty("No calibration yet: `curate select` or `curate train` computes one.")
        else:
            dui.table(
                table,
                column_config={
                    "temperature": st.column_config.NumberColumn(format="%.2f"),
                    "ece_before": st.column_config.NumberColumn("ECE before", format="%.4f"),
                    "ece_after": st.column_config.NumberColumn("ECE after", format="%.4f"),
                },
            )

    with dui.section("Training runs: size, memory, time", sources=["training_runs"]):
        runs = analysis.runs_table(summaries)
        if runs.empty:
            dui.empty("No training run yet: run `curate train`.")
        else:
            last = summaries[-1]
            dui.metric_row(
                ("Runs", dui.fmt_int(len(runs))),
                (
                    "Trainable parameters (latest)",
                    dui.fmt_int(last["trainable_params"]),
                    None
                    if last["trainable_share"] is None
                    else f"{last['trainable_share']:.2%} of {int(last['total_params']):,}",
                ),
                ("Peak memory MB (latest)", dui.fmt_float(last["peak_memory_mb"], 0)),
                ("Wall time s (latest)", dui.fmt_float(last["wall_seconds"], 0)),
            )
            cost = (
                runs.assign(run=range(1, len(runs) + 1))
                .melt(
                    id_vars=["run", "run_id"],
                    value_vars=["peak_memory_mb", "wall_seconds"],
                    var_name="measure",
                    value_name="value",
                )
                .dropna()
            )
            if not cost.empty:
                dui.chart(
                    alt.Chart(cost)
                    .mark_bar()
                    .encode(
                        x=alt.X("run:O", title="run (in start order)", axis=alt.Axis(labelAngle=0)),
                        y=alt.Y("value:Q", title=None),
                        color=alt.Color("measure:N", legend=None),
                        column=alt.Column("measure:N", title=None),
                        tooltip=["run_id:N", "measure:N", alt.Tooltip("value:Q", format=",.1f")],
                    )
                    .resolve_scale(y="independent")
                    .properties(width=300, height=180),
                    key="model_cost_chart",
                )
            dui.table(
                runs,
                column_config={
                    "trainable_share": st.column_config.NumberColumn(format="percent"),
                    "mean_macro_f1": st.column_config.NumberColumn(format="%.3f"),
                    "worst_language_f1": st.column_config.NumberColumn(format="%.3f"),
                },
            )

    with dui.section(
        "Label savings against random",
        sources=["<store>/simulations/*.json", "round_items.is_control", "labels"],
    ):
        simulations = queries.simulation_files(ctx.source.store_path)
        shown = False
        for index, simulation in enumerate(simulations):
            savings = analysis.simulation_savings(simulation["results"])
            if savings.empty:
                continue
            shown = True
            st.text(f"simulation {simulation['name']}")
            macro = savings[savings["metric"] == "macro_f1"]
            if not macro.empty:
                best = macro.sort_values("savings", ascending=False, na_position="last").iloc[0]
                st.metric("Best label saving vs random (macro-F1)", dui.fmt_pct(best["savings"]))
                st.text(f"by strategy {best['strategy']}")
            curves = analysis.simulation_curves(simulation["results"])
            dui.chart(
                alt.Chart(curves)
                .mark_line(point=True)
                .encode(
                    x=alt.X("labels:Q", title="labels"),
                    y=alt.Y("score:Q", title=None, scale=alt.Scale(zero=False)),
                    color=alt.Color("strategy:N"),
                    column=alt.Column("metric:N", title=None),
                    tooltip=["strategy:N", "labels:Q", alt.Tooltip("score:Q", format=".3f")],
                )
                .properties(width=380, height=240),
                key=f"model_simulation_chart_{index}",
            )
            dui.table(
                savings,
                column_config={
                    "savings": st.column_config.NumberColumn(format="percent"),
                    "target": st.column_config.NumberColumn(format="%.3f"),
                },
            )
        control = analysis.control_comparison(ctx.keep(ctx.load("proxy_confusion")))
        if not control.empty and control["control_labeled"].sum() > 0:
            shown = True
            st.caption(
                "Real annotations: how often the proxy was wrong on the strategy's picks "
                "and on the random control slice of the same rounds (lift > 1: the "
                "strategy found harder examples than random)."
            )
            dui.table(
                control,
                column_config={
                    "strategy_error_rate": st.column_config.NumberColumn(format="percent"),
                    "control_error_rate": st.column_config.NumberColumn(format="percent"),
                    "lift": st.column_config.NumberColumn(format="%.2f"),
                },
            )
        if not shown:
            dui.empty(
                "No measurement yet: save `curate simulate --output` results under "
                "`<store>/simulations/`, or label random control picks "
                "(`[selection] control_share`)."
            )
