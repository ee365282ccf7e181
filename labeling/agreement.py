"""Inter-annotator agreement on nominal labels: Krippendorff's alpha, Fleiss' kappa, percent.

Input everywhere is a list of *units* (examples), each the list of values the annotators gave it
(one value per annotator; annotators who did not see the unit are simply absent). Units with fewer
than two values carry no information about agreement and are left out.

- Krippendorff's alpha (nominal) handles any number of annotators per unit and missing data, so
  it is the headline figure: 1 = perfect agreement, 0 = chance level, < 0 = systematic
  disagreement. Computed from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's
  Alpha-Reliability"): alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c * n_k.
- Fleiss' kappa, in the usual generalisation to a varying number of ratings per unit (chance
  from the pooled category shares); with equal counts it is Fleiss (1971) exactly.
- Percent agreement is the share of agreeing annotator pairs within a unit, averaged over units
  (Fleiss' P-bar): easy to explain, but not corrected for chance.

Undefined values (no pairable units, or no variation at all so chance agreement is 1) are None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


def _pairable(units: Sequence[Sequence[Hashable]]) -> list[Counter]:
    return [Counter(unit) for unit in units if len(unit) >= 2]


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data with missing values (see module docstring)."""
    counts = _pairable(units)
    if not counts:
        return None
    # Coincidences: each unit with m values contributes its ordered value pairs, weighted 1/(m-1).
    disagreeing = 0.0  # sum over c != k of o_ck
    totals: Counter = Counter()  # n_c, the marginals of the coincidence matrix
    for unit in counts:
        m = sum(unit.values())
        for value, n_value in unit.items():
            totals[value] += n_value  # each value pairs with the m-1 others, weight 1/(m-1)
            disagreeing += n_value * (m - n_value) / (m - 1)
    n = sum(totals.values())
    expected = n * n - sum(count * count for count in totals.values())  # sum_{c!=k} n_c n_k
    if expected == 0:
        return None
    return 1.0 - (n - 1) * disagreeing / expected


def fleiss_kappa(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa, in its form for a varying number (>= 2) of ratings per unit.

    P_i = agreeing ordered pairs / all ordered pairs of unit i; P = mean P_i; chance P_e =
    sum_c p_c^2 with p_c the share of all ratings in category c. With the same number of
    ratings everywhere this is Fleiss (1971) exactly. Units with fewer than two ratings are
    left out.
    """
    observed = percent_agreement(units)  # P: the mean P_i over the same pairable units
    if observed is None:
        return None
    category_totals: Counter = Counter()
    for unit in _pairable(units):
        category_totals.update(unit)
    ratings = sum(category_totals.values())
    chance = sum((total / ratings) ** 2 for total in category_totals.values())
    if chance == 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def percent_agreement(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Mean share of agreeing annotator pairs per unit (units with >= 2 values)."""
    counts = _pairable(units)
    if not counts:
        return None
    shares = []
    for unit in counts:
        m = sum(unit.values())
        shares.append(sum(c * (c - 1) for c in unit.values()) / (m * (m - 1)))
    return sum(shares) / len(shares)


@dataclass(frozen=True)
class AgreementSummary:
    units: int  # units with at least two values
    values: int  # values in those units
    krippendorff_alpha: float | None
    fleiss_kappa: float | None
    percent_agreement: float | None

    def to_dict(self) -> dict:
        return {
            "units": self.units,
            "values": self.values,
            "krippendorff_alpha": self.krippendorff_alpha,
            "fleiss_kappa": self.fleiss_kappa,
            "percent_agreement": self.percent_agreement,
        }


def agreement_summary(units: Sequence[Sequence[Hashable]]) -> AgreementSummary:
    """All three measures at once, over the units with at least two values."""
    pairable = [list(unit) for unit in units if len(unit) >= 2]
    return AgreementSummary(
        units=len(pairable),
        values=sum(len(unit) for unit in pairable),
        krippendorff_alpha=krippendorff_alpha_nominal(pairable),
        fleiss_kappa=fleiss_kappa(pairable),
        percent_agreement=percent_agreement(pairable),
    )
