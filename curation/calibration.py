"""Per-language temperature scaling and expected calibration error.

A softmax is not a probability until it is calibrated, and a multilingual model is calibrated
differently per language: over-confident where it saw few labels, under-confident where
regularisation dominates. Temperature scaling (Guo et al., 2017) divides the logits by one
scalar ``T`` fitted by maximum likelihood on held-out labels; it never changes the argmax, so
accuracy and F1 are untouched and only the probabilities move.

Here ``T`` is fitted per language where that language has ``min_labels`` held-out labels, and
one global ``T`` (fitted on every held-out label) serves the others. The fit itself is scikit-
learn's: ``CalibratedClassifierCV(method="temperature")``'s calibrator minimises the same
multinomial log loss over ``log(1/T)``; :func:`fit_temperature` does that with
:func:`scipy.optimize.minimize_scalar` on :func:`sklearn.metrics.log_loss` for arrays that come
from cross-validation (several fold models, so no single estimator to wrap), and the tests check
it against scikit-learn's calibrator on the same inputs.

Pure: arrays in, arrays out; no I/O. Used by the front room for the proxy
(curation.quality) and by training/ for the adapter; it lives in curation/ because both may
import it and it imports nothing of the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "PerLanguageTemperature",
    "calibration_payload",
    "cross_fitted_report",
    "apply_temperature",
    "expected_calibration_error",
    "fit_temperature",
]

# The temperature is searched in [MIN_TEMPERATURE, MAX_TEMPERATURE]. Held-out predictions that
# are all right (a small, cleanly separated language) drive the likelihood's optimum to T -> 0,
# i.e. certainty; a floor keeps a few dozen labels from turning every probability into 0 or 1
# (measured on UMSAB: T 0.64-3.3 per language, well inside).
MIN_TEMPERATURE = 0.25
MAX_TEMPERATURE = 10.0
_EPS = 1e-12


def _logits(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (n, classes), got shape {p.shape}")
    return np.log(np.clip(p, _EPS, 1.0))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)``, row-wise; ``T = 1`` returns the input (renormalised)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = _logits(probabilities) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The ``T`` in [MIN_TEMPERATURE, MAX_TEMPERATURE] that minimises the log loss of
    ``softmax(log(p) / T)`` on ``labels``.

    ``labels`` are column indices into ``probabilities``.
    """
    from scipy.optimize import minimize_scalar
    from sklearn.metrics import log_loss

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if len(y) != len(p):
        raise ValueError(f"{len(p)} probability rows but {len(y)} labels")
    if len(y) == 0:
        raise ValueError("no labels to fit a temperature on")
    classes = np.arange(p.shape[1])

    def loss(log_inverse_temperature: float) -> float:
        return log_loss(
            y, apply_temperature(p, float(np.exp(-log_inverse_temperature))), labels=classes
        )

    bounds = (-np.log(MAX_TEMPERATURE), -np.log(MIN_TEMPERATURE))  # of log(1/T)
    found = minimize_scalar(loss, bounds=bounds, method="bounded")
    return float(np.exp(-found.x))


def expected_calibration_error(
    probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, *, n_bins: int = 15
) -> float:
    """Top-label ECE: sum over equal-width confidence bins of ``|accuracy - confidence|``
    weighted by the bin's share of rows (Guo et al., 2017; bins right-closed, as in their code).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("no labels to measure calibration on")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b + 1]]
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        members = bins == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


class PerLanguageTemperature:
    """One temperature per language with enough held-out labels, a global one for the rest.

    Parameters:
        min_labels: held-out labels a language needs for its own temperature.
        n_bins: confidence bins of the ECE in :meth:`report`.

    Fitted attributes: ``temperatures_`` (language -> T, only languages fitted on their own),
    ``global_temperature_``, ``counts_`` (held-out labels per language).
    """

    def __init__(self, *, min_labels: int = 30, n_bins: int = 15) -> None:
        if min_labels < 1:
            raise ValueError(f"min_labels must be >= 1, got {min_labels}")
        self.min_labels = min_labels
        self.n_bins = n_bins

    def __repr__(self) -> str:
        return f"PerLanguageTemperature(min_labels={self.min_labels}, n_bins={self.n_bins})"

    def fit(
        self,
        probabilities: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        languages: Sequence[str] | np.ndarray,
    ) -> PerLanguageTemperature:
        p = np.asarray(probabilities, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        lang = np.asarray(languages, dtype=object)
        if not len(p) == len(y) == len(lang):
            raise ValueError(f"lengths differ: {len(p)} rows, {len(y)} labels, {len(lang)} langs")
        self.global_temperature_ = fit_temperature(p, y)
        self.temperatures_: dict[str, float] = {}
        self.counts_: dict[str, int] = {}
        for language in sorted(set(lang.tolist())):
            mask = lang == language
            self.counts_[language] = int(mask.sum())
            if mask.sum() >= self.min_labels:
                self.temperatures_[language] = fit_temperature(p[mask], y[mask])
        return self

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> PerLanguageTemperature:
        """The fitted calibrator a :func:`calibration_payload` describes (as stored)."""
        fitted = cls(min_labels=int(payload.get("min_labels", 30)))
        fitted.temperatures_ = {k: float(v) for k, v in payload["temperatures"].items()}
        fitted.global_temperature_ = float(payload["global_temperature"])
        fitted.counts_ = {}
        return fitted

    def temperature_for(self, language: str) -> float:
        return self.temperatures_.get(language, self.global_temperature_)

    def transform(
        self, probabilities: np.ndarray, languages: Sequence[str] | np.ndarray
    ) -> np.ndarray:
        """Calibrated probabilities, each row with its language's temperature."""
        p = np.asarray(probabilities, dtype=np.float64)
        lang = np.asarray(languages, dtype=object)
        if len(p) != len(lang):
            raise ValueError(f"{len(p)} rows but {len(lang)} languages")
        out = np.empty_like(p)
        for language in set(lang.tolist()):
            mask = lang == language
            out[mask] = apply_temperature(p[mask], self.temperature_for(language))
        return out

    def report(
        self,
        probabilities: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        languages: Sequence[str] | np.ndarray,
    ) -> dict[str, dict[str, Any]]:
        """Per language (and ``"all"``): labels, temperature and its source, ECE before/after.

        Meaningful on held-out rows the temperatures were *not* fitted on (or on the
        out-of-fold rows they were fitted on, which then measures fit, not generalisation).
        """
        p = np.asarray(probabilities, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        lang = np.asarray(languages, dtype=object)
        return _report_rows(self, p, self.transform(p, lang), y, lang, digits=None)


def cross_fitted_report(
    probabilities: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    languages: Sequence[str] | np.ndarray,
    *,
    min_labels: int,
    seed: int,
    n_bins: int = 15,
) -> tuple[PerLanguageTemperature, dict[str, dict[str, Any]]]:
    """Temperatures fitted on every row, and a report whose "after" ECE is cross-fitted.

    Each language's rows are split in two (seeded); temperatures fitted on one half scale the
    other half, both ways, so "after" is measured on rows the temperature never saw and is not
    flattered by fit. Report rows: per language and ``"all"``: labels, the final temperature
    and its source ("language" or "global"), ECE before and after.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    lang = np.asarray(languages, dtype=object)
    calibrator = PerLanguageTemperature(min_labels=min_labels, n_bins=n_bins).fit(p, y, lang)
    rng = np.random.default_rng(seed)
    half = np.zeros(len(y), dtype=bool)
    for language in sorted(set(lang.tolist())):
        rows = np.flatnonzero(lang == language)
        half[rng.permutation(rows)[: len(rows) // 2]] = True
    calibrated = p.copy()
    for fit_rows, judge_rows in ((half, ~half), (~half, half)):
        if fit_rows.any() and judge_rows.any():
            fold = PerLanguageTemperature(min_labels=max(1, min_labels // 2)).fit(
                p[fit_rows], y[fit_rows], lang[fit_rows]
            )
            calibrated[judge_rows] = fold.transform(p[judge_rows], lang[judge_rows])
    report = _report_rows(calibrator, p, calibrated, y, lang, digits=4)
    return calibrator, report


def calibration_payload(
    probabilities: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    languages: Sequence[str] | np.ndarray,
    *,
    min_labels: int,
    seed: int,
) -> dict[str, Any]:
    """What the proxy's and the adapter's calibrations store: temperatures (rounded), the
    global one, the threshold and the cross-fitted report (:func:`cross_fitted_report`).
    :meth:`PerLanguageTemperature.from_payload` turns it back into a calibrator."""
    calibrator, report = cross_fitted_report(
        probabilities, labels, languages, min_labels=min_labels, seed=seed
    )
    return {
        "temperatures": {k: round(v, 4) for k, v in sorted(calibrator.temperatures_.items())},
        "global_temperature": round(calibrator.global_temperature_, 4),
        "min_labels": min_labels,
        "report": report,
    }


def _report_rows(
    calibrator: PerLanguageTemperature,
    before: np.ndarray,
    after: np.ndarray,
    labels: np.ndarray,
    languages: np.ndarray,
    *,
    digits: int | None,
) -> dict[str, dict[str, Any]]:
    """Per language and ``"all"``: labels, temperature and its source, ECE before and after
    (rounded to ``digits`` when given)."""

    def number(value: float) -> float:
        return value if digits is None else round(value, digits)

    rows: dict[str, dict[str, Any]] = {}
    for language in [*sorted(set(languages.tolist())), "all"]:
        mask = np.ones(len(labels), dtype=bool) if language == "all" else languages == language
        temperature = (
            calibrator.global_temperature_
            if language == "all"
            else calibrator.temperature_for(language)
        )
        rows[language] = {
            "labels": int(mask.sum()),
            "temperature": number(temperature),
            "source": "language" if language in calibrator.temperatures_ else "global",
            "ece_before": number(
                expected_calibration_error(before[mask], labels[mask], n_bins=calibrator.n_bins)
            ),
            "ece_after": number(
                expected_calibration_error(after[mask], labels[mask], n_bins=calibrator.n_bins)
            ),
        }
    return rows
