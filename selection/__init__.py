"""Active-learning selection: arrays in, ids out.

Pure package: imports nothing else of the project, does no file or network I/O, loads no
models. Strategies take probabilities and/or embeddings, candidate ids, optional language codes
and a seeded ``numpy.random.Generator`` and return a :class:`Selection`.

>>> import numpy as np
>>> from selection import get_strategy
>>> s = get_strategy("margin")
>>> s.select(["a", "b"], 1, probs=np.array([[0.9, 0.1], [0.55, 0.45]]),
...          rng=np.random.default_rng(0)).ids
('b',)
"""

from selection.allocation import Allocation, allocate
from selection.base import (
    EmptyPoolError,
    InvalidBudgetError,
    MissingInputError,
    QueryStrategy,
    Selection,
    SelectionError,
    ShapeError,
)
from selection.dedup import NearDuplicateGuard, greedy_deduplicate
from selection.diversity import KCenterGreedy, KMeansDiversity, TypiClust
from selection.hybrid import Hybrid
from selection.proxy import LogisticProxy, ProbabilityModel
from selection.registry import DEFAULT, available, get_strategy, register
from selection.uncertainty import (
    Entropy,
    LeastConfidence,
    Margin,
    RandomSampling,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)

__all__ = [
    "DEFAULT",
    "Allocation",
    "EmptyPoolError",
    "Entropy",
    "Hybrid",
    "InvalidBudgetError",
    "KCenterGreedy",
    "KMeansDiversity",
    "LeastConfidence",
    "LogisticProxy",
    "Margin",
    "MissingInputError",
    "NearDuplicateGuard",
    "ProbabilityModel",
    "QueryStrategy",
    "RandomSampling",
    "Selection",
    "SelectionError",
    "ShapeError",
    "TypiClust",
    "allocate",
    "available",
    "entropy_scores",
    "get_strategy",
    "greedy_deduplicate",
    "least_confidence_scores",
    "margin_scores",
    "register",
]
