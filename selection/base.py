"""Core types of the selection package: the result, the errors and the strategy base class.

Everything here is pure: arrays in, ids out. No file or network I/O, no models, and no global
random state -- every strategy receives a seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from selection.dedup import NearDuplicateGuard
from selection.vectors import l2_normalize

__all__ = [
    "EmptyPoolError",
    "InvalidBudgetError",
    "MissingInputError",
    "Pool",
    "QueryStrategy",
    "Ranking",
    "Selection",
    "SelectionError",
    "ShapeError",
]

#: Tolerance for ``probs`` rows summing to one.
PROBS_ATOL = 1e-3


class SelectionError(Exception):
    """Base class of every error raised by the selection package."""


class EmptyPoolError(SelectionError):
    """There are no candidates to select from."""


class ShapeError(SelectionError, ValueError):
    """Inputs are inconsistent: mismatched lengths, wrong ndim, bad probabilities, NaN."""


class MissingInputError(SelectionError, ValueError):
    """The strategy needs an input (``probs`` or ``embeddings``) that was not given."""


class InvalidBudgetError(SelectionError, ValueError):
    """The budget is not an integer >= 1."""


@dataclass(frozen=True)
class Selection:
    """The outcome of one query.

    Attributes:
        ids: chosen candidate ids, in rank order (most preferred first).
        scores: the strategy's score of each chosen id (higher = preferred by that strategy).
        reasons: short human-readable reason per id, e.g. ``"margin 0.03"``.
        strategy: the strategy's ``repr``.
        shortfall: ``budget - len(ids)``. Positive when the pool (after the near-duplicate
            guard) had fewer candidates than the budget: everything that exists is taken and
            this field says so -- it is never an error.
        skipped_near_duplicates: candidates passed over because they were more similar than
            ``max_similarity`` to an already-labeled example or to an earlier pick.
    """

    ids: tuple[Hashable, ...]
    scores: tuple[float, ...]
    reasons: tuple[str, ...]
    strategy: str
    shortfall: int = 0
    skipped_near_duplicates: int = 0

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.scores) == len(self.reasons)):
            raise ShapeError("ids, scores and reasons must have the same length")

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (ids are kept as they are)."""
        return {
            "ids": list(self.ids),
            "scores": list(self.scores),
            "reasons": list(self.reasons),
            "strategy": self.strategy,
            "shortfall": self.shortfall,
            "skipped_near_duplicates": self.skipped_near_duplicates,
        }


@dataclass
class Pool:
    """Validated inputs of one query, shared by the strategies.

    ``embeddings`` is float32 and C-contiguous (the FAISS boundary); normalised views are
    computed lazily and only for the rows that are asked for, so a 1M x 384 pool is never
    copied as a whole.
    """

    ids: list[Hashable]
    probs: np.ndarray | None
    embeddings: np.ndarray | None
    labeled_embeddings: np.ndarray | None
    languages: np.ndarray | None
    _unit: np.ndarray | None = field(default=None, repr=False)
    _unit_known: bool = field(default=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def n_labeled(self) -> int:
        return 0 if self.labeled_embeddings is None else int(self.labeled_embeddings.shape[0])

    def unit_rows(self, rows: np.ndarray | None = None) -> np.ndarray:
        """L2-normalised embeddings (all rows, or ``rows``), float32 C-contiguous."""
        if self.embeddings is None:
            raise MissingInputError("embeddings are required")
        if not self._unit_known:
            # Skip the copy when the caller already normalised (the common case).
            probe = self.embeddings[: min(self.size, 2048)]
            norms = np.linalg.norm(probe, axis=1)
            if np.allclose(norms, 1.0, atol=1e-4):
                self._unit = self.embeddings
            self._unit_known = True
        if self._unit is not None:
            sub = self._unit if rows is None else self._unit[rows]
            return np.ascontiguousarray(sub, dtype="float32")
        sub = self.embeddings if rows is None else self.embeddings[rows]
        return l2_normalize(sub)

    def labeled_unit(self) -> np.ndarray | None:
        if self.labeled_embeddings is None or self.labeled_embeddings.shape[0] == 0:
            return None
        return l2_normalize(self.labeled_embeddings)


@dataclass
class Ranking:
    """What a strategy proposes: candidate positions in preference order.

    ``order`` may be longer than the budget; the near-duplicate guard walks it greedily and keeps
    the first ``budget`` that pass. ``scores``/``reasons`` are aligned with ``order``.
    ``prechecked`` means the strategy already applied the guard itself (e.g. iterative methods).
    """

    order: np.ndarray
    scores: np.ndarray
    reasons: Sequence[str]
    prechecked: bool = False
    skipped: int = 0


class QueryStrategy(ABC):
    """Base class: validates inputs once, delegates ranking, applies the near-duplicate guard.

    Subclasses set ``name`` and ``requires`` and implement :meth:`rank`. Settings are
    keyword-only constructor arguments, stored as attributes of the same name, shown by
    ``repr``.
    """

    name: ClassVar[str] = "base"
    #: inputs the strategy cannot work without: any of {"probs", "embeddings"}
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, max_similarity: float | None = 0.95) -> None:
        if max_similarity is not None and not (-1.0 <= float(max_similarity) <= 1.0):
            raise ValueError(f"max_similarity must be in [-1, 1] or None, got {max_similarity}")
        self.max_similarity = None if max_similarity is None else float(max_similarity)

    # -- settings -----------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor settings (scikit-learn style)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind == inspect.Parameter.KEYWORD_ONLY
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- public entry point -------------------------------------------------------------------
    def select(
        self,
        ids: Sequence[Hashable] | np.ndarray,
        budget: int,
        *,
        probs: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
        languages: Sequence[str] | np.ndarray | None = None,
        rng: np.random.Generator,
    ) -> Selection:
        """Choose up to ``budget`` candidates.

        Args:
            ids: candidate ids (any hashable, unique), length n.
            budget: how many to choose (>= 1). A smaller pool is not an error: everything is
                taken and ``Selection.shortfall`` says how many were missing.
            probs: (n, n_classes) class probabilities, rows summing to 1.
            embeddings: (n, d) candidate vectors.
            labeled_embeddings: (m, d) vectors of already-labeled examples (m may be 0).
            languages: n language codes.
            rng: a seeded ``numpy.random.Generator`` (the global RNG is never used).
        """
        pool = validate_inputs(
            ids,
            budget,
            probs=probs,
            embeddings=embeddings,
            labeled_embeddings=labeled_embeddings,
            languages=languages,
            rng=rng,
        )
        return self._select_pool(pool, budget, rng)

    def _select_pool(
        self, pool: Pool, budget: int, rng: np.random.Generator, **rank_options: Any
    ) -> Selection:
        """:meth:`select` after its inputs are validated: the required inputs, the ranking
        (``rank_options`` reach a subclass's ``rank``), the near-duplicate guard."""
        missing = sorted(k for k in self.requires if getattr(pool, k) is None)
        if missing:
            raise MissingInputError(
                f"{type(self).__name__} needs {' and '.join(missing)}; got None"
            )
        ranking = self.rank(pool, budget, rng, **rank_options)
        return self._finish(pool, budget, ranking)

    @abstractmethod
    def rank(self, pool: Pool, budget: int, rng: np.random.Generator) -> Ranking:
        """Return candidate positions in preference order (at least ``budget`` when possible)."""

    # -- helpers for subclasses ---------------------------------------------------------------
    def _guard(self, pool: Pool) -> NearDuplicateGuard | None:
        if self.max_similarity is None or pool.embeddings is None:
            return None
        return NearDuplicateGuard(
            pool.unit_rows, pool.labeled_unit(), max_similarity=self.max_similarity
        )

    def _finish(self, pool: Pool, budget: int, ranking: Ranking) -> Selection:
        order = np.asarray(ranking.order, dtype=np.int64)
        scores = np.asarray(ranking.scores, dtype=np.float64)
        reasons = list(ranking.reasons)
        if not (len(order) == len(scores) == len(reasons)):
            raise AssertionError("strategy returned misaligned ranking")
        skipped = ranking.skipped
        guard = None if ranking.prechecked else self._guard(pool)
        if guard is not None:
            keep_pos = guard.walk(order, budget)
            skipped += guard.skipped
        else:
            # drop repeated positions, keep first occurrence
            _, first = np.unique(order, return_index=True)
            keep_pos = np.sort(first)[:budget]
        keep_pos = np.asarray(keep_pos, dtype=np.int64)
        chosen = order[keep_pos]
        return Selection(
            ids=tuple(pool.ids[i] for i in chosen),
            scores=tuple(float(s) for s in scores[keep_pos]),
            reasons=tuple(reasons[i] for i in keep_pos),
            strategy=repr(self),
            shortfall=int(budget - len(chosen)),
            skipped_near_duplicates=int(skipped),
        )


def validate_inputs(
    ids: Sequence[Hashable] | np.ndarray,
    budget: int,
    *,
    probs: np.ndarray | None,
    embeddings: np.ndarray | None,
    labeled_embeddings: np.ndarray | None,
    languages: Sequence[str] | np.ndarray | None,
    rng: np.random.Generator,
) -> Pool:
    """Check every input once; raise typed errors; return a :class:`Pool`."""
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise InvalidBudgetError(f"budget must be an int >= 1, got {budget!r}")
    if budget < 1:
        raise InvalidBudgetError(f"budget must be >= 1, got {budget}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(0)); "
            f"got {type(rng).__name__}"
        )
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ShapeError(f"ids must be 1-D, got shape {ids.shape}")
        id_list = ids.tolist()
    elif isinstance(ids, (str, bytes)):
        raise ShapeError("ids must be a sequence of ids, not a single string")
    else:
        id_list = list(ids)
    n = len(id_list)
    if n == 0:
        raise EmptyPoolError("no candidates: the pool is empty")
    if len(set(id_list)) != n:
        raise ShapeError("candidate ids must be unique")

    p = None
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 2:
            raise ShapeError(f"probs must be 2-D (n, n_classes), got ndim={p.ndim}")
        if p.shape[0] != n:
            raise ShapeError(f"probs has {p.shape[0]} rows but there are {n} ids")
        if p.shape[1] < 1:
            raise ShapeError("probs needs at least one class column")
        if not np.all(np.isfinite(p)):
            raise ShapeError("probs contains NaN or infinite values")
        if np.any(p < -PROBS_ATOL):
            raise ShapeError("probs contains negative values")
        sums = p.sum(axis=1)
        bad = np.abs(sums - 1.0) > PROBS_ATOL
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ShapeError(
                f"probs rows must sum to 1 (tolerance {PROBS_ATOL}); row {i} sums to {sums[i]:.4f}"
            )

    e = None
    if embeddings is not None:
        e = np.ascontiguousarray(embeddings, dtype="float32")
        if e.ndim != 2:
            raise ShapeError(f"embeddings must be 2-D (n, dim), got ndim={e.ndim}")
        if e.shape[0] != n:
            raise ShapeError(f"embeddings has {e.shape[0]} rows but there are {n} ids")
        if e.shape[1] < 1:
            raise ShapeError("embeddings need at least one dimension")
        if not _all_finite(e):
            raise ShapeError("embeddings contain NaN or infinite values")

    le = None
    if labeled_embeddings is not None:
        le = np.ascontiguousarray(labeled_embeddings, dtype="float32")
        if le.ndim == 1 and le.size == 0:
            le = le.reshape(0, e.shape[1] if e is not None else 0)
        if le.ndim != 2:
            raise ShapeError(f"labeled_embeddings must be 2-D (m, dim), got ndim={le.ndim}")
        if e is not None and le.shape[0] > 0 and le.shape[1] != e.shape[1]:
            raise ShapeError(
                f"labeled_embeddings have dim {le.shape[1]} but embeddings have {e.shape[1]}"
            )
        if not _all_finite(le):
            raise ShapeError("labeled_embeddings contain NaN or infinite values")

    langs = None
    if languages is not None:
        if isinstance(languages, str):
            raise ShapeError("languages must be a sequence of codes, not a single string")
        langs = np.asarray(languages, dtype=object)
        if langs.ndim != 1 or langs.shape[0] != n:
            raise ShapeError(f"languages must have one code per id ({n}), got {langs.shape}")

    return Pool(ids=id_list, probs=p, embeddings=e, labeled_embeddings=le, languages=langs)


def _all_finite(x: np.ndarray, chunk: int = 1 << 16) -> bool:
    # chunked to avoid a full-size boolean temporary on huge pools
    return all(
        bool(np.isfinite(x[start : start + chunk]).all()) for start in range(0, x.shape[0], chunk)
    )


def fmt(x: float) -> str:
    """Short number formatting for reasons."""
    if math.isnan(x):
        return "nan"
    return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.2f}"
