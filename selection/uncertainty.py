"""Random sampling and uncertainty sampling over class probabilities.

Each strategy is a thin class over a pure scoring function (higher score = more uncertain =
preferred). Ties keep pool order (stable sort), so results are hand-checkable.
"""

from __future__ import annotations

import numpy as np

from selection.base import Pool, QueryStrategy, Ranking, fmt

__all__ = [
    "Entropy",
    "LeastConfidence",
    "Margin",
    "RandomSampling",
    "entropy_scores",
    "least_confidence_scores",
    "margin_scores",
    "margins",
]


def least_confidence_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - max_c p(c|x)`` -- Lewis & Gale (1994), *A sequential algorithm for training text
    classifiers*, SIGIR."""
    p = np.asarray(probs, dtype=np.float64)
    return 1.0 - p.max(axis=1)


def margins(probs: np.ndarray) -> np.ndarray:
    """Difference between the two largest probabilities (1.0 for a single class)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] == 1:
        return np.ones(p.shape[0])
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_1 - p_2)`` -- margin sampling / "breaking ties": Scheffer, Decomain & Wrobel
    (2001), *Active hidden Markov models for information extraction*, IDA; Luo et al. (2005)."""
    return 1.0 - margins(probs)


def entropy_scores(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy ``-sum p log p`` in nats (0 log 0 = 0) -- Shannon (1948); see Settles
    (2009), *Active Learning Literature Survey*, §3.1."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


class RandomSampling(QueryStrategy):
    """Uniform random sampling without replacement (the baseline every AL paper reports).

    Args:
        max_similarity: near-duplicate ceiling (cosine) when embeddings are given; None = off.
    """

    name = "random"

    def __init__(self, *, max_similarity: float | None = 0.95) -> None:
        super().__init__(max_similarity=max_similarity)

    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        order = rng.permutation(pool.size)
        return Ranking(order, np.zeros(pool.size), ["random"] * pool.size)


class _UncertaintyStrategy(QueryStrategy):
    requires = frozenset({"probs"})
    _label = ""

    def __init__(self, *, max_similarity: float | None = 0.95) -> None:
        super().__init__(max_similarity=max_similarity)

    def score(self, probs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reason_value(self, probs_rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return scores

    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        assert pool.probs is not None
        scores = self.score(pool.probs)
        order = np.argsort(-scores, kind="stable")
        # reasons are only materialised for the head that can possibly be used
        head = order[: _head_len(pool, budget)]
        vals = self._reason_value(pool.probs[head], scores[head])
        reasons = [f"{self._label} {fmt(float(v))}" for v in vals]
        return Ranking(head, scores[head], reasons)


def _head_len(pool: Pool, budget: int) -> int:
    # without embeddings the guard is off: the head is the budget; with it, keep all
    return pool.size if pool.embeddings is not None else min(pool.size, budget)


class LeastConfidence(_UncertaintyStrategy):
    """Least-confidence sampling (Lewis & Gale, 1994): prefer ``1 - max p`` largest.

    Args:
        max_similarity: near-duplicate ceiling (cosine) when embeddings are given; None = off.
    """

    name = "least_confidence"
    _label = "confidence"

    def score(self, probs: np.ndarray) -> np.ndarray:
        return least_confidence_scores(probs)

    def _reason_value(self, probs_rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return 1.0 - scores


class Margin(_UncertaintyStrategy):
    """Margin sampling / breaking ties (Scheffer et al., 2001): prefer the smallest gap
    between the two most likely classes. Score is ``1 - margin``.

    Args:
        max_similarity: near-duplicate ceiling (cosine) when embeddings are given; None = off.
    """

    name = "margin"
    _label = "margin"

    def score(self, probs: np.ndarray) -> np.ndarray:
        return margin_scores(probs)

    def _reason_value(self, probs_rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return 1.0 - scores


class Entropy(_UncertaintyStrategy):
    """Maximum-entropy sampling (Shannon entropy; Settles 2009 survey).

    Args:
        max_similarity: near-duplicate ceiling (cosine) when embeddings are given; None = off.
    """

    name = "entropy"
    _label = "entropy"

    def score(self, probs: np.ndarray) -> np.ndarray:
        return entropy_scores(probs)
