"""The proxy's out-of-fold predictions (curation.pipeline) come from sklearn's
`cross_val_predict` and equal, bit for bit, the explicit fold loop they replaced."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from curation import pipeline, quality
from selection.proxy import LogisticProxy

# Not sorted, and with a label no example has: the columns must follow this order.
LABEL_NAMES = ["positive", "negative", "neutral", "unused"]


def _dataset(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-length float32 vectors (as the store holds them) around one centre per label."""
    rng = np.random.default_rng(seed)
    counts = {"positive": 40, "negative": 31, "neutral": 9}
    centres = rng.normal(size=(3, 16))
    labels = np.array([name for name, n in counts.items() for _ in range(n)], dtype=object)
    vectors = centres[[LABEL_NAMES.index(v) for v in labels]] + 1.5 * rng.normal(
        size=(len(labels), 16)
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = rng.permutation(len(labels))
    languages = np.array(["de", "en"] * (len(labels) // 2), dtype=object)
    return vectors[order].astype(np.float32), labels[order], languages


def _fold_loop(vectors: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """The code path before cross_val_predict: an explicit StratifiedKFold loop of proxies."""
    folds = min(5, min(np.unique(labels, return_counts=True)[1]))
    strength = LogisticProxy(LABEL_NAMES, random_state=seed).choose_C(vectors, labels)
    out = np.empty((len(labels), len(LABEL_NAMES)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(vectors, labels):
        proxy = LogisticProxy(LABEL_NAMES, C=strength).fit(vectors[train], labels[train])
        out[test] = proxy.predict_proba(vectors[test])
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_out_of_fold_probabilities_equal_the_explicit_fold_loop(seed: int) -> None:
    vectors, labels, languages = _dataset(seed)
    expected = _fold_loop(vectors, labels, seed)
    got = quality.out_of_fold_probabilities(vectors, labels, LABEL_NAMES, seed=seed)
    assert got is not None and got.shape == (80, 4)
    np.testing.assert_array_equal(got, expected)
    assert not got[:, 3].any()  # the label nobody has
    # And so the per-language F1 the allocator reads is unchanged.
    predicted = np.asarray(LABEL_NAMES, dtype=object)[expected.argmax(axis=1)]
    old_f1 = {
        code: float(
            f1_score(
                labels[languages == code],
                predicted[languages == code],
                average="macro",
                zero_division=0,
            )
        )
        for code in ("de", "en")
    }
    assert pipeline._per_language_f1(expected, labels, languages, LABEL_NAMES) == old_f1


def test_no_out_of_fold_probabilities_when_a_class_has_one_example() -> None:
    vectors, labels, _ = _dataset(0)
    labels = labels.copy()
    labels[0] = "unused"
    assert quality.out_of_fold_probabilities(vectors, labels, LABEL_NAMES, seed=0) is None
