"""Per-language evaluation summaries, early stopping and the rollback guard (plain Python/NumPy).

A summary holds macro-F1 per language (scikit-learn's macro average over the labels present in
the truth or the predictions), their mean, the worst language and a confusion matrix per
language (rows: truth, columns: prediction, in the store's label order).

:class:`BestTracker` decides, evaluation by evaluation, whether a checkpoint becomes the best:
it must improve the target (the mean, or the worst language) by more than `min_delta`, and —
the rollback guard — it must not drop any language by more than `tolerance` below that
language's score in the current best checkpoint. A refused checkpoint counts as no improvement
for patience, and the refusal is recorded with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    if len(y_true) == 0:
        return float("nan")
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def summarize(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    languages: np.ndarray,
    num_labels: int,
    *,
    losses: np.ndarray | None = None,
) -> dict[str, Any]:
    """Macro-F1 per language, mean, worst language, confusion matrices and counts."""
    from sklearn.metrics import confusion_matrix

    per_language: dict[str, float] = {}
    confusion: dict[str, list[list[int]]] = {}
    counts: dict[str, int] = {}
    loss: dict[str, float] = {}
    for code in sorted(set(np.asarray(languages).tolist())):
        rows = np.asarray(languages) == code
        per_language[code] = round(macro_f1(y_true[rows], y_pred[rows]), 6)
        confusion[code] = confusion_matrix(
            y_true[rows], y_pred[rows], labels=list(range(num_labels))
        ).tolist()
        counts[code] = int(rows.sum())
        if losses is not None:
            loss[code] = round(float(np.mean(losses[rows])), 6)
    summary = summary_from_per_language(per_language)
    summary["confusion_matrices"] = confusion
    summary["examples"] = counts
    if losses is not None:
        summary["loss_per_language"] = loss
        summary["loss"] = round(float(np.mean(losses)), 6) if len(losses) else None
    return summary


def summary_from_per_language(per_language: Mapping[str, float]) -> dict[str, Any]:
    """Mean and worst language of a {language: macro_f1} mapping."""
    if not per_language:
        return {
            "per_language": {},
            "mean_macro_f1": None,
            "worst_language": None,
            "worst_language_f1": None,
        }
    worst = min(sorted(per_language), key=lambda code: per_language[code])
    return {
        "per_language": dict(per_language),
        "mean_macro_f1": round(float(np.mean(list(per_language.values()))), 6),
        "worst_language": worst,
        "worst_language_f1": per_language[worst],
    }


def majority_baseline(
    train_labels: np.ndarray, y_true: np.ndarray, languages: np.ndarray
) -> dict[str, Any]:
    """What always predicting the most frequent training label scores, per language."""
    values, counts = np.unique(train_labels, return_counts=True)
    majority = int(values[np.argmax(counts)])
    per_language = {}
    for code in sorted(set(np.asarray(languages).tolist())):
        rows = np.asarray(languages) == code
        per_language[code] = macro_f1(y_true[rows], np.full(int(rows.sum()), majority))
    return summary_from_per_language(per_language)


@dataclass
class Decision:
    """What the tracker made of one evaluation."""

    step: int
    score: float
    improved: bool  # beat the best target by more than min_delta
    accepted: bool  # became the best checkpoint
    note: str = ""


@dataclass
class BestTracker:
    """Best-checkpoint choice with early stopping and the rollback guard (see module doc)."""

    target: str = "mean"
    patience: int | None = 5
    min_delta: float = 0.0
    tolerance: float | None = 0.05
    best_step: int | None = None
    best_score: float = float("-inf")
    best_per_language: dict[str, float] = field(default_factory=dict)
    bad_evaluations: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"BestTracker(target={self.target!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, tolerance={self.tolerance}, best_step={self.best_step})"
        )

    def score(self, summary: Mapping[str, Any]) -> float:
        key = "mean_macro_f1" if self.target == "mean" else "worst_language_f1"
        value = summary[key]
        return float("-inf") if value is None or np.isnan(value) else float(value)

    def consider(self, step: int, summary: Mapping[str, Any]) -> Decision:
        score = self.score(summary)
        per_language: Mapping[str, float] = summary["per_language"]
        label = "mean macro-F1" if self.target == "mean" else "worst-language macro-F1"
        if self.best_step is not None and not score > self.best_score + self.min_delta:
            self.bad_evaluations += 1
            return Decision(
                step,
                score,
                improved=False,
                accepted=False,
                note=f"no improvement of {label} over {self.best_score:.4f} (step "
                f"{self.best_step}); {self.bad_evaluations} in a row",
            )
        if self.best_step is not None and self.tolerance is not None:
            drops = {
                code: (self.best_per_language[code], per_language[code])
                for code in sorted(self.best_per_language)
                if code in per_language
                and self.best_per_language[code] - per_language[code] > self.tolerance + 1e-12
            }
            if drops:
                self.bad_evaluations += 1
                dropped = ", ".join(
                    f"{code} {old:.4f} -> {new:.4f}" for code, (old, new) in drops.items()
                )
                note = (
                    f"rollback guard: step {step} improves {label} {self.best_score:.4f} -> "
                    f"{score:.4f} but drops {dropped} (more than {self.tolerance:g}); "
                    f"kept step {self.best_step} as best"
                )
                self.refusals.append({"step": step, "reason": note, "dropped": sorted(drops)})
                return Decision(step, score, improved=True, accepted=False, note=note)
        previous = self.best_step
        self.best_step = step
        self.best_score = score
        self.best_per_language = dict(per_language)
        self.bad_evaluations = 0
        note = "first evaluation" if previous is None else f"new best {label} {score:.4f}"
        return Decision(step, score, improved=True, accepted=True, note=note)

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evaluations >= self.patience

    def stop_reason(self) -> str:
        label = "mean macro-F1" if self.target == "mean" else "worst-language macro-F1"
        return (
            f"early_stopping: no accepted improvement of the {label} in {self.bad_evaluations} "
            f"evaluations (best {self.best_score:.4f} at step {self.best_step})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_step": self.best_step,
            "best_score": self.best_score if np.isfinite(self.best_score) else None,
            "best_per_language": dict(self.best_per_language),
            "bad_evaluations": self.bad_evaluations,
            "refusals": list(self.refusals),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_step = state["best_step"]
        score = state["best_score"]
        self.best_score = float("-inf") if score is None else float(score)
        self.best_per_language = dict(state["best_per_language"])
        self.bad_evaluations = int(state["bad_evaluations"])
        self.refusals = list(state["refusals"])
