"""Per-language stopping: when do more labels stop paying for a language?

Two signals, both per language:

* **Stabilizing predictions** (Bloodgood & Vijay-Shanker, 2009, "A Method for Stopping Active
  Learning Based on Stabilizing Predictions"): a fixed sample of the language's unlabeled pool,
  the *stop set*, is predicted by the proxy of every round. When successive models agree on it
  (Cohen's kappa at least ``min_kappa``, i.e. few predictions change) for ``window`` successive
  round pairs, new labels no longer move the model there.
* **The validation curve**: the slope of the language's validation macro-F1 against its label
  count over the last ``window + 1`` rounds (least squares), in F1 per 100 labels. Below
  ``min_gain_per_100`` the curve is flat.

A language is stopped when its predictions are stable and its curve is flat -- or, while it has
no validation curve yet (too few labels for an F1), when its predictions are stable and it has
at least ``min_labels`` labels. One signal alone is weak: predictions stabilise on a plateau
that more labels would leave, and a noisy F1 slope on a small validation set wobbles around zero.

Pure: predictions and curves in, decisions with reasons out. The allocator
(:func:`selection.allocation.allocate`, ``stopped=``) gives a stopped language no budget and
says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LanguageHistory", "StopDecision", "StoppingRule"]


@dataclass(frozen=True)
class LanguageHistory:
    """One language's record over rounds, oldest first.

    ``stop_set_predictions[r]`` are round r's predicted labels on the language's stop set (the
    same examples, in the same order, every round). ``labels[r]`` is the label count the round's
    proxy was trained with; ``f1[r]`` its validation macro-F1, or None where unknown.
    """

    stop_set_predictions: Sequence[Sequence[str]]
    labels: Sequence[int]
    f1: Sequence[float | None] = ()


@dataclass(frozen=True)
class StopDecision:
    language: str
    stopped: bool
    reason: str  # "stopped, predictions changed on 0.4% of the stop set ..." (no language)
    changed: float | None = None  # mean share of stop-set predictions changed over the window
    kappa: float | None = None  # minimum Cohen's kappa over the window
    slope_per_100: float | None = None  # validation F1 gained per 100 labels over the window

    @property
    def message(self) -> str:
        return f"{self.language}: {self.reason}"


class StoppingRule:
    """Decides, per language, whether to keep buying labels.

    Parameters:
        window: successive round pairs that must agree (and curve points past the first).
        min_kappa: Cohen's kappa between successive rounds' stop-set predictions (0.99 in
            Bloodgood & Vijay-Shanker).
        min_gain_per_100: validation F1 per 100 labels below which the curve counts as flat.
        min_labels: labels a language needs before it can stop without a validation curve.
    """

    def __init__(
        self,
        *,
        window: int = 2,
        min_kappa: float = 0.99,
        min_gain_per_100: float = 0.005,
        min_labels: int = 100,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not -1.0 <= min_kappa <= 1.0:
            raise ValueError(f"min_kappa must be in [-1, 1], got {min_kappa}")
        self.window = window
        self.min_kappa = min_kappa
        self.min_gain_per_100 = min_gain_per_100
        self.min_labels = min_labels

    def __repr__(self) -> str:
        return (
            f"StoppingRule(window={self.window}, min_kappa={self.min_kappa}, "
            f"min_gain_per_100={self.min_gain_per_100}, min_labels={self.min_labels})"
        )

    def decide(self, histories: Mapping[str, LanguageHistory]) -> dict[str, StopDecision]:
        return {
            language: self._decide(language, histories[language]) for language in sorted(histories)
        }

    def _decide(self, language: str, history: LanguageHistory) -> StopDecision:
        from sklearn.metrics import cohen_kappa_score

        rounds = len(history.stop_set_predictions)
        if len(history.labels) != rounds:
            raise ValueError(
                f"{language}: {rounds} rounds of stop-set predictions but "
                f"{len(history.labels)} label counts"
            )
        if rounds < self.window + 1:
            return StopDecision(
                language,
                False,
                f"continue, {rounds} round(s) of stop-set predictions, "
                f"{self.window + 1} needed to judge",
            )
        recent = [
            np.asarray(p, dtype=object) for p in history.stop_set_predictions[-self.window - 1 :]
        ]
        sizes = {len(p) for p in recent}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"{language}: stop-set predictions must be non-empty and equal-sized")
        changed = [float(np.mean(a != b)) for a, b in zip(recent, recent[1:], strict=False)]
        kappas = [
            1.0 if np.array_equal(a, b) else float(cohen_kappa_score(a, b))
            for a, b in zip(recent, recent[1:], strict=False)
        ]
        mean_changed = float(np.mean(changed))
        kappa = min(kappas)
        stable = kappa >= self.min_kappa
        stability = (
            f"predictions changed on {100 * mean_changed:.1f}% of the stop set over the last "
            f"{self.window} round(s) (kappa {kappa:.3f})"
        )
        slope = self._slope(history)
        labels_now = int(history.labels[-1])
        if slope is None:
            flat = labels_now >= self.min_labels
            curve = f"no validation curve yet, {labels_now} labels" + (
                f" (>= {self.min_labels})" if flat else f" (< {self.min_labels})"
            )
        else:
            flat = slope < self.min_gain_per_100
            curve = f"validation F1 {slope:+.3f} per 100 labels"
        stopped = stable and flat
        verdict = "stopped" if stopped else "continue"
        return StopDecision(
            language,
            stopped,
            f"{verdict}, {stability}; {curve}",
            changed=mean_changed,
            kappa=kappa,
            slope_per_100=slope,
        )

    def _slope(self, history: LanguageHistory) -> float | None:
        """Least-squares slope of F1 against labels over the window, per 100 labels."""
        points = (
            [
                (float(n), float(f))
                for n, f in zip(
                    history.labels[-self.window - 1 :], history.f1[-self.window - 1 :], strict=False
                )
                if f is not None
            ]
            if len(history.f1) == len(history.labels)
            else []
        )
        if len(points) < 2 or len({n for n, _ in points}) < 2:
            return None
        from scipy.stats import linregress

        x, y = zip(*points, strict=True)
        return float(linregress(x, y).slope * 100)
