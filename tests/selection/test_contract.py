"""Contract suite: every registered strategy obeys the same rules."""

from __future__ import annotations

import numpy as np
import pytest

from selection import (
    EmptyPoolError,
    InvalidBudgetError,
    MissingInputError,
    Selection,
    ShapeError,
    available,
    get_strategy,
)
from selection.base import SelectionError

N, D, C = 120, 8, 3


def _inputs(seed: int = 0, n: int = N) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "ids": [f"x{i}" for i in range(n)],
        "probs": rng.dirichlet(np.ones(C), size=n),
        "embeddings": rng.normal(size=(n, D)).astype("float32"),
        "labeled_embeddings": rng.normal(size=(40, D)).astype("float32"),
        "languages": np.array(["en", "de", "hi"])[rng.integers(0, 3, n)],
    }


def _select(name: str, budget: int, seed: int = 0, **over) -> Selection:
    kw = _inputs()
    kw.update(over)
    ids = kw.pop("ids")
    return get_strategy(name).select(ids, budget, rng=np.random.default_rng(seed), **kw)


ALL = available()


def test_registry_lists_all_builtins() -> None:
    assert set(ALL) >= {
        "random",
        "least_confidence",
        "margin",
        "entropy",
        "kcenter",
        "kmeans",
        "typiclust",
        "hybrid",
    }


@pytest.mark.parametrize("name", ALL)
def test_budget_unique_members(name: str) -> None:
    sel = _select(name, 15)
    assert isinstance(sel, Selection)
    assert len(sel.ids) == 15
    assert sel.shortfall == 0
    assert len(set(sel.ids)) == len(sel.ids)
    assert set(sel.ids) <= set(_inputs()["ids"])
    assert len(sel.scores) == len(sel.reasons) == len(sel.ids)
    assert all(isinstance(r, str) and r for r in sel.reasons)
    assert sel.strategy.startswith(type(get_strategy(name)).__name__)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_a_seed(name: str) -> None:
    assert _select(name, 10, seed=3) == _select(name, 10, seed=3)


def test_random_differs_across_seeds() -> None:
    assert _select("random", 10, seed=1).ids != _select("random", 10, seed=2).ids


@pytest.mark.parametrize("name", ALL)
def test_global_rng_untouched(name: str) -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    _select(name, 5)
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("name", ALL)
def test_empty_pool(name: str) -> None:
    with pytest.raises(EmptyPoolError):
        get_strategy(name).select(
            [],
            3,
            probs=np.zeros((0, C)),
            embeddings=np.zeros((0, D), "float32"),
            rng=np.random.default_rng(0),
        )


@pytest.mark.parametrize("name", ALL)
def test_shortfall_when_budget_exceeds_pool(name: str) -> None:
    kw = _inputs(n=7)
    ids = kw.pop("ids")
    sel = get_strategy(name).select(ids, 10, rng=np.random.default_rng(0), **kw)
    assert sorted(sel.ids) == sorted(ids)
    assert sel.shortfall == 3


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "bad",
    [
        {"probs": np.full((N - 1, C), 1 / C)},
        {"probs": np.full((N, C), 0.5)},
        {"probs": np.full(N, 1.0)},
        {"embeddings": np.zeros((N, D, 1), "float32")},
        {"embeddings": np.zeros((N + 1, D), "float32")},
        {"embeddings": np.full((N, D), np.nan, "float32")},
        {"labeled_embeddings": np.zeros((4, D + 1), "float32")},
        {"languages": ["en"] * (N - 2)},
    ],
    ids=[
        "probs-rows",
        "probs-sum",
        "probs-ndim",
        "emb-ndim",
        "emb-rows",
        "emb-nan",
        "labeled-dim",
        "languages-len",
    ],
)
def test_shape_errors(name: str, bad: dict) -> None:
    with pytest.raises(ShapeError):
        _select(name, 5, **bad)


def test_probs_with_nan_is_shape_error() -> None:
    p = np.full((N, C), 1 / C)
    p[3, 0] = np.nan
    with pytest.raises(ShapeError):
        _select("margin", 5, probs=p)


def test_shape_error_is_value_error() -> None:
    assert issubclass(ShapeError, ValueError)
    assert issubclass(ShapeError, SelectionError)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [0, -1, 2.5, True])
def test_invalid_budget(name: str, budget: object) -> None:
    with pytest.raises(InvalidBudgetError):
        _select(name, budget)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL)
def test_missing_input(name: str) -> None:
    strategy = get_strategy(name)
    kw = _inputs()
    ids = kw.pop("ids")
    if not strategy.requires and name != "hybrid":
        # Needs nothing (random): works with neither probabilities nor embeddings.
        chosen = strategy.select(ids, 5, rng=np.random.default_rng(0), probs=None)
        assert len(chosen) == 5 and set(chosen.ids) <= set(ids)
        return
    without = {} if name == "hybrid" else {k: None for k in strategy.requires}
    kw.update(without)
    if name == "hybrid":
        kw.update(probs=None, embeddings=None)
    with pytest.raises(MissingInputError):
        strategy.select(ids, 5, rng=np.random.default_rng(0), **kw)


@pytest.mark.parametrize("name", ALL)
def test_numpy_ids_and_int_ids(name: str) -> None:
    kw = _inputs()
    kw.pop("ids")
    sel = get_strategy(name).select(np.arange(N) * 10, 4, rng=np.random.default_rng(0), **kw)
    assert all(i % 10 == 0 for i in sel.ids)


def test_duplicate_ids_rejected() -> None:
    kw = _inputs()
    ids = kw.pop("ids")
    ids[1] = ids[0]
    with pytest.raises(ShapeError):
        get_strategy("random").select(ids, 3, rng=np.random.default_rng(0), **kw)


def test_rng_must_be_generator() -> None:
    with pytest.raises(TypeError):
        get_strategy("random").select(["a"], 1, rng=0)  # type: ignore[arg-type]


def test_registry_errors_list_valid_names() -> None:
    with pytest.raises(KeyError, match="margin"):
        get_strategy("nope")
    with pytest.raises(TypeError, match="max_similarity"):
        get_strategy("margin", bogus=1)


def test_default_alias_and_repr() -> None:
    s = get_strategy("default")
    assert type(s).__name__ == "Hybrid"
    assert "candidate_factor=" in repr(s)
    assert repr(get_strategy("margin", max_similarity=None)) == "Margin(max_similarity=None)"


def test_register_custom_strategy() -> None:
    from selection import QueryStrategy, register
    from selection.base import Ranking

    @register("first_n_test")
    class FirstN(QueryStrategy):
        name = "first_n_test"

        def rank(self, pool, budget, rng):  # type: ignore[no-untyped-def]
            order = np.arange(pool.size)
            return Ranking(order, np.zeros(pool.size), ["first"] * pool.size)

    from selection import registry

    try:
        assert "first_n_test" in available()
        sel = get_strategy("first_n_test").select(["a", "b", "c"], 2, rng=np.random.default_rng(0))
        assert sel.ids == ("a", "b")
        with pytest.raises(ValueError):
            register("default")(FirstN)
    finally:
        registry._REGISTRY.pop("first_n_test", None)
