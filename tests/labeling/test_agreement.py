"""Agreement measures against hand-computed and published values."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.agreement import (
    agreement_summary,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    percent_agreement,
)

# Three units, two coders: (a, a), (a, b), (b, b). By hand:
#   coincidences o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n_a = n_b = 3, n = 6
#   alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k = 1 - 5 * 2 / 18 = 4/9
#   Fleiss: P_i = 1, 0, 1 -> P = 2/3; p_a = p_b = 1/2 -> Pe = 1/2; kappa = (2/3-1/2)/(1/2) = 1/3
SMALL = [["a", "a"], ["a", "b"], ["b", "b"]]


def test_small_example_by_hand() -> None:
    assert krippendorff_alpha_nominal(SMALL) == pytest.approx(4 / 9)
    assert fleiss_kappa(SMALL) == pytest.approx(1 / 3)
    assert percent_agreement(SMALL) == pytest.approx(2 / 3)


def test_krippendorff_published_example_with_missing_values() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers, 12 units,
    # missing values (None); nominal alpha = 0.743.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*observers, strict=True)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_fleiss_published_example() -> None:
    # Fleiss (1971) / the classic worked example: 10 subjects, 14 raters, 5 categories.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    units = [[category for category, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(units) == pytest.approx(0.210, abs=5e-4)
    assert percent_agreement(units) == pytest.approx(0.378, abs=5e-4)


def test_perfect_and_chance_and_undefined() -> None:
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    # Systematic disagreement is below zero.
    assert krippendorff_alpha_nominal([["a", "b"], ["b", "a"]]) < 0
    # No variation at all: chance agreement is 1, alpha and kappa are undefined.
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None
    assert fleiss_kappa([["a", "a"], ["a", "a"]]) is None
    assert percent_agreement([["a", "a"]]) == 1.0
    # Single ratings carry no agreement information.
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None
    assert percent_agreement([["a"]]) is None


def test_fleiss_with_a_varying_number_of_ratings_by_hand() -> None:
    # (a, a) and (a, b, b): P_i = 1 and 2/6 -> P = 2/3; p_a = 3/5, p_b = 2/5 -> Pe = 13/25;
    # kappa = (2/3 - 13/25) / (12/25) = 11/36.
    assert fleiss_kappa([["a", "a"], ["a", "b", "b"]]) == pytest.approx(11 / 36)
    # Perfect agreement stays 1 whatever the number of ratings per unit.
    assert fleiss_kappa([["a"] * 3, ["b"] * 2, ["c"] * 4]) == pytest.approx(1.0)


def test_summary_uses_units_with_two_values() -> None:
    summary = agreement_summary([*SMALL, ["a"], ["a", "a", "b"]])
    assert summary.units == 4 and summary.values == 9
    # P = (1 + 0 + 1 + 1/3) / 4 = 7/12; p_a = 5/9, p_b = 4/9 -> Pe = 41/81; kappa = 5/32.
    assert summary.fleiss_kappa == pytest.approx(5 / 32)
    assert summary.krippendorff_alpha == pytest.approx(
        krippendorff_alpha_nominal([*SMALL, ["a", "a", "b"]])
    )


# -- against the reference libraries, on seeded random data -----------------------------------


def _random_ratings(seed: int, *, missing: float) -> tuple[np.ndarray, list[list[int]]]:
    """(raters, units) ratings with NaN for a rating not given, and the same as our units."""
    rng = np.random.default_rng(seed)
    raters, n_units, categories = rng.integers(2, 7), rng.integers(15, 60), rng.integers(2, 6)
    # Units lean towards one category, so agreement is above chance but not perfect.
    leaning = rng.integers(0, categories, size=n_units)
    agree = rng.random((raters, n_units)) < 0.6
    ratings = np.where(agree, leaning, rng.integers(0, categories, size=(raters, n_units)))
    data = ratings.astype(float)
    data[rng.random((raters, n_units)) < missing] = np.nan
    units = [[int(v) for v in column if not np.isnan(v)] for column in data.T]
    return data, units


@pytest.mark.parametrize("seed", range(8))
def test_krippendorff_alpha_equals_the_krippendorff_package(seed: int) -> None:
    import krippendorff

    for missing in (0.0, 0.35):  # alpha's formula takes missing ratings
        data, units = _random_ratings(seed, missing=missing)
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        assert abs(krippendorff_alpha_nominal(units) - expected) <= 1e-9


@pytest.mark.parametrize("seed", range(8))
def test_fleiss_kappa_equals_statsmodels(seed: int) -> None:
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

    # statsmodels' Fleiss (1971) needs every unit rated by the same number of raters.
    data, units = _random_ratings(seed, missing=0.0)
    table, _ = aggregate_raters(data.T.astype(int))
    expected = statsmodels_fleiss_kappa(table, method="fleiss")
    assert abs(fleiss_kappa(units) - expected) <= 1e-9
    # Fleiss' P-bar is our percent agreement.
    n = data.shape[0]
    p_bar = ((table * table).sum(axis=1) - n).mean() / (n * (n - 1))
    assert abs(percent_agreement(units) - p_bar) <= 1e-9
