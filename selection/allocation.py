"""Per-language budget allocation (pure, exact integer arithmetic).

``allocate`` splits a labeling budget over languages in three stages:

0. **stopped** -- a language in ``stopped`` (more labels stopped paying there, see
   :mod:`selection.stopping`) gets nothing, with the stopping reason as its explanation;
1. **minimums** -- every language gets ``min_per_language`` (never more than it has);
2. **cold start** -- ``floor(cold_start_share * total)`` is split equally over languages with no
   labels yet (``labeled_counts`` == 0);
3. **method** -- the rest is split by weight:

   * ``equal``: every language the same;
   * ``proportional``: weight = unlabeled pool size;
   * ``need``: weight = ``1 - validation macro-F1`` when ``f1`` is given (a language without an
     F1 gets the largest need among the others), else weight = mean proxy ``uncertainty``.

Every stage respects the capacity ``min(unlabeled count, max_per_language)``: a language that
runs dry is capped and its share is redistributed to the others by the same weights. Integers
come from the largest-remainder method (ties: larger remainder, then larger weight, then language
code), computed with exact fractions, so the allocations always sum to
``min(budget, sum of capacities)`` -- that is ``min(budget, total pool)`` without a maximum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from selection.base import InvalidBudgetError

__all__ = ["METHODS", "Allocation", "allocate", "apportion"]

METHODS = ("equal", "proportional", "need")


@dataclass(frozen=True)
class Allocation:
    """Result of :func:`allocate`: integer budget per language and why."""

    per_language: dict[str, int]
    explanations: dict[str, str]
    method: str
    budget: int
    total: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict for storing with a round."""
        return {
            "method": self.method,
            "budget": self.budget,
            "total": self.total,
            "per_language": dict(self.per_language),
            "explanations": dict(self.explanations),
        }


def _frac(x: float | int) -> Fraction:
    if isinstance(x, int):
        return Fraction(x)
    return Fraction(repr(float(x)))


def apportion(
    total: int,
    weights: Mapping[str, float | int | Fraction],
    caps: Mapping[str, int],
) -> dict[str, int]:
    """Split ``total`` into integers proportional to ``weights`` without exceeding ``caps``.

    Capped keys get their cap and the remainder is re-split over the others; the final integer
    split uses largest remainders (ties: larger weight, then key). If all active weights are
    zero the split is equal. ``total`` must not exceed ``sum(caps)``.
    """
    if total > sum(caps.values()):
        raise ValueError("total exceeds the sum of capacities")
    alloc = {k: 0 for k in caps}
    w = {k: (v if isinstance(v, Fraction) else _frac(v)) for k, v in weights.items()}
    active = sorted(k for k in caps if caps[k] > 0)
    remaining = total
    while remaining > 0 and active:
        wsum = sum(w.get(k, Fraction(0)) for k in active)
        eff = {k: (w.get(k, Fraction(0)) if wsum > 0 else Fraction(1)) for k in active}
        esum = sum(eff.values())
        quota = {k: remaining * eff[k] / esum for k in active}
        hit = [k for k in active if quota[k] >= caps[k] - alloc[k]]
        if hit:
            for k in hit:
                remaining -= caps[k] - alloc[k]
                alloc[k] = caps[k]
            active = [k for k in active if k not in hit]
            continue
        floors = {k: math.floor(quota[k]) for k in active}
        for k in active:
            alloc[k] += floors[k]
        left = remaining - sum(floors.values())
        order = sorted(active, key=lambda k: (-(quota[k] - floors[k]), -eff[k], k))
        for k in order[:left]:
            alloc[k] += 1
        remaining = 0
    return alloc


def allocate(
    budget: int,
    pool_sizes: Mapping[str, int],
    *,
    method: str = "proportional",
    f1: Mapping[str, float] | None = None,
    uncertainty: Mapping[str, float] | None = None,
    labeled_counts: Mapping[str, int] | None = None,
    min_per_language: int = 0,
    max_per_language: int | None = None,
    cold_start_share: float = 0.0,
    stopped: Mapping[str, str] | None = None,
    redistribute_stopped: bool = True,
) -> Allocation:
    """Allocate ``budget`` labels over languages (see module docstring for the rules).

    Args:
        budget: global cap, >= 1.
        pool_sizes: unlabeled candidates per language (never allocated beyond).
        method: ``"equal"``, ``"proportional"`` or ``"need"``.
        f1: validation macro-F1 per language (for ``need``).
        uncertainty: mean proxy uncertainty per language (``need`` without ``f1``).
        labeled_counts: labels per language so far (for the cold-start share).
        min_per_language: floor per language (capped by its pool).
        max_per_language: ceiling per language (None = no ceiling).
        cold_start_share: fraction of the budget reserved for languages with no labels.
        stopped: languages where more labels stopped paying (:mod:`selection.stopping`), with
            the reason; they get nothing.
        redistribute_stopped: True: a stopped language's share goes to the others (the budget
            keeps working where it pays); False: it is not spent (the labels are saved), i.e.
            every other language gets what it would have got without stopping.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidBudgetError(f"budget must be an int >= 1, got {budget!r}")
    if method not in METHODS:
        raise ValueError(f"unknown allocation method {method!r}; valid: {', '.join(METHODS)}")
    if min_per_language < 0:
        raise ValueError("min_per_language must be >= 0")
    if max_per_language is not None and max_per_language < max(min_per_language, 0):
        raise ValueError("max_per_language must be >= min_per_language")
    if not 0.0 <= cold_start_share <= 1.0:
        raise ValueError("cold_start_share must be in [0, 1]")
    for lang, n in pool_sizes.items():
        if int(n) != n or n < 0:
            raise ValueError(f"pool size of {lang!r} must be a non-negative int, got {n!r}")
    langs = sorted(pool_sizes)
    if not langs:
        return Allocation({}, {}, method, budget, 0)

    pool = {lang: int(pool_sizes[lang]) for lang in langs}
    ceiling = math.inf if max_per_language is None else max_per_language
    stopped = dict(stopped or {})
    if stopped and not redistribute_stopped:
        unstopped = allocate(
            budget,
            pool_sizes,
            method=method,
            f1=f1,
            uncertainty=uncertainty,
            labeled_counts=labeled_counts,
            min_per_language=min_per_language,
            max_per_language=max_per_language,
            cold_start_share=cold_start_share,
        )
        saved = sum(unstopped.per_language.get(lang, 0) for lang in stopped)
        per_language = {
            lang: 0 if lang in stopped else n for lang, n in unstopped.per_language.items()
        }
        explanations = {
            lang: (
                f"{lang}: 0 of {unstopped.total}, {stopped[lang]} "
                f"({unstopped.per_language.get(lang, 0)} labels saved)"
                if lang in stopped
                else text
            )
            for lang, text in unstopped.explanations.items()
        }
        return Allocation(per_language, explanations, method, budget, unstopped.total - saved)
    caps = {lang: 0 if lang in stopped else int(min(pool[lang], ceiling)) for lang in langs}
    total = min(budget, sum(caps.values()))
    notes: dict[str, list[str]] = {lang: [] for lang in langs}

    # 1. minimums
    mins = {lang: min(min_per_language, caps[lang]) for lang in langs}
    if sum(mins.values()) > total:
        alloc = apportion(total, {lang: 1 for lang in langs}, mins)
    else:
        alloc = dict(mins)
    for lang in langs:
        if min_per_language and alloc[lang]:
            notes[lang].append(f"minimum {min_per_language}")

    # 2. cold start
    if cold_start_share > 0 and labeled_counts is not None:
        cold = [lang for lang in langs if int(labeled_counts.get(lang, 0)) == 0]
        room = {lang: caps[lang] - alloc[lang] for lang in cold}
        reserve = min(
            math.floor(_frac(cold_start_share) * total),
            total - sum(alloc.values()),
            sum(room.values()),
        )
        if cold and reserve > 0:
            extra = apportion(reserve, {lang: 1 for lang in cold}, room)
            for lang in cold:
                alloc[lang] += extra[lang]
                if extra[lang]:
                    notes[lang].append(f"+{extra[lang]} cold-start share (no labels yet)")

    # 3. method
    weights, method_notes = _weights(method, langs, pool, f1, uncertainty)
    rest = total - sum(alloc.values())
    room = {lang: caps[lang] - alloc[lang] for lang in langs}
    extra = apportion(rest, weights, room)
    for lang in langs:
        alloc[lang] += extra[lang]

    explanations = {}
    for lang in langs:
        if lang in stopped:
            explanations[lang] = f"{lang}: 0 of {total}, {stopped[lang]}"
            continue
        parts = [method_notes[lang], *notes[lang]]
        if pool[lang] > 0 and alloc[lang] == pool[lang]:
            parts.append(f"all {pool[lang]} unlabeled taken")
        elif max_per_language is not None and alloc[lang] == max_per_language:
            parts.append(f"at max_per_language {max_per_language}")
        if pool[lang] == 0:
            parts.append("no unlabeled examples")
        explanations[lang] = f"{lang}: {alloc[lang]} of {total}, " + ", ".join(parts)
    return Allocation(
        per_language=alloc,
        explanations=explanations,
        method=method,
        budget=budget,
        total=sum(alloc.values()),
    )


def _weights(
    method: str,
    langs: list[str],
    pool: Mapping[str, int],
    f1: Mapping[str, float] | None,
    uncertainty: Mapping[str, float] | None,
) -> tuple[dict[str, Fraction], dict[str, str]]:
    if method == "equal":
        return {lang: Fraction(1) for lang in langs}, {lang: "equal share" for lang in langs}
    if method == "proportional":
        return (
            {lang: Fraction(pool[lang]) for lang in langs},
            {lang: f"proportional to {pool[lang]} unlabeled" for lang in langs},
        )
    if f1:
        known = {lang: _frac(f1[lang]) for lang in langs if lang in f1}
        for lang, v in known.items():
            if not 0 <= v <= 1:
                raise ValueError(f"F1 of {lang!r} must be in [0, 1], got {float(v)}")
        worst = min(known.values()) if known else Fraction(0)
        need = {lang: 1 - v for lang, v in known.items()}
        top = max(need.values()) if need else Fraction(1)
        weights, notes = {}, {}
        for lang in langs:
            if lang in known:
                weights[lang] = need[lang]
                tag = "lowest validation F1" if known[lang] == worst else "validation F1"
                notes[lang] = f"{tag} {float(known[lang]):.2f}"
            else:
                weights[lang] = top
                notes[lang] = "no validation F1 yet, treated as neediest"
        return weights, notes
    if uncertainty:
        known_u = {lang: _frac(uncertainty[lang]) for lang in langs if lang in uncertainty}
        for lang, v in known_u.items():
            if v < 0:
                raise ValueError(f"uncertainty of {lang!r} must be >= 0")
        best = max(known_u.values()) if known_u else Fraction(1)
        weights, notes = {}, {}
        for lang in langs:
            if lang in known_u:
                weights[lang] = known_u[lang]
                tag = "highest mean uncertainty" if known_u[lang] == best else "mean uncertainty"
                notes[lang] = f"{tag} {float(known_u[lang]):.2f}"
            else:
                weights[lang] = best
                notes[lang] = "no uncertainty estimate, treated as neediest"
        return weights, notes
    raise ValueError("method 'need' requires f1 (validation macro-F1) or uncertainty per language")
