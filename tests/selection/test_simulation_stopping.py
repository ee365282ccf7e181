"""`simulate(stopping=...)`: a language whose predictions settle stops buying labels."""

from __future__ import annotations

import numpy as np
import pytest

from selection.simulation import simulate
from selection.stopping import StoppingRule


def _split(n: int, seed: int, *, hard_language: str = "hi"):
    """'en' is easy (well-separated classes), 'hi' hard (classes overlap)."""
    rng = np.random.default_rng(seed)
    classes = np.array(["neg", "neu", "pos"])
    y = classes[rng.integers(0, 3, n)]
    langs = np.array(["en", "hi"])[rng.integers(0, 2, n)]
    X = rng.normal(size=(n, 8))
    for i, c in enumerate(y):
        X[i, {"neg": 0, "neu": 1, "pos": 2}[c]] += 1.0 if langs[i] == hard_language else 4.0
    return X.astype("float32"), y.tolist(), langs.tolist()


def test_an_easy_language_stops_and_labels_are_saved() -> None:
    (X, y, lang), (Xt, yt, lt) = _split(1200, 0), _split(400, 1)
    common = dict(
        strategies=["margin"], rounds=8, batch_size=40, seed_size=60, n_seeds=2,
        allocation="equal", progress=False,
    )  # fmt: skip
    plain = simulate(X, y, lang, Xt, yt, lt, **common)
    rule = StoppingRule(window=2, min_kappa=0.98, min_labels=60)
    stopped = simulate(X, y, lang, Xt, yt, lt, stopping=rule, stop_set_size=150, **common)

    stops = stopped["strategies"]["margin"]["stopped_at"]
    assert all("en" in per_seed for per_seed in stops)  # the easy language stops in every seed
    for plain_curve, stopped_curve in zip(
        plain["strategies"]["margin"]["curves"],
        stopped["strategies"]["margin"]["curves"],
        strict=True,
    ):
        saved = plain_curve[-1]["labels"] - stopped_curve[-1]["labels"]
        assert saved >= 60  # at least three rounds of en's 20-label share
        loss = plain_curve[-1]["per_language"]["en"] - stopped_curve[-1]["per_language"]["en"]
        assert loss <= 0.02
    assert "stopped_at" not in plain["strategies"]["margin"]


def test_stopping_needs_an_allocation() -> None:
    (X, y, lang) = _split(100, 0)
    with pytest.raises(ValueError, match="stopping is per language"):
        simulate(X, y, lang, X, y, lang, strategies=["margin"], stopping=StoppingRule())
