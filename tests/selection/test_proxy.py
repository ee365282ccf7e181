"""Uncertainty proxy: label order, missing classes, degenerate training sets, version."""

from __future__ import annotations

import numpy as np
import pytest

from selection import LogisticProxy, ProbabilityModel


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = {"neg": [3.0, 0.0], "neu": [0.0, 3.0], "pos": [-3.0, 0.0]}
    labels = rng.choice(list(centres), size=90)
    X = np.array([centres[c] for c in labels]) + rng.normal(size=(90, 2))
    return X, labels


def test_fixed_label_order_and_probabilities() -> None:
    X, y = _data()
    m = LogisticProxy(["pos", "neu", "neg"]).fit(X, y)
    p = m.predict_proba(X)
    assert m.classes_ == ("pos", "neu", "neg")
    assert p.shape == (90, 3)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert (m.predict(X) == y).mean() > 0.9
    assert not m.degenerate_
    assert isinstance(m, ProbabilityModel)


def test_label_order_inferred_sorted() -> None:
    X, y = _data()
    assert LogisticProxy().fit(X, y).classes_ == ("neg", "neu", "pos")


def test_missing_class_gets_zero_column() -> None:
    X, y = _data()
    keep = y != "neu"
    m = LogisticProxy(["neg", "neu", "pos"]).fit(X[keep], y[keep])
    p = m.predict_proba(X)
    assert m.missing_classes_ == ("neu",)
    assert np.all(p[:, 1] == 0.0)
    assert np.allclose(p.sum(axis=1), 1.0)


def test_fewer_than_two_classes_is_uniform_and_flagged() -> None:
    X, _ = _data()
    m = LogisticProxy(["neg", "neu", "pos"]).fit(X[:5], ["pos"] * 5)
    assert m.degenerate_
    assert np.allclose(m.predict_proba(X), 1 / 3)
    empty = LogisticProxy(["a", "b"]).fit(np.zeros((0, 2)), [])
    assert empty.degenerate_
    assert np.allclose(empty.predict_proba(X), 0.5)


def test_unknown_label_rejected() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="not in the label order"):
        LogisticProxy(["neg", "pos"]).fit(X, y)


def test_version_depends_on_ids_labels_and_params() -> None:
    X, y = _data()
    ids = [f"r{i}" for i in range(len(y))]
    v1 = LogisticProxy().fit(X, y, ids=ids).version
    assert v1 == LogisticProxy().fit(X, y, ids=ids).version
    assert v1 == LogisticProxy().fit(X[::-1], y[::-1], ids=ids[::-1]).version  # order-free
    y2 = y.copy()
    y2[0] = "neu" if y[0] != "neu" else "pos"
    assert LogisticProxy().fit(X, y2, ids=ids).version != v1
    assert LogisticProxy(C=0.5).fit(X, y, ids=ids).version != v1
    assert isinstance(LogisticProxy().fit(X, y).version, str)


def test_predict_before_fit() -> None:
    with pytest.raises(RuntimeError):
        LogisticProxy(["a", "b"]).predict_proba(np.zeros((1, 2)))
    assert "C=1.0" in repr(LogisticProxy())


def test_chunked_prediction_equals_one_call(monkeypatch) -> None:
    import selection.proxy as proxy_module
    from curation.pipeline import _predict_rows

    X, y = _data()
    m = LogisticProxy(["pos", "neu", "neg"]).fit(X, y)
    whole = m._model.predict_proba(X.astype(np.float32))[:, m._present.argsort()]
    monkeypatch.setattr(proxy_module, "PREDICT_CHUNK", 7)  # 90 rows: 13 chunks, last partial
    assert np.allclose(m.predict_proba(X), whole, atol=1e-6)
    rows = np.array([89, 0, 45, 3, 3, 60, 12, 88, 1])
    assert np.allclose(_predict_rows(m, X, rows), whole[rows], atol=1e-6)
