"""Allocator: hand-written numbers, exact expected outputs."""

from __future__ import annotations

import pytest

from selection import InvalidBudgetError, allocate
from selection.allocation import apportion


def test_proportional_exact() -> None:
    a = allocate(100, {"en": 500, "de": 300, "hi": 200}, method="proportional")
    assert a.per_language == {"de": 30, "en": 50, "hi": 20}
    assert a.explanations["en"] == "en: 50 of 100, proportional to 500 unlabeled"
    assert a.total == 100


def test_equal_with_largest_remainder_tie_break_by_code() -> None:
    # 10 / 3 = 3.33 each; the one left over goes to the first code alphabetically
    a = allocate(10, {"en": 100, "de": 100, "hi": 100}, method="equal")
    assert a.per_language == {"de": 4, "en": 3, "hi": 3}
    assert a.explanations["de"] == "de: 4 of 10, equal share"


def test_redistribution_when_a_language_runs_dry() -> None:
    a = allocate(100, {"en": 1000, "de": 1000, "hi": 10}, method="equal")
    assert a.per_language == {"de": 45, "en": 45, "hi": 10}
    assert a.explanations["hi"] == "hi: 10 of 100, equal share, all 10 unlabeled taken"


def test_budget_larger_than_pool_takes_everything() -> None:
    a = allocate(100, {"en": 30, "de": 20}, method="proportional")
    assert a.per_language == {"de": 20, "en": 30}
    assert a.total == 50


def test_min_and_max_per_language() -> None:
    # caps: en min(900,60)=60, de 60, hi 10; minimums 10 each; the remaining 70 by pool size:
    # en's quota 70*900/990 = 63.6 exceeds its room 50 -> en capped at 60, the other 20 to de
    a = allocate(
        100,
        {"en": 900, "de": 90, "hi": 10},
        method="proportional",
        min_per_language=10,
        max_per_language=60,
    )
    assert a.per_language == {"de": 30, "en": 60, "hi": 10}
    assert a.explanations["en"] == (
        "en: 60 of 100, proportional to 900 unlabeled, minimum 10, at max_per_language 60"
    )
    assert a.explanations["hi"] == (
        "hi: 10 of 100, proportional to 10 unlabeled, minimum 10, all 10 unlabeled taken"
    )


def test_max_per_language_limits_total() -> None:
    a = allocate(100, {"en": 500, "de": 500}, method="equal", max_per_language=20)
    assert a.per_language == {"de": 20, "en": 20}
    assert a.total == 40


def test_minimums_exceeding_budget_are_split_equally() -> None:
    a = allocate(5, {"a": 10, "b": 10, "c": 10}, method="proportional", min_per_language=3)
    assert a.per_language == {"a": 2, "b": 2, "c": 1}


def test_need_by_validation_f1() -> None:
    # needs 1-F1 = 0.3, 0.4, 0.8 (sum 1.5): quotas 20, 26.67, 53.33 -> 20, 27, 53
    a = allocate(
        100,
        {"en": 1000, "de": 1000, "hi": 1000},
        method="need",
        f1={"en": 0.7, "de": 0.6, "hi": 0.2},
    )
    assert a.per_language == {"de": 27, "en": 20, "hi": 53}
    assert a.explanations["hi"] == "hi: 53 of 100, lowest validation F1 0.20"
    assert a.explanations["en"] == "en: 20 of 100, validation F1 0.70"


def test_need_language_without_f1_is_treated_as_neediest() -> None:
    a = allocate(10, {"en": 100, "sw": 100}, method="need", f1={"en": 0.5})
    assert a.per_language == {"en": 5, "sw": 5}
    assert "treated as neediest" in a.explanations["sw"]


def test_need_by_uncertainty_when_no_f1() -> None:
    # 7.5 / 2.5 -> equal remainders, larger weight wins the spare unit
    a = allocate(10, {"a": 50, "b": 50}, method="need", uncertainty={"a": 0.3, "b": 0.1})
    assert a.per_language == {"a": 8, "b": 2}
    assert a.explanations["a"] == "a: 8 of 10, highest mean uncertainty 0.30"


def test_need_without_signal_is_an_error() -> None:
    with pytest.raises(ValueError, match="f1"):
        allocate(10, {"a": 5}, method="need")


def test_cold_start_share() -> None:
    # floor(0.2 * 100) = 20 reserved for sw (no labels); the other 80 by pool size 6:3:1
    a = allocate(
        100,
        {"en": 600, "de": 300, "sw": 100},
        method="proportional",
        labeled_counts={"en": 50, "de": 20, "sw": 0},
        cold_start_share=0.2,
    )
    assert a.per_language == {"de": 24, "en": 48, "sw": 28}
    assert a.explanations["sw"] == (
        "sw: 28 of 100, proportional to 100 unlabeled, +20 cold-start share (no labels yet)"
    )


def test_language_with_empty_pool() -> None:
    a = allocate(10, {"en": 100, "xx": 0}, method="equal")
    assert a.per_language == {"en": 10, "xx": 0}
    assert a.explanations["xx"].endswith("no unlabeled examples")


def test_sums_exactly_and_never_exceeds_pool() -> None:
    pools = {"a": 7, "b": 13, "c": 1, "d": 0, "e": 250}
    for budget in range(1, 300, 7):
        for method in ("equal", "proportional"):
            a = allocate(budget, pools, method=method, min_per_language=2)
            assert sum(a.per_language.values()) == min(budget, sum(pools.values()))
            assert all(a.per_language[k] <= pools[k] for k in pools)


def test_to_dict_and_frozen() -> None:
    a = allocate(3, {"en": 1, "de": 5}, method="equal")
    assert a.to_dict() == {
        "method": "equal",
        "budget": 3,
        "total": 3,
        "per_language": {"de": 2, "en": 1},
        "explanations": {
            "de": "de: 2 of 3, equal share",
            "en": "en: 1 of 3, equal share, all 1 unlabeled taken",
        },
    }
    with pytest.raises(AttributeError):
        a.budget = 4  # type: ignore[misc]


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidBudgetError):
        allocate(0, {"en": 5})
    with pytest.raises(ValueError, match="equal"):
        allocate(5, {"en": 5}, method="bogus")
    with pytest.raises(ValueError):
        allocate(5, {"en": -1})


def test_apportion_caps_and_zero_weights() -> None:
    assert apportion(6, {"a": 0, "b": 0}, {"a": 10, "b": 10}) == {"a": 3, "b": 3}
    assert apportion(6, {"a": 1, "b": 1}, {"a": 1, "b": 10}) == {"a": 1, "b": 5}
    with pytest.raises(ValueError):
        apportion(30, {"a": 1}, {"a": 10})
