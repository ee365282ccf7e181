"""Hand-computed expectations for the uncertainty scores and strategies."""

from __future__ import annotations

import numpy as np
import pytest

from selection import entropy_scores, get_strategy, least_confidence_scores, margin_scores

# three candidates on which the three measures disagree
P = np.array(
    [
        [0.50, 0.25, 0.25],  # A
        [0.45, 0.45, 0.10],  # B
        [0.50, 0.50, 0.00],  # C
    ]
)
IDS = ["A", "B", "C"]


def test_least_confidence_values() -> None:
    assert least_confidence_scores(P) == pytest.approx([0.50, 0.55, 0.50])


def test_margin_values() -> None:
    # margins 0.25, 0.0, 0.0 -> scores 1 - margin
    assert margin_scores(P) == pytest.approx([0.75, 1.0, 1.0])


def test_entropy_values() -> None:
    # A: 0.5 ln 2 + 2 * 0.25 ln 4 ; B: 2 * 0.45 ln(1/0.45) + 0.1 ln 10 ; C: ln 2
    a = 0.5 * np.log(2) + 0.5 * np.log(4)
    b = 0.9 * np.log(1 / 0.45) + 0.1 * np.log(10)
    assert entropy_scores(P) == pytest.approx([a, b, np.log(2)])
    assert entropy_scores(P) == pytest.approx([1.039721, 0.948916, 0.693147], abs=1e-6)


def test_entropy_of_one_hot_is_zero() -> None:
    assert entropy_scores(np.array([[1.0, 0.0, 0.0]])) == pytest.approx([0.0])


def _rank(name: str, budget: int = 3) -> tuple:
    sel = get_strategy(name).select(IDS, budget, probs=P, rng=np.random.default_rng(0))
    return sel


def test_least_confidence_order_and_reasons() -> None:
    sel = _rank("least_confidence")
    assert sel.ids == ("B", "A", "C")  # tie A/C keeps pool order
    assert sel.scores == pytest.approx((0.55, 0.50, 0.50))
    assert sel.reasons == ("confidence 0.45", "confidence 0.50", "confidence 0.50")


def test_margin_order_and_reasons() -> None:
    sel = _rank("margin")
    assert sel.ids == ("B", "C", "A")
    assert sel.reasons == ("margin 0.00", "margin 0.00", "margin 0.25")


def test_entropy_order() -> None:
    sel = _rank("entropy")
    assert sel.ids == ("A", "B", "C")
    assert sel.reasons[0] == "entropy 1.04"


@pytest.mark.parametrize(
    "name,first", [("least_confidence", "B"), ("margin", "B"), ("entropy", "A")]
)
def test_budget_one(name: str, first: str) -> None:
    assert _rank(name, 1).ids == (first,)


def test_two_class_margin_equals_twice_least_confidence() -> None:
    rng = np.random.default_rng(0)
    p1 = rng.uniform(size=50)
    p = np.c_[p1, 1 - p1]
    assert margin_scores(p) == pytest.approx(2 * least_confidence_scores(p))


def test_random_reason() -> None:
    sel = get_strategy("random").select(IDS, 2, rng=np.random.default_rng(0))
    assert sel.reasons == ("random", "random")
    assert sel.skipped_near_duplicates == 0
