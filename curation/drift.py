"""Has tonight's pool drifted from what the model learned on? Per-language two-sample tests.

Each signal compares a *batch* (the examples one nightly ingest added) with a *reference* (the
labeled examples, or the examples of earlier batches), per language, with a standard test and an
effect size. An alert needs both: a p-value below ``alpha`` (the difference is real, not
sampling noise) and an effect above the signal's threshold (it is large enough to matter) --
with thousands of rows a p-value alone flags differences nobody should act on.

* ``language_mix``: chi-square test of the batch's language counts against the reference's
  proportions; effect: total variation distance (half the L1 distance of the two mixes).
* ``text_length``: two-sample Kolmogorov-Smirnov test of character lengths; effect: the KS
  statistic (largest gap between the two CDFs).
* ``embedding``: a classifier two-sample test (Lopez-Paz & Oquab, 2017): a logistic regression
  learns to tell batch vectors from reference vectors under stratified cross-validation (class
  weights balanced, so a small batch is not ignored); its out-of-fold scores give the ROC AUC
  (the effect; 0.5 = indistinguishable) and a one-sided Mann-Whitney U test of batch scores
  above reference scores (the AUC's own significance, valid for unequal sizes).
* ``predicted_labels``: chi-square of the proxy's predicted-label counts on the batch against
  its predictions on the reference; effect: total variation distance.
* ``language_confidence``: KS test of the language detector's confidence (detected rows only);
  a batch of another language or script that the detector forces into a known one shows here.

Pure: arrays and counts in, findings out; the nightly job gathers the inputs and reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DriftFinding",
    "DriftThresholds",
    "classifier_two_sample_test",
    "distribution_shift",
    "mix_shift",
]

# Samples larger than this are subsampled (seeded) before the classifier test: its power at a
# few thousand rows is ample, and the nightly job must stay cheap.
MAX_C2ST_ROWS = 4000


@dataclass(frozen=True)
class DriftThresholds:
    alpha: float = 0.01
    total_variation: float = 0.15  # language and predicted-label mixes
    ks_statistic: float = 0.2  # text length, language confidence
    auc: float = 0.7  # classifier two-sample test
    min_rows: int = 30  # fewer rows on either side: not tested


@dataclass(frozen=True)
class DriftFinding:
    signal: str
    language: str | None  # None for the language mix (all languages)
    statistic: float  # the effect size (TVD, KS statistic or AUC)
    p_value: float
    batch_rows: int
    reference_rows: int
    alert: bool
    detail: str

    @property
    def message(self) -> str:
        where = f"{self.language}: " if self.language else ""
        return f"{where}{self.signal} drift, {self.detail}"


def _skipped(signal: str, language: str | None, batch: int, reference: int, why: str):
    return DriftFinding(signal, language, float("nan"), float("nan"), batch, reference, False, why)


def mix_shift(
    signal: str,
    batch_counts: Mapping[str, int],
    reference_counts: Mapping[str, int],
    *,
    language: str | None = None,
    thresholds: DriftThresholds = DriftThresholds(),
) -> DriftFinding:
    """Chi-square goodness of fit of ``batch_counts`` to the reference's proportions."""
    from scipy.stats import chisquare

    keys = sorted(set(batch_counts) | set(reference_counts))
    batch = np.array([batch_counts.get(k, 0) for k in keys], dtype=np.float64)
    reference = np.array([reference_counts.get(k, 0) for k in keys], dtype=np.float64)
    n_batch, n_reference = int(batch.sum()), int(reference.sum())
    if min(n_batch, n_reference) < thresholds.min_rows:
        return _skipped(signal, language, n_batch, n_reference, "too few rows to test")
    # Add-one smoothing of the reference: a category absent from it must not divide by zero,
    # and a new category in the batch is exactly what should raise the statistic.
    expected_share = (reference + 1) / (reference + 1).sum()
    statistic, p_value = chisquare(batch, expected_share * n_batch)
    tvd = 0.5 * float(np.abs(batch / n_batch - reference / n_reference).sum())
    shares = lambda counts, n: ", ".join(  # noqa: E731
        f"{k} {100 * c / n:.0f}%" for k, c in zip(keys, counts, strict=True) if c
    )
    alert = p_value < thresholds.alpha and tvd >= thresholds.total_variation
    return DriftFinding(
        signal,
        language,
        tvd,
        float(p_value),
        n_batch,
        n_reference,
        bool(alert),
        f"total variation {tvd:.2f} (batch: {shares(batch, n_batch)}; reference: "
        f"{shares(reference, n_reference)}), chi-square p={p_value:.2g}",
    )


def distribution_shift(
    signal: str,
    batch: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    *,
    language: str | None = None,
    unit: str = "",
    thresholds: DriftThresholds = DriftThresholds(),
) -> DriftFinding:
    """Two-sample Kolmogorov-Smirnov test of a scalar per row (text length, confidence)."""
    from scipy.stats import ks_2samp

    b = np.asarray(batch, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if min(len(b), len(r)) < thresholds.min_rows:
        return _skipped(signal, language, len(b), len(r), "too few rows to test")
    result = ks_2samp(b, r)
    alert = result.pvalue < thresholds.alpha and result.statistic >= thresholds.ks_statistic
    return DriftFinding(
        signal,
        language,
        float(result.statistic),
        float(result.pvalue),
        len(b),
        len(r),
        bool(alert),
        f"KS {result.statistic:.2f}, median {np.median(b):.3g}{unit} vs {np.median(r):.3g}{unit}"
        f", p={result.pvalue:.2g}",
    )


def classifier_two_sample_test(
    batch: np.ndarray,
    reference: np.ndarray,
    *,
    language: str | None = None,
    rng: np.random.Generator,
    thresholds: DriftThresholds = DriftThresholds(),
    folds: int = 5,
) -> DriftFinding:
    """Can a classifier tell the batch's vectors from the reference's? (module docstring)"""
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    b = np.ascontiguousarray(batch, dtype="float32")
    r = np.ascontiguousarray(reference, dtype="float32")
    if min(len(b), len(r)) < thresholds.min_rows:
        return _skipped("embedding", language, len(b), len(r), "too few rows to test")
    half = MAX_C2ST_ROWS // 2
    if len(b) > half:
        b = b[rng.choice(len(b), size=half, replace=False)]
    if len(r) > half:
        r = r[rng.choice(len(r), size=half, replace=False)]
    x = np.vstack([b, r])
    y = np.concatenate([np.ones(len(b), dtype=np.int64), np.zeros(len(r), dtype=np.int64)])
    splitter = StratifiedKFold(
        n_splits=folds, shuffle=True, random_state=int(rng.integers(2**31 - 1))
    )
    scores = cross_val_predict(
        LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced"),
        x,
        y,
        cv=splitter,
        method="predict_proba",
    )[:, 1]
    auc = float(roc_auc_score(y, scores))
    # AUC is the Mann-Whitney U statistic scaled: its one-sided test is the AUC's own
    # significance, valid for unequal group sizes (an accuracy-vs-majority test is not: with a
    # small batch, "always reference" is already right most of the time).
    p_value = float(mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater").pvalue)
    alert = p_value < thresholds.alpha and auc >= thresholds.auc
    return DriftFinding(
        "embedding",
        language,
        auc,
        p_value,
        len(batch),
        len(reference),
        bool(alert),
        f"a classifier tells the batch from the reference with AUC {auc:.2f} "
        f"(cross-validated; Mann-Whitney p={p_value:.2g})",
    )
