"""Numbers derived from query results: agreement, annotator stats, the adjudication queue,
training-run metrics, learning curves and label savings. Plain pandas/NumPy, no Streamlit.

Agreement (per language, over items with at least two valid annotations; computed by
`labeling.agreement`, the same code that writes `agreement_stats` at each pull):

* percent agreement: the mean, over items, of the share of annotator pairs that chose the same;
* Fleiss' kappa, in its form for a varying number of raters per item;
* Krippendorff's alpha for nominal data (any number of raters, missing ratings allowed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

ITEM = ["project_id", "task_id"]


# -- agreement ----------------------------------------------------------------------------------


def item_counts(annotations: pd.DataFrame) -> pd.DataFrame:
    """One row per (item, choice) with its count, for items with >= 2 non-null choices."""
    rated = annotations.dropna(subset=["choice"])
    if rated.empty:
        return pd.DataFrame(columns=[*ITEM, "language", "choice", "n"])
    counts = rated.groupby([*ITEM, "language", "choice"], dropna=False).size().rename("n")
    counts = counts.reset_index()
    per_item = counts.groupby(ITEM)["n"].transform("sum")
    return counts[per_item >= 2].reset_index(drop=True)


def agreement_scores(counts: pd.DataFrame) -> dict[str, float | int]:
    """Percent agreement, Fleiss' kappa and Krippendorff's alpha from (item, choice, n) rows.

    Computed by `labeling.agreement` -- the code that fills `agreement_stats` at every pull --
    so the dashboard never shows a second, differently defined kappa.
    """
    from labeling.agreement import agreement_summary

    units = [
        [choice for choice, n in zip(group["choice"], group["n"], strict=True) for _ in range(n)]
        for _, group in counts.groupby(ITEM, sort=False)
    ]
    summary = agreement_summary(units)

    def value(x: float | None) -> float:
        return math.nan if x is None else float(x)

    return {
        "items": summary.units,
        "annotations": summary.values,
        "percent": value(summary.percent_agreement),
        "kappa": value(summary.fleiss_kappa),
        "alpha": value(summary.krippendorff_alpha),
    }


def agreement_by_language(annotations: pd.DataFrame) -> pd.DataFrame:
    cols = ["language", "items", "annotations", "percent", "kappa", "alpha"]
    counts = item_counts(annotations)
    if counts.empty:
        return pd.DataFrame(columns=cols)
    rows = [
        {"language": code, **agreement_scores(group)}
        for code, group in counts.groupby("language", sort=True)
    ]
    return pd.DataFrame(rows, columns=cols)


# -- annotators ---------------------------------------------------------------------------------


def annotator_stats(annotations: pd.DataFrame, cancelled: Mapping[str, int]) -> pd.DataFrame:
    """Volume, speed, gold accuracy and agreement with the item majority, per annotator."""
    cols = [
        "annotator",
        "annotations",
        "languages",
        "median_seconds",
        "gold_items",
        "gold_accuracy",
        "majority_agreement",
        "skipped",
    ]
    if annotations.empty:
        rows = [{"annotator": a, "annotations": 0, "skipped": n} for a, n in cancelled.items()]
        return pd.DataFrame(rows).reindex(columns=cols)
    table = annotations.copy()
    gold = table[table["is_gold"] & table["gold_label"].notna()]
    gold_correct = (gold["choice"] == gold["gold_label"]).groupby(gold["annotator"])
    # Majority of the *other* annotators of the same item (ties: no majority).
    rated = table.dropna(subset=["choice"])
    majority: dict[tuple, Any] = {}
    for key, group in rated.groupby(ITEM):
        counts = group["choice"].value_counts()
        if len(group) >= 2 and (len(counts) == 1 or counts.iloc[0] > counts.iloc[1]):
            majority[key] = counts.index[0]
    rated = rated.assign(
        majority=[
            majority.get((p, t)) for p, t in zip(rated["project_id"], rated["task_id"], strict=True)
        ]
    )
    with_majority = rated[rated["majority"].notna()]
    agrees = (with_majority["choice"] == with_majority["majority"]).groupby(
        with_majority["annotator"]
    )
    grouped = table.groupby("annotator")
    out = pd.DataFrame(
        {
            "annotations": grouped.size(),
            "languages": grouped["language"].agg(lambda s: ", ".join(sorted(set(s)))),
            "median_seconds": grouped["lead_time"].median(),
            "gold_items": gold.groupby("annotator").size(),
            "gold_accuracy": gold_correct.mean(),
            "majority_agreement": agrees.mean(),
        }
    )
    out.index.name = "annotator"
    out = out.reset_index()
    out["gold_items"] = out["gold_items"].fillna(0).astype(int)
    out["skipped"] = out["annotator"].map(lambda a: int(cancelled.get(a, 0)))
    missing = [a for a in cancelled if a not in set(out["annotator"])]
    if missing:
        extra = pd.DataFrame(
            {"annotator": missing, "annotations": 0, "skipped": [cancelled[a] for a in missing]}
        )
        out = pd.concat([out, extra], ignore_index=True)
    return (
        out.reindex(columns=cols)
        .sort_values(["annotations", "annotator"], ascending=[False, True])
        .reset_index(drop=True)
    )


def adjudication_queue(annotations: pd.DataFrame, min_agreement: float) -> pd.DataFrame:
    """Items with >= 2 annotations, no resolved label, and no clear majority.

    No clear majority: the top choices tie, or the top choice's share is below `min_agreement`
    (``[labelstudio] min_agreement``).
    """
    cols = ["example_id", "language", "annotations", "choices", "top_share", "annotators"]
    rated = annotations.dropna(subset=["choice"])
    rows = []
    for (_, _), group in rated.groupby(ITEM):
        if len(group) < 2 or group["label_now"].notna().any():
            continue
        counts = group["choice"].value_counts()
        share = counts.iloc[0] / len(group)
        tie = len(counts) > 1 and counts.iloc[0] == counts.iloc[1]
        if tie or share < min_agreement:
            rows.append(
                {
                    "example_id": group["example_id"].iloc[0],
                    "language": group["language"].iloc[0],
                    "annotations": len(group),
                    "choices": ", ".join(f"{c}: {n}" for c, n in counts.items()),
                    "top_share": float(share),
                    "annotators": ", ".join(sorted(set(group["annotator"]))),
                }
            )
    table = pd.DataFrame(rows, columns=cols)
    return table.sort_values(["top_share", "example_id"]).reset_index(drop=True)


# -- training runs ------------------------------------------------------------------------------


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def run_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """A training run's numbers under fixed names, whatever aliases its metrics JSON used.

    Read from ``training_runs.metrics`` as written by training.runs: ``trainable_params``,
    ``total_params``, ``peak_memory_mb``, ``wall_seconds``, ``steps``, ``examples`` (train /
    validation per language), ``best`` (per_language, mean_macro_f1, worst_language,
    worst_language_f1, confusion_matrices) and ``evaluations``.
    """
    metrics = record.get("metrics") or {}
    best = metrics.get("best") or {}
    evaluations = [e for e in metrics.get("evaluations") or [] if isinstance(e, dict)]
    last = evaluations[-1] if evaluations else {}
    peak = _number(_first(metrics, "peak_memory_mb", "peak_gpu_memory_mb", "peak_rss_mb"))
    if peak is None and _number(metrics.get("peak_memory_bytes")) is not None:
        peak = metrics["peak_memory_bytes"] / 2**20
    wall = _number(_first(metrics, "wall_seconds", "wall_time_seconds", "wall_time_s"))
    gpu_minutes = _number(metrics.get("gpu_minutes"))
    if gpu_minutes is None and _number(metrics.get("gpu_hours")) is not None:
        gpu_minutes = metrics["gpu_hours"] * 60
    if gpu_minutes is None and _number(metrics.get("gpu_seconds")) is not None:
        gpu_minutes = metrics["gpu_seconds"] / 60
    trainable = _number(_first(metrics, "trainable_params", "trainable_parameters"))
    total = _number(_first(metrics, "total_params", "total_parameters"))
    train_counts = (metrics.get("examples") or {}).get("train") or {}
    per_language = (
        _first(best, "per_language")
        or _first(last, "per_language")
        or _first(metrics, "per_language")
        or {}
    )
    per_language = {k: float(v) for k, v in per_language.items() if _number(v) is not None}
    confusion = _first(best, "confusion_matrices") or _first(last, "confusion_matrices") or {}
    mean = _number(_first(best, "mean_macro_f1")) if best else None
    if mean is None and per_language:
        mean = float(np.mean(list(per_language.values())))
    worst_language = best.get("worst_language") if best else None
    if worst_language is None and per_language:
        worst_language = min(sorted(per_language), key=per_language.get)
    return {
        "run_id": record.get("id"),
        "status": record.get("status"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "stopped_because": record.get("stopped_because"),
        "train_examples": int(sum(v for v in train_counts.values() if _number(v) is not None))
        if train_counts
        else None,
        "steps": _number(metrics.get("steps")),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": trainable / total if trainable and total else None,
        "peak_memory_mb": peak,
        "wall_seconds": wall,
        "gpu_minutes": gpu_minutes,
        "mean_macro_f1": mean,
        "worst_language": worst_language,
        "worst_language_f1": per_language.get(worst_language) if worst_language else None,
        "per_language": per_language,
        "confusion_matrices": confusion if isinstance(confusion, dict) else {},
        "evaluations": evaluations,
        # Per language: temperature, ECE before/after (training.trainer.Trainer.calibrate).
        "calibration": metrics.get("calibration") or {},
    }


def calibration_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    """A calibration report (language -> labels, temperature, source, ECE before/after) as a
    table, languages sorted, the "all" row last."""
    columns = ["language", "labels", "temperature", "source", "ece_before", "ece_after"]
    rows = [
        {"language": language, **{k: row.get(k) for k in columns[1:]}}
        for language, row in sorted(report.items(), key=lambda item: (item[0] == "all", item[0]))
        if isinstance(row, Mapping)
    ]
    return pd.DataFrame(rows, columns=columns)


def runs_table(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    cols = [
        "run_id",
        "status",
        "started_at",
        "train_examples",
        "steps",
        "trainable_params",
        "total_params",
        "trainable_share",
        "peak_memory_mb",
        "wall_seconds",
        "gpu_minutes",
        "mean_macro_f1",
        "worst_language",
        "worst_language_f1",
        "stopped_because",
    ]
    return pd.DataFrame([{c: s.get(c) for c in cols} for s in summaries], columns=cols)


def run_curves(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Best per-language macro-F1 of each run (x: run order and training examples)."""
    rows = []
    for order, summary in enumerate(summaries, start=1):
        for code, value in summary["per_language"].items():
            rows.append(
                {
                    "run": order,
                    "run_id": summary["run_id"],
                    "train_examples": summary["train_examples"],
                    "language": code,
                    "macro_f1": value,
                }
            )
    return pd.DataFrame(rows, columns=["run", "run_id", "train_examples", "language", "macro_f1"])


def evaluation_curve(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Per-language macro-F1 at each evaluation step of one run."""
    rows = []
    for index, evaluation in enumerate(summary["evaluations"]):
        step = evaluation.get("step", index)
        for code, value in (evaluation.get("per_language") or {}).items():
            if _number(value) is not None:
                rows.append({"step": step, "language": code, "macro_f1": float(value)})
    return pd.DataFrame(rows, columns=["step", "language", "macro_f1"])


def confusion_frame(matrices: Mapping[str, Any], label_names: Sequence[str]) -> pd.DataFrame:
    """Long form (language, true_label, predicted_label, count) of per-language matrices."""
    rows = []
    for code, matrix in matrices.items():
        if not isinstance(matrix, list):
            continue
        for i, row in enumerate(matrix):
            for j, count in enumerate(row if isinstance(row, list) else []):
                rows.append(
                    {
                        "language": code,
                        "true_label": label_names[i] if i < len(label_names) else str(i),
                        "predicted_label": label_names[j] if j < len(label_names) else str(j),
                        "count": int(count),
                    }
                )
    return pd.DataFrame(rows, columns=["language", "true_label", "predicted_label", "count"])


def gap(per_language: Mapping[str, float]) -> dict[str, Any] | None:
    """Worst language, and its gap to the mean and to the best language."""
    if not per_language:
        return None
    worst = min(sorted(per_language), key=per_language.get)
    best = max(sorted(per_language), key=per_language.get)
    mean = float(np.mean(list(per_language.values())))
    return {
        "worst_language": worst,
        "worst_f1": per_language[worst],
        "best_language": best,
        "best_f1": per_language[best],
        "mean_f1": mean,
        "gap_to_mean": mean - per_language[worst],
        "gap_to_best": per_language[best] - per_language[worst],
    }


# -- label savings ------------------------------------------------------------------------------


def _mean_curve(
    curves: Sequence[Sequence[Mapping[str, Any]]], key: str
) -> tuple[np.ndarray, np.ndarray]:
    curves = [c for c in curves if c]
    if not curves:
        return np.zeros(0), np.zeros(0)
    length = min(len(c) for c in curves)
    xs = np.mean([[p["labels"] for p in c[:length]] for c in curves], axis=0)
    ys = np.mean([[p[key] for p in c[:length]] for c in curves], axis=0)
    return xs, ys


def _labels_to_reach(xs: np.ndarray, ys: np.ndarray, target: float) -> float | None:
    for i, y in enumerate(ys):
        if y >= target - 1e-12:
            if i == 0:
                return float(xs[0])
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
    return None


def simulation_savings(results: Mapping[str, Any], baseline: str = "random") -> pd.DataFrame:
    """Labels each strategy needs to reach random's final score, and the share saved.

    For macro-F1 and worst-language F1: the target is the baseline's mean-over-seeds score at
    its largest label count; a strategy's need is the first (interpolated) label count where its
    mean curve reaches it. savings = 1 - need / baseline labels (None: never reached).
    """
    cols = ["strategy", "metric", "target", "baseline_labels", "labels_needed", "savings"]
    strategies = results.get("strategies") or {}
    if baseline not in strategies:
        return pd.DataFrame(columns=cols)
    rows = []
    for metric in ("macro_f1", "worst_language_f1"):
        bx, by = _mean_curve(strategies[baseline].get("curves") or [], metric)
        if len(bx) == 0:
            continue
        target, base_labels = float(by[-1]), float(bx[-1])
        for name, values in strategies.items():
            if name == baseline:
                continue
            xs, ys = _mean_curve(values.get("curves") or [], metric)
            need = _labels_to_reach(xs, ys, target) if len(xs) else None
            rows.append(
                {
                    "strategy": name,
                    "metric": metric,
                    "target": target,
                    "baseline_labels": base_labels,
                    "labels_needed": need,
                    "savings": None if need is None or base_labels <= 0 else 1 - need / base_labels,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def simulation_curves(results: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for name, values in (results.get("strategies") or {}).items():
        for metric in ("macro_f1", "worst_language_f1"):
            xs, ys = _mean_curve(values.get("curves") or [], metric)
            rows += [
                {"strategy": name, "metric": metric, "labels": float(x), "score": float(y)}
                for x, y in zip(xs, ys, strict=True)
            ]
    return pd.DataFrame(rows, columns=["strategy", "metric", "labels", "score"])


def control_comparison(proxy_confusion: pd.DataFrame) -> pd.DataFrame:
    """Per language: how often the proxy was wrong on strategy picks vs random control picks.

    A strategy that finds informative examples picks ones the proxy gets wrong more often than
    random does; computed from labels bought for picks of earlier rounds.
    """
    cols = [
        "language",
        "strategy_labeled",
        "strategy_error_rate",
        "control_labeled",
        "control_error_rate",
        "lift",
    ]
    if proxy_confusion.empty:
        return pd.DataFrame(columns=cols)
    table = proxy_confusion.assign(
        wrong=(proxy_confusion["true_label"] != proxy_confusion["predicted_label"])
        * proxy_confusion["count"]
    )
    rows = []
    for code, group in table.groupby("language", sort=True):
        picks = group[group["control"] == 0]
        control = group[group["control"] != 0]
        s_n, c_n = int(picks["count"].sum()), int(control["count"].sum())
        s_err = picks["wrong"].sum() / s_n if s_n else None
        c_err = control["wrong"].sum() / c_n if c_n else None
        rows.append(
            {
                "language": code,
                "strategy_labeled": s_n,
                "strategy_error_rate": s_err,
                "control_labeled": c_n,
                "control_error_rate": c_err,
                "lift": s_err / c_err if s_err is not None and c_err else None,
            }
        )
    return pd.DataFrame(rows, columns=cols)


# -- budget -------------------------------------------------------------------------------------


def budget_caps(config: Any) -> dict[str, Any]:
    """Label and GPU caps from the project file, where it sets them.

    * GPU: ``[training.budget] max_gpu_hours`` (a cap per training run), in minutes;
    * a nightly section (``[run]`` / ``[nightly]`` / ``[budget]``, when the config has one):
      its numeric keys naming labels (``max_labels``, ...) or GPU time (``*gpu_minutes``,
      ``*gpu_hours``).
    """
    caps: dict[str, Any] = {
        "labels": None,
        "labels_key": None,
        "gpu_minutes": None,
        "gpu_key": None,
    }
    training = getattr(config, "training", None) or {}
    per_run = (
        (training.get("budget") or {}).get("max_gpu_hours") if isinstance(training, dict) else None
    )
    if _number(per_run) is not None:
        caps["gpu_minutes"], caps["gpu_key"] = per_run * 60, "[training.budget] max_gpu_hours"
    for name in ("run", "nightly", "budget"):
        section = getattr(config, name, None)
        if section is None:
            continue
        values = (
            section.model_dump()
            if hasattr(section, "model_dump")
            else (dict(section) if isinstance(section, Mapping) else {})
        )
        for key, value in values.items():
            if _number(value) is None:
                continue
            lowered = key.lower()
            if "label" in lowered and caps["labels_key"] is None:
                caps["labels"], caps["labels_key"] = value, f"[{name}] {key}"
            elif "gpu" in lowered and (
                caps["gpu_key"] is None or caps["gpu_key"].startswith("[training")
            ):
                minutes = value * 60 if "hour" in lowered else value
                caps["gpu_minutes"], caps["gpu_key"] = minutes, f"[{name}] {key}"
    return caps


# -- nightly runs -------------------------------------------------------------------------------


def _utc(timestamp: Any) -> datetime | None:
    if not timestamp:
        return None
    try:
        parsed = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def short_time(timestamp: Any) -> str:
    """``2026-11-02T01:00:00+00:00`` -> ``11-02 01:00`` (UTC), short enough for a metric tile;
    an unparsable value is returned as it is, a missing one as ``—``."""
    parsed = _utc(timestamp)
    if parsed is None:
        return str(timestamp) if timestamp else "—"
    return parsed.strftime("%m-%d %H:%M")


def duration_text(started: Any, finished: Any) -> str:
    """Wall time between two ISO timestamps: ``42 s``, ``7 min``, ``2 h 05 min``; ``—`` when
    either is missing or unparsable (a run still going has no finish time)."""
    start, end = _utc(started), _utc(finished)
    if start is None or end is None:
        return "—"
    seconds = max(0, round((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


# Markdown that acts mid-line (emphasis, code, links, HTML, tables, strike-through, maths).
# `#`, `-`, `+`, `1.` act only at the start of a line; the summary's store values never start one.
_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~$"})


def overview_summary(
    totals: Mapping[str, int], *, languages: int, run: Mapping[str, Any] | None
) -> str:
    """The Overview's first line, in Markdown: the pool figures the tiles below repeat, and the
    last nightly run. Only numbers are bold; the run's status and start (store values) are
    escaped, so they show literally."""
    parts = [
        f"**{totals['pool']:,}** examples in **{languages:,}** "
        + ("language" if languages == 1 else "languages"),
        f"**{totals['labeled']:,}** labeled",
        f"**{totals['in_label_studio']:,}** in Label Studio",
    ]
    # Only when there are some: with a Label Studio server the import file is never used.
    if totals.get("written_to_file", 0):
        parts.append(f"**{totals['written_to_file']:,}** written to file")
    parts.append(f"**{totals['quarantined']:,}** quarantined")
    if run is None:
        parts.append("no nightly run recorded yet")
    else:
        status = str(run.get("status") or "unknown").translate(_MARKDOWN_SPECIALS)
        started = run.get("started_at")
        parts.append(
            f"last nightly run {status}"
            + (
                f", started {short_time(started).translate(_MARKDOWN_SPECIALS)} UTC"
                if started
                else ""
            )
        )
    return " · ".join(parts)
