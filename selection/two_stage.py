"""Two-stage selection: per-shard candidates, then the ordinary strategy on their union.

A pool too large for one machine is processed shard by shard (a worker per shard). Each shard
keeps a small set of *candidates* per language (:func:`shard_candidates`); the driver merges
them (:func:`merge_candidates`) and runs the chosen strategy's ordinary ``select`` on the union
(:func:`two_stage_select`) -- tens of thousands of rows instead of millions. Pure code: arrays
in, arrays out, a seeded :class:`numpy.random.Generator` passed in; the distributed engine
(Ray) only calls these functions.

What a shard keeps, per language:

* the top ``per_language_k`` rows by the strategy's own score (the pure scoring functions of
  :mod:`selection.uncertainty`; ``hybrid`` ranks by margin, so it uses ``margin_scores``);
  a strategy without a score of its own (``kcenter``, ``kmeans``, ``typiclust``, ``random``)
  gets a seeded uniform sample instead; optionally at most ``max_score_total`` of these over
  all languages of the shard (the best across languages);
* plus a ``diversity_sample`` of the language (a language with at most ``k + diversity_sample``
  rows is kept whole):

  - ``"uniform"`` (default): a seeded uniform sample of the whole language (score-kept rows
    included, flagged ``Candidates.sampled``). It is an unbiased sample of the
    language's density, which is what the density-based steps downstream need: ``kmeans``
    clusters it (the single-machine ``KMeansDiversity`` already clusters a uniform sub-sample
    of large pools), TypiClust's typicality and ``hybrid``'s coverage counts are neighbour
    counts against it. k-means++ seeding or farthest-point sampling would over-represent
    outliers and bend exactly those counts.
  - ``"farthest"``: greedy farthest-point (k-center) on the rest of the language's unit
    vectors, seeded from the labeled set and the score-kept rows -- the right sample for
    ``kcenter`` only, whose objective is the covering radius and so is decided by the outliers
    a uniform sample misses. Greedy k-center on each part and again on the union of the parts
    is a composable core-set for k-center (Indyk, Mahabadi, Mahdian & Mirrokni, 2014,
    *Composable core-sets for diversity and coverage maximization*, PODS; Malkomes et al.,
    2015, *Fast distributed k-center clustering with outliers on massive data*, NeurIPS): the
    union's covering radius is within a constant factor (4) of the best possible, whatever the
    partition.

:func:`plan_shards` picks these settings for a strategy and budget from the per-language counts
(:class:`LanguageStats`) of a first, cheap pass over the shards (the scoring pass computes them
anyway).

Why this matches the single-machine result
------------------------------------------
*Pure uncertainty strategies* (``margin``, ``entropy``, ``least_confidence``) with the
near-duplicate guard off (``max_similarity=None``) take the global top-``budget`` set ``S`` by a
per-row score (ties by pool order). Proof that ``S`` is inside the union when every shard keeps,
per language ``L``, its top ``k_L >= budget`` and, over all languages, its top ``>= budget``:
any ``x`` in ``S`` from shard ``s`` and language ``L`` is beaten only by rows that are also in
``S``, so its rank inside ``s ∩ L`` and inside ``s`` is at most ``|S ∩ s| <= budget`` -- it is
kept. The union holds every row of ``S`` with its exact score and pool order (shards are merged
in pool order, rows in shard order), so ``select`` on the union returns the same ids in the same
order. With the guard on, the result stays identical as long as each shard kept ``budget`` plus
the number of rows the guard skips; :func:`plan_shards` adds ``guard_slack`` for that.

The same argument holds with ``score_threshold`` (the pool-wide ``budget``-th best score from
the first pass): every row of ``S`` reaches it, so no shard drops one.

*Diversity and hybrid strategies* look at the geometry of the whole pool (coverage, clusters,
farthest points), which the union only samples, so their two-stage result is an approximation.
For ``hybrid`` (the default) the two-stage path keeps what can be kept exactly: the language
allocation is computed from the full pool's per-language counts and mean uncertainty (carried
in :class:`LanguageStats`, not from the union, whose proportions the filter skews) and each
language's margin prefilter (``candidate_factor * share`` rows) is exactly the single-machine
one. What differs is the coverage reference: the single machine draws a uniform sample of
``max_reference`` rows of the language (all of them when fewer); the shards draw the same number
uniformly, spread over shards. A language that fits is kept whole and the result is identical;
a larger one gets a different uniform draw of the same size -- the variation the single machine
shows between two seeds, which is what tests/selection/test_two_stage.py and
benchmarks/two_stage_10m.py measure (overlap of ids and mean margin of the picks; k-center
covering radius and k-means mean distance for the diversity strategies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from selection.allocation import allocate
from selection.base import (
    EmptyPoolError,
    InvalidBudgetError,
    MissingInputError,
    Pool,
    QueryStrategy,
    Ranking,
    Selection,
    ShapeError,
    validate_inputs,
)
from selection.diversity import kcenter_greedy
from selection.hybrid import Hybrid
from selection.registry import get_strategy
from selection.uncertainty import entropy_scores, least_confidence_scores, margin_scores
from selection.vectors import l2_normalize

__all__ = [
    "DIVERSITY_METHODS",
    "Candidates",
    "LanguageStats",
    "ShardPlan",
    "language_stats",
    "merge_candidates",
    "per_language_plan",
    "plan_shards",
    "score_function_for",
    "shard_candidates",
    "stats_top_k",
    "two_stage_select",
]

ScoreFunction = Callable[[np.ndarray], np.ndarray]

DIVERSITY_METHODS = ("uniform", "farthest")

#: strategy name -> its pure score (higher = preferred); hybrid's prefilter ranks by margin
_SCORE_FUNCTIONS: dict[str, ScoreFunction] = {
    "margin": margin_scores,
    "entropy": entropy_scores,
    "least_confidence": least_confidence_scores,
    "hybrid": margin_scores,
}

#: the language code used when a pool has no languages
NO_LANGUAGE = ""


def score_function_for(strategy: QueryStrategy | str) -> ScoreFunction | None:
    """The pure score a shard ranks by for ``strategy`` (None: no score, uniform sample)."""
    name = strategy if isinstance(strategy, str) else strategy.name
    if name == "default":
        name = Hybrid.name
    return _SCORE_FUNCTIONS.get(name)


# ---------------------------------------------------------------------------------------------
# per-language statistics of whole shards
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LanguageStats:
    """Per-language facts about whole shards, from a first cheap pass (the scoring pass).

    * ``rows`` and ``uncertainty_sum`` (sums of margin scores, ``1 - margin``): summed over
      shards they give the full pool's sizes and mean uncertainty per language, which
      ``hybrid``'s language allocation needs and the union of candidates cannot provide
      (``uncertainty_sum`` is empty without probabilities);
    * ``top_scores`` (optional): each language's best ``top_k`` strategy scores, descending.
      Merged over shards they give the global score a row must reach to be among a language's
      (or the pool's) best ``k`` -- the threshold that lets each shard keep only rows that can
      make it, instead of ``k`` rows per shard.
    """

    rows: dict[str, int] = field(default_factory=dict)
    uncertainty_sum: dict[str, float] = field(default_factory=dict)
    top_scores: dict[str, np.ndarray] = field(default_factory=dict)
    top_k: int = 0

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def mean_uncertainty(self) -> dict[str, float]:
        return {c: self.uncertainty_sum[c] / self.rows[c] for c in self.uncertainty_sum}

    def __add__(self, other: LanguageStats) -> LanguageStats:
        rows = dict(self.rows)
        for c, n in other.rows.items():
            rows[c] = rows.get(c, 0) + n
        sums = dict(self.uncertainty_sum)
        for c, u in other.uncertainty_sum.items():
            sums[c] = sums.get(c, 0.0) + u
        tops = dict(self.top_scores)
        for c, t in other.top_scores.items():
            if c in tops:
                # both hold their best top_k; the best top_k of the two is among them
                both = np.sort(np.concatenate([tops[c], t]))[::-1]
                tops[c] = both[: max(self.top_k, other.top_k)]
            else:
                tops[c] = t
        return LanguageStats(
            rows=dict(sorted(rows.items())),
            uncertainty_sum=sums,
            top_scores=tops,
            top_k=max(self.top_k, other.top_k),
        )

    @classmethod
    def merge(cls, parts: Sequence[LanguageStats]) -> LanguageStats:
        out = cls()
        for p in parts:
            out = out + p
        return out

    def kth_score(self, k: int, *, code: str | None = None) -> float:
        """The ``k``-th best score of one language (``code``) or of the whole pool (None);
        ``-inf`` when fewer than ``k`` scores are known. Needs ``top_scores`` with ``top_k >= k``.
        """
        if k < 1:
            return float("inf")
        if code is None:
            known = np.concatenate([*self.top_scores.values(), np.zeros(0)])
            known = np.sort(known)[::-1]
        else:
            known = self.top_scores.get(code, np.zeros(0))
        return float(known[k - 1]) if len(known) >= k else float("-inf")


def language_stats(
    languages: Sequence[str] | np.ndarray | None,
    *,
    probs: np.ndarray | None,
    n_rows: int,
    strategy_score: ScoreFunction | None = None,
    top_k: int = 0,
) -> LanguageStats:
    """:class:`LanguageStats` of one shard (``languages`` None: everything in one group);
    ``top_k > 0`` with ``strategy_score`` also records each language's best ``top_k`` scores."""
    langs = _languages(languages, n_rows)
    codes, inverse = np.unique(langs, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(codes))
    rows = {str(c): int(n) for c, n in zip(codes, counts, strict=True)}
    sums: dict[str, float] = {}
    tops: dict[str, np.ndarray] = {}
    if probs is not None and n_rows:
        p = np.asarray(probs, dtype=np.float64)
        unc = margin_scores(p)
        per = np.bincount(inverse, weights=unc, minlength=len(codes))
        sums = {str(c): float(u) for c, u in zip(codes, per, strict=True)}
        if strategy_score is not None and top_k > 0:
            scores = np.asarray(strategy_score(p), dtype=np.float64)
            for j, c in enumerate(codes):
                own = scores[inverse == j]
                k = min(top_k, len(own))
                best = own[np.argpartition(-own, k - 1)[:k]] if k < len(own) else own
                tops[str(c)] = np.sort(best)[::-1]
    return LanguageStats(
        rows=rows, uncertainty_sum=sums, top_scores=tops, top_k=top_k if tops else 0
    )


# ---------------------------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidates:
    """The rows one shard (or the union of shards) keeps, in pool order.

    Attributes:
        ids: candidate ids (1-D array).
        probs: (n, n_classes) float64, or None.
        embeddings: (n, d) float32 C-contiguous, or None. The caller's vectors, unnormalised.
        languages: n language codes (object array; ``""`` when the pool has none).
        by_score: True where the row was kept for its score.
        sampled: True where the row is in the diversity sample (a row can be both; a row of a
            small language kept whole can be neither).
        stats: :class:`LanguageStats` of all rows the shard(s) saw, kept or not.
    """

    ids: np.ndarray
    probs: np.ndarray | None
    embeddings: np.ndarray | None
    languages: np.ndarray
    by_score: np.ndarray
    sampled: np.ndarray
    stats: LanguageStats

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def counts(self) -> dict[str, int]:
        """Candidates kept per language."""
        codes, n = np.unique(self.languages, return_counts=True)
        return {str(c): int(k) for c, k in zip(codes, n, strict=True)}


def _languages(languages: Sequence[str] | np.ndarray | None, n: int) -> np.ndarray:
    if languages is None:
        return np.full(n, NO_LANGUAGE, dtype=object)
    if isinstance(languages, str):
        raise ShapeError("languages must be a sequence of codes, not a single string")
    langs = np.asarray(languages, dtype=object)
    if langs.ndim != 1 or langs.shape[0] != n:
        raise ShapeError(f"languages must have one code per id ({n}), got shape {langs.shape}")
    return langs


def _check_k(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidBudgetError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


def shard_candidates(
    ids: Sequence[Hashable] | np.ndarray,
    *,
    probs: np.ndarray | None,
    embeddings: np.ndarray | None,
    languages: Sequence[str] | np.ndarray | None,
    strategy_score: ScoreFunction | None,
    per_language_k: int | Mapping[str, int],
    diversity_sample: int,
    rng: np.random.Generator,
    diversity_method: str = "uniform",
    max_score_total: int | None = None,
    score_threshold: float | Mapping[str, float] | None = None,
    labeled_embeddings: np.ndarray | None = None,
    normalize: bool = True,
) -> Candidates:
    """What one shard keeps: per language, its top ``per_language_k`` rows by
    ``strategy_score(probs)`` (a seeded uniform sample when ``strategy_score`` is None) plus
    ``diversity_sample`` rows from the rest of the language (``diversity_method``, see the
    module docstring). A language with at most ``k + diversity_sample`` rows keeps all of them.

    Args:
        ids: the shard's ids, in pool order.
        probs: (n, n_classes) probabilities; needed when ``strategy_score`` is given.
        embeddings: (n, d) vectors; needed for ``diversity_method="farthest"``.
        languages: n language codes, or None (one group).
        strategy_score: pure score, higher = preferred (see :func:`score_function_for`).
        per_language_k: score-ranked rows per language; a mapping gives each language its own
            (languages missing from it get 0).
        diversity_sample: extra rows per language.
        rng: seeded generator (uniform samples, the farthest-point start).
        diversity_method: ``"uniform"`` or ``"farthest"``.
        max_score_total: at most this many score-ranked rows over all languages of the shard
            (the best across languages); None = no cap.
        score_threshold: keep a score-ranked row only if its score is >= this (one value, or
            one per language): the pool-wide ``k``-th best score from a first pass
            (:meth:`LanguageStats.kth_score`), so that shards together keep about ``k`` rows
            instead of ``k`` each. Rows that reach it are never dropped, so exactness holds.
        labeled_embeddings: labeled vectors that seed the farthest-point sample.
        normalize: farthest-point on L2-normalised vectors (cosine geometry, as ``kcenter``).

    Ties in the score keep pool order, as the strategies' stable sorts do. Rows come back in
    shard order. An empty shard gives empty candidates (an empty union is an error later).
    """
    if diversity_method not in DIVERSITY_METHODS:
        raise ValueError(
            f"diversity_method must be one of {DIVERSITY_METHODS}, got {diversity_method!r}"
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    ids_arr = np.asarray(ids)
    if ids_arr.ndim != 1:
        raise ShapeError(f"ids must be 1-D, got shape {ids_arr.shape}")
    n = ids_arr.shape[0]
    langs = _languages(languages, n)
    p = None if probs is None else np.asarray(probs, dtype=np.float64)
    if p is not None and (p.ndim != 2 or p.shape[0] != n):
        raise ShapeError(f"probs must be (n, n_classes) with n={n}, got shape {p.shape}")
    x = None if embeddings is None else np.ascontiguousarray(embeddings, dtype="float32")
    if x is not None and (x.ndim != 2 or x.shape[0] != n):
        raise ShapeError(f"embeddings must be (n, dim) with n={n}, got shape {x.shape}")
    if strategy_score is not None and p is None:
        raise MissingInputError("shard_candidates: strategy_score needs probs; got None")
    if diversity_method == "farthest" and diversity_sample > 0 and x is None:
        raise MissingInputError("shard_candidates: diversity_method='farthest' needs embeddings")
    diversity_sample = _check_k(diversity_sample, "diversity_sample")
    if max_score_total is not None:
        max_score_total = _check_k(max_score_total, "max_score_total")

    stats = language_stats(langs, probs=p, n_rows=n)
    scores = None if strategy_score is None or n == 0 else np.asarray(strategy_score(p))
    labeled_unit = None
    if diversity_method == "farthest" and labeled_embeddings is not None:
        lab = np.ascontiguousarray(labeled_embeddings, dtype="float32")
        if lab.ndim == 2 and lab.shape[0] > 0:
            labeled_unit = l2_normalize(lab) if normalize else lab

    score_rows: list[np.ndarray] = []
    language_rows: list[tuple[np.ndarray, int]] = []
    for code in stats.rows:
        rows = np.flatnonzero(langs == code)
        k = (
            _check_k(per_language_k.get(code, 0), f"per_language_k[{code!r}]")
            if isinstance(per_language_k, Mapping)
            else _check_k(per_language_k, "per_language_k")
        )
        k = min(k, len(rows))
        if scores is None:
            top = np.sort(rng.choice(rows, size=k, replace=False)) if k else rows[:0]
        else:
            # stable sort on -score: ties keep pool order, as the strategies' own sort does
            top = rows[np.argsort(-scores[rows], kind="stable")[:k]]
            if score_threshold is not None:
                bar = (
                    score_threshold.get(code, -np.inf)
                    if isinstance(score_threshold, Mapping)
                    else score_threshold
                )
                top = top[scores[top] >= bar]
        score_rows.append(top)
        language_rows.append((rows, k))
    kept_by_score = np.concatenate(score_rows) if score_rows else np.zeros(0, np.int64)
    if max_score_total is not None and len(kept_by_score) > max_score_total:
        if scores is None:
            kept_by_score = rng.choice(kept_by_score, size=max_score_total, replace=False)
        else:
            # rows are already each language's best; the best across languages, ties by position
            kept_by_score = np.sort(kept_by_score)
            order = np.argsort(-scores[kept_by_score], kind="stable")
            kept_by_score = kept_by_score[order[:max_score_total]]
    score_mask = np.zeros(n, dtype=bool)
    score_mask[kept_by_score] = True

    sample_mask = np.zeros(n, dtype=bool)
    whole_mask = np.zeros(n, dtype=bool)
    if diversity_sample:
        for rows, k in language_rows:
            if diversity_method == "uniform":
                # drawn from the whole language, score-kept rows included: an unbiased sample of
                # the language's density (hybrid's coverage reference). A language that fits in
                # k + diversity_sample rows is kept whole.
                m = min(diversity_sample, len(rows))
                sampled = rows if m == len(rows) else rng.choice(rows, size=m, replace=False)
                sample_mask[sampled] = True
                if len(rows) <= k + diversity_sample:
                    whole_mask[rows] = True
                continue
            assert x is not None
            rest = rows[~score_mask[rows]]
            m = min(diversity_sample, len(rest))
            if m == len(rest):
                sample_mask[rest] = True
                continue
            sub = l2_normalize(x[rest]) if normalize else x[rest]
            # the rows already kept for their score count as centres too
            centres = x[rows[score_mask[rows]]]
            if len(centres):
                centres = l2_normalize(centres) if normalize else centres
                seed = centres if labeled_unit is None else np.vstack([labeled_unit, centres])
            else:
                seed = labeled_unit
            picks, _ = kcenter_greedy(sub, m, labeled=seed, rng=rng)
            sample_mask[rest[picks]] = True

    keep = np.flatnonzero(score_mask | sample_mask | whole_mask)
    return Candidates(
        ids=ids_arr[keep],
        probs=None if p is None else np.ascontiguousarray(p[keep]),
        embeddings=None if x is None else np.ascontiguousarray(x[keep]),
        languages=langs[keep],
        by_score=score_mask[keep],
        sampled=sample_mask[keep],
        stats=stats,
    )


def merge_candidates(parts: Sequence[Candidates]) -> Candidates:
    """Union of the shards' candidates, in the order given (pass shards in pool order so that
    ties break as they would on one machine).

    Raises:
        ShapeError: the parts disagree on having probs/embeddings, or on their widths.
    """
    if not parts:
        raise EmptyPoolError("no shards: nothing to merge")
    has_probs = {p.probs is not None for p in parts if len(p)}
    has_emb = {p.embeddings is not None for p in parts if len(p)}
    if len(has_probs) > 1 or len(has_emb) > 1:
        raise ShapeError("every shard must give probs (and embeddings) alike, or none")
    nonempty = [p for p in parts if len(p)] or [parts[0]]
    probs = None
    if nonempty[0].probs is not None:
        widths = {p.probs.shape[1] for p in nonempty if p.probs is not None}
        if len(widths) > 1:
            raise ShapeError(f"shards disagree on the number of classes: {sorted(widths)}")
        probs = np.concatenate([p.probs for p in nonempty if p.probs is not None])
    embeddings = None
    if nonempty[0].embeddings is not None:
        dims = {p.embeddings.shape[1] for p in nonempty if p.embeddings is not None}
        if len(dims) > 1:
            raise ShapeError(f"shards disagree on the embedding dimension: {sorted(dims)}")
        embeddings = np.ascontiguousarray(
            np.concatenate([p.embeddings for p in nonempty if p.embeddings is not None]),
            dtype="float32",
        )
    return Candidates(
        ids=np.concatenate([p.ids for p in nonempty]),
        probs=probs,
        embeddings=embeddings,
        languages=np.concatenate([p.languages for p in nonempty]).astype(object),
        by_score=np.concatenate([p.by_score for p in nonempty]),
        sampled=np.concatenate([p.sampled for p in nonempty]),
        stats=LanguageStats.merge([p.stats for p in parts]),
    )


# ---------------------------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardPlan:
    """Settings of :func:`shard_candidates` for one strategy and budget (see
    :func:`plan_shards`). ``kwargs()`` gives them as keyword arguments."""

    strategy_score: ScoreFunction | None
    per_language_k: int | dict[str, int]  # one number: the same for every language
    diversity_sample: int
    diversity_method: str = "uniform"
    max_score_total: int | None = None
    score_threshold: float | dict[str, float] | None = None

    def kwargs(self) -> dict[str, object]:
        return {
            "score_threshold": self.score_threshold,
            "strategy_score": self.strategy_score,
            "per_language_k": self.per_language_k,
            "diversity_sample": self.diversity_sample,
            "diversity_method": self.diversity_method,
            "max_score_total": self.max_score_total,
        }

    def __repr__(self) -> str:
        score = getattr(self.strategy_score, "__name__", None)
        return (
            f"ShardPlan(strategy_score={score}, per_language_k={self.per_language_k!r}, "
            f"diversity_sample={self.diversity_sample}, "
            f"diversity_method={self.diversity_method!r}, "
            f"max_score_total={self.max_score_total}, "
            f"score_threshold={self.score_threshold!r})"
        )


def plan_shards(
    strategy: QueryStrategy | str,
    budget: int,
    *,
    stats: LanguageStats,
    n_shards: int,
    guard_slack: float = 0.5,
    reference_per_language: int | None = None,
) -> ShardPlan:
    """Per-shard settings that make the two-stage result exact where it can be (uncertainty
    strategies; hybrid's allocation and prefilter) and a fair sample elsewhere.

    * ``margin``/``entropy``/``least_confidence``: top ``budget`` per language and per shard
      (``budget * (1 + guard_slack)`` when the near-duplicate guard is on); no diversity sample.
    * ``hybrid`` (warm): each language's exact prefilter ``candidate_factor * share`` (share from
      the full pool's ``stats``, as on one machine) plus a uniform sample of
      ``reference_per_language`` (default: the strategy's ``max_reference``) spread over shards,
      which stands in for the language's coverage reference (and serves the cold start too).
    * ``kcenter``: farthest-point, ``budget`` per language per shard (the composable core-set).
    * ``kmeans``/``typiclust``/``random``: a uniform sample of
      ``reference_per_language`` (default 200,000, ``KMeansDiversity``'s own sub-sample) per
      language spread over shards.

    Args:
        strategy: a strategy (or registry name) -- its settings are read.
        budget: the final budget (>= 1).
        stats: :class:`LanguageStats` of the whole pool (sum of the shards').
        n_shards: number of shards the sample is spread over.
        guard_slack: extra fraction of ``budget`` kept for the near-duplicate guard to skip.
        reference_per_language: override of the per-language uniform sample (over all shards).

    When ``stats`` carries ``top_scores`` with ``top_k >= stats_top_k(strategy, budget)`` the
    plan also sets ``score_threshold`` (the pool-wide ``k``-th best score), so that all shards
    together keep about ``k`` score-ranked rows rather than ``k`` each.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise InvalidBudgetError(f"budget must be an int >= 1, got {budget!r}")
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    codes = list(stats.rows)
    score = score_function_for(strat)

    def spread(total: int) -> int:
        return math.ceil(total / n_shards)

    if isinstance(strat, Hybrid):
        reference = (
            strat.max_reference if reference_per_language is None else reference_per_language
        )
        if strat.language_balance is None or not stats.uncertainty_sum:
            k = {c: strat.candidate_factor * budget for c in codes}
        else:
            shares = _hybrid_shares(strat, budget, stats)
            k = {c: strat.candidate_factor * shares[c] for c in codes}
        bars = None
        if k and stats.top_k >= max(k.values()):
            bars = {c: stats.kth_score(k[c], code=c) for c in codes}
        return ShardPlan(score, k, spread(reference), "uniform", None, bars)
    if score is not None:
        k_all = _score_k(strat, budget, guard_slack)
        bar = stats.kth_score(k_all) if stats.top_k >= k_all else None
        return ShardPlan(score, dict.fromkeys(codes, k_all), 0, "uniform", k_all, bar)
    if strat.name == "kcenter":
        return ShardPlan(None, dict.fromkeys(codes, 0), budget, "farthest")
    reference = 200_000 if reference_per_language is None else reference_per_language
    return ShardPlan(None, dict.fromkeys(codes, 0), spread(reference), "uniform")


def per_language_plan(
    strategy: QueryStrategy | str,
    budget: int,
    *,
    n_shards: int,
    has_probs: bool = True,
    control: int = 0,
    guard_slack: float = 0.5,
) -> ShardPlan:
    """Single-pass settings for a caller that selects *per language* with its own quotas
    (``curate select``: the allocator splits ``budget`` over languages, then the strategy runs
    on each language's candidates), when the quotas are not known before the pass.

    No quota exceeds ``budget``, so every shard keeps, per language, what the strategy needs
    for a quota of ``budget``: the top ``budget`` by score (``budget * (1 + guard_slack)``
    with the near-duplicate guard; ``candidate_factor * budget``, hybrid's exact prefilter,
    for ``hybrid``), never capped across languages (each language is selected on its own).
    The diversity sample is hybrid's coverage reference (``max_reference`` per language over all
    shards, uniform), ``kcenter``'s farthest points, or ``kmeans``'s uniform sub-sample, and at
    least ``control`` uniform rows per language over all shards, from which the caller draws its
    random control slice. ``has_probs`` False (no proxy yet: the cold start) keeps only samples.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise InvalidBudgetError(f"budget must be an int >= 1, got {budget!r}")
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    score = score_function_for(strat) if has_probs else None

    def spread(total: int) -> int:
        return math.ceil(total / n_shards)

    controls = spread(control) if control > 0 else 0
    if isinstance(strat, Hybrid):
        k = strat.candidate_factor * budget if score is not None else 0
        sample = spread(max(strat.max_reference, control))
        return ShardPlan(score, k, sample, "uniform")
    if score is not None:
        return ShardPlan(score, _score_k(strat, budget, guard_slack), controls, "uniform")
    if strat.name == "kcenter":
        return ShardPlan(None, 0, budget + controls, "farthest")
    return ShardPlan(None, 0, spread(max(200_000, control)), "uniform")


def stats_top_k(strategy: QueryStrategy | str, budget: int, *, guard_slack: float = 0.5) -> int:
    """How many best scores per language the first pass should record
    (:func:`language_stats` ``top_k``) for :func:`plan_shards` to set thresholds; 0 for
    strategies without a score. Hybrid's per-language prefilter is at most
    ``candidate_factor * budget`` (a language's share is not known before the pass)."""
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if score_function_for(strat) is None:
        return 0
    if isinstance(strat, Hybrid):
        return strat.candidate_factor * budget
    return _score_k(strat, budget, guard_slack)


def _score_k(strategy: QueryStrategy, budget: int, guard_slack: float) -> int:
    if strategy.max_similarity is None:
        return budget
    return math.ceil(budget * (1.0 + guard_slack))


def _hybrid_shares(strategy: Hybrid, budget: int, stats: LanguageStats) -> dict[str, int]:
    """The per-language shares ``Hybrid.rank`` computes on the whole pool."""
    assert strategy.language_balance is not None
    return allocate(
        budget,
        dict(stats.rows),
        method=strategy.language_balance,
        uncertainty=stats.mean_uncertainty(),
    ).per_language


# ---------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------
def two_stage_select(
    shards: Sequence[Candidates] | Candidates,
    strategy: QueryStrategy | str,
    budget: int,
    *,
    labeled_embeddings: np.ndarray | None = None,
    rng: np.random.Generator,
) -> Selection:
    """Run ``strategy`` on the union of the shards' candidates.

    Every strategy runs its ordinary ``select`` on the union, except ``hybrid`` in its warm
    stage with language balancing: there the union's language proportions and mean
    uncertainties are not the pool's, so the shares are computed from the full pool's
    :class:`LanguageStats` (exactly as ``Hybrid.rank`` would on one machine) and then
    ``Hybrid``'s own per-language step, near-duplicate guard and ordering run on the union --
    on a union that is the whole pool the result is the single-machine one.

    Raises:
        EmptyPoolError: no shard kept any candidate.
        InvalidBudgetError: ``budget`` is not an int >= 1.
    """
    union = shards if isinstance(shards, Candidates) else merge_candidates(shards)
    if len(union) == 0:
        raise EmptyPoolError("no candidates: every shard was empty")
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    has_languages = not np.all(union.languages == NO_LANGUAGE)
    languages = union.languages if has_languages else None
    pool = validate_inputs(
        union.ids,
        budget,
        probs=union.probs,
        embeddings=union.embeddings,
        labeled_embeddings=labeled_embeddings,
        languages=languages,
        rng=rng,
    )
    per_language = (
        isinstance(strat, Hybrid)
        and strat.language_balance is not None
        and has_languages
        and pool.probs is not None
        and pool.embeddings is not None
        and strat.stage(pool) == "warm"
    )
    if not per_language:
        return strat._select_pool(pool, budget, rng)
    assert isinstance(strat, Hybrid)
    return _hybrid_by_language(strat, pool, union, budget, rng=rng)


def _hybrid_by_language(
    strategy: Hybrid, pool: Pool, union: Candidates, budget: int, *, rng: np.random.Generator
) -> Selection:
    """``Hybrid.rank`` on the union with the full pool's shares: the same per-language step,
    the same near-duplicate guard across languages, the same final order.

    A language the shards kept whole runs ``Hybrid._warm`` as is; a sampled one runs it with the
    diversity sample as the coverage reference (``reference=``).
    Both are private hooks because ``Hybrid`` takes its shares and its reference only from the
    pool it is given; public ones would let this call ``select`` instead.
    """
    stats = union.stats
    assert pool.probs is not None and pool.languages is not None
    shares = _hybrid_shares(strategy, budget, stats)
    unc = margin_scores(pool.probs)
    guard = strategy._guard(pool)
    labeled_unit = pool.labeled_unit()
    order: list[int] = []
    scores: list[float] = []
    reasons: list[str] = []
    for code in sorted(set(pool.languages.tolist())):
        b = shares.get(code, 0)
        if b < 1:
            continue
        positions = np.flatnonzero(pool.languages == code)
        if len(positions) == stats.rows.get(code, 0):
            cand, why = strategy._warm(pool, positions, b, rng, unc, labeled_unit)
        else:
            reference = positions[union.sampled[positions]]
            cand, why = strategy._warm(
                pool,
                positions,
                b,
                rng,
                unc,
                labeled_unit,
                # k-means diversity looks at the prefiltered candidates only: exact on the union
                reference=reference if len(reference) else None,
            )
        keep = guard.walk(cand, b) if guard is not None else list(range(min(b, len(cand))))
        for j in keep:
            order.append(int(cand[j]))
            scores.append(float(unc[cand[j]]))
            reasons.append(f"{code} share {b}: {why[j]}")
    o = np.argsort(-np.asarray(scores), kind="stable")
    ranking = Ranking(
        np.asarray(order, dtype=np.int64)[o],
        np.asarray(scores)[o],
        [reasons[i] for i in o],
        prechecked=True,
        skipped=0 if guard is None else guard.skipped,
    )
    return strategy._finish(pool, budget, ranking)
