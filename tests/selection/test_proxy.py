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
    assert "C='auto'" in repr(LogisticProxy())


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


def test_auto_C_is_chosen_by_cross_validation_from_the_grid() -> None:
    # Two overlapping classes in 20 dimensions, 18 of them noise: the cross-validated log loss
    # prefers strong regularization over a near-unregularized fit.
    rng = np.random.default_rng(3)
    y = rng.choice(["a", "b"], size=120)
    X = rng.normal(size=(120, 20))
    X[:, 0] += np.where(y == "a", 0.8, -0.8)
    proxy = LogisticProxy(Cs=(0.01, 1000.0)).fit(X, y)
    assert proxy.C == "auto" and proxy.C_ == 0.01
    # the chosen value is the one a fixed-C fit would use: same probabilities
    fixed = LogisticProxy(C=0.01).fit(X, y)
    np.testing.assert_allclose(proxy.predict_proba(X), fixed.predict_proba(X), atol=1e-9)
    # separable, well-sampled classes: weak regularization wins
    X2, y2 = _data()
    assert LogisticProxy(Cs=(0.001, 100.0)).fit(X2, y2).C_ == 100.0


def test_auto_C_leaves_singleton_classes_out_of_the_search() -> None:
    X, y = _data()
    y = y.astype(object)
    y[0] = "rare"
    # the search runs on the classes it can stratify: the same choice as without the singleton
    with_singleton = LogisticProxy(Cs=(0.001, 100.0)).fit(X, y)
    assert with_singleton.C_ == LogisticProxy(Cs=(0.001, 100.0)).choose_C(X[1:], y[1:]) == 100.0
    assert "rare" in with_singleton.classes_


def test_auto_C_falls_back_when_fewer_than_two_classes_can_be_cross_validated() -> None:
    from selection.proxy import FALLBACK_C

    X, _ = _data()
    y = np.array(["a"] * 10 + ["b", "c"])
    assert LogisticProxy(Cs=(0.01, 100.0)).fit(X[:12], y).C_ == FALLBACK_C == 10.0
    assert LogisticProxy(C=5.0).fit(X[:12], y).C_ == 5.0


def test_auto_C_settings_are_validated_and_shown() -> None:
    with pytest.raises(ValueError, match="C must be a positive number or 'auto'"):
        LogisticProxy(C=0)
    with pytest.raises(ValueError, match="Cs must be positive"):
        LogisticProxy(Cs=())
    with pytest.raises(ValueError, match="cv_folds must be >= 2"):
        LogisticProxy(cv_folds=1)
    assert repr(LogisticProxy(["a", "b"], Cs=(1.0, 10.0))) == (
        "LogisticProxy(labels=('a', 'b'), C='auto', Cs=(1.0, 10.0), cv_folds=3, "
        "scoring='neg_log_loss', max_iter=1000, class_weight=None, random_state=0)"
    )
    # the search settings are part of the version: another grid is another proxy
    X, y = _data()
    one = LogisticProxy(Cs=(1.0, 10.0)).fit(X, y).version
    two = LogisticProxy(Cs=(1.0, 30.0)).fit(X, y).version
    assert one != two
