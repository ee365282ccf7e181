"""Simulation on a tiny synthetic set: schema, label counts, plot."""

from __future__ import annotations

import numpy as np
import pytest

from selection import get_strategy
from selection.simulation import plot_curves, simulate


def _split(n: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    classes = np.array(["neg", "neu", "pos"])
    y = classes[rng.integers(0, 3, n)]
    langs = np.array(["en", "hi"])[rng.integers(0, 2, n)]
    centres = {"neg": 0, "neu": 1, "pos": 2}
    X = rng.normal(size=(n, 8))
    for i, c in enumerate(y):
        X[i, centres[c]] += 2.5
        X[i, 3 + (langs[i] == "hi")] += 1.0
    return X.astype("float32"), y.tolist(), langs.tolist()


@pytest.fixture(scope="module")
def data() -> tuple:
    return _split(240, 0), _split(90, 1)


def test_schema_and_label_counts(data: tuple) -> None:
    (X, y, lang), (Xt, yt, lt) = data
    res = simulate(
        X,
        y,
        lang,
        Xt,
        yt,
        lt,
        strategies=["random", "default", ("margin_nodup", get_strategy("margin"))],
        rounds=2,
        batch_size=10,
        seed_size=12,
        n_seeds=2,
        progress=False,
    )
    assert set(res) == {"strategies", "full_pool"}
    assert list(res["strategies"]) == ["random", "default", "margin_nodup"]
    for out in res["strategies"].values():
        assert set(out) == {"aulc_macro_f1", "curves"}
        assert len(out["curves"]) == 2
        for curve in out["curves"]:
            assert [p["labels"] for p in curve] == [12, 22, 32]
            for p in curve:
                assert set(p) == {"labels", "macro_f1", "per_language", "worst_language_f1"}
                assert set(p["per_language"]) == {"en", "hi"}
                assert p["worst_language_f1"] == min(p["per_language"].values())
        aulc = np.mean([np.mean([p["macro_f1"] for p in c]) for c in out["curves"]])
        assert out["aulc_macro_f1"] == pytest.approx(aulc)
    # the same seed set for every strategy: identical first points
    firsts = {n: [c[0]["macro_f1"] for c in o["curves"]] for n, o in res["strategies"].items()}
    assert firsts["random"] == firsts["default"] == firsts["margin_nodup"]
    assert set(res["full_pool"]) == {"macro_f1", "per_language"}
    assert res["full_pool"]["macro_f1"] > 0.6


def test_deterministic_and_allocation(data: tuple) -> None:
    (X, y, lang), (Xt, yt, lt) = data
    kw = dict(
        strategies=["margin"], rounds=2, batch_size=9, seed_size=10, n_seeds=1, progress=False
    )
    a = simulate(X, y, lang, Xt, yt, lt, **kw)
    b = simulate(X, y, lang, Xt, yt, lt, **kw)
    assert a == b
    c = simulate(X, y, lang, Xt, yt, lt, allocation="equal", **kw)
    assert [p["labels"] for p in c["strategies"]["margin"]["curves"][0]] == [10, 19, 28]


def test_invalid_arguments(data: tuple) -> None:
    (X, y, lang), (Xt, yt, lt) = data
    with pytest.raises(ValueError):
        simulate(X, y, lang, Xt, yt, lt, strategies=["random"], seed_size=0, progress=False)
    with pytest.raises(KeyError):
        simulate(X, y, lang, Xt, yt, lt, strategies=["nope"], progress=False)


def test_plot_curves(tmp_path, data: tuple) -> None:  # type: ignore[no-untyped-def]
    (X, y, lang), (Xt, yt, lt) = data
    res = simulate(
        X,
        y,
        lang,
        Xt,
        yt,
        lt,
        strategies=["random", "entropy"],
        rounds=1,
        batch_size=10,
        seed_size=10,
        n_seeds=2,
        progress=False,
    )
    out = plot_curves(res, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
