"""Uncertainty proxy: a fast classifier on embeddings whose probabilities drive selection.

:class:`LogisticProxy` (scikit-learn logistic regression) trains in seconds on a few thousand
vectors. Anything that satisfies :class:`ProbabilityModel` (e.g. a fine-tuned adapter model
wrapped by the training wing) can be swapped in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["LogisticProxy", "ProbabilityModel"]

#: Rows per scikit-learn call in ``predict_proba`` (bounds its float64 temporaries to ~200 MB).
PREDICT_CHUNK = 65_536


@runtime_checkable
class ProbabilityModel(Protocol):
    """What selection needs from a model: fixed class order and probabilities."""

    @property
    def classes_(self) -> tuple[str, ...]: ...

    def fit(self, X: np.ndarray, y: Sequence[Any]) -> ProbabilityModel: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


class LogisticProxy:
    """Multinomial logistic regression on (normalised) embeddings.

    Args:
        labels: the fixed label order of the probability columns. If None, the sorted labels
            seen by the first ``fit`` are used and then kept.
        C: inverse regularisation strength.
        max_iter: solver iterations.
        class_weight: passed to scikit-learn (None or "balanced").
        random_state: solver seed (lbfgs is deterministic anyway).

    After ``fit``: ``classes_`` (label order), ``version`` (hash of training ids+labels+params),
    ``degenerate_`` (True when fewer than two classes were present: probabilities are uniform),
    ``missing_classes_`` (labels absent from training; their column is 0).
    """

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        *,
        C: float = 1.0,
        max_iter: int = 1000,
        class_weight: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.labels = None if labels is None else tuple(labels)
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.random_state = random_state
        self._model: Any = None
        self._present: np.ndarray | None = None
        self.degenerate_ = False
        self.missing_classes_: tuple[str, ...] = ()
        self.version: str | None = None

    def __repr__(self) -> str:
        return (
            f"LogisticProxy(labels={self.labels!r}, C={self.C!r}, max_iter={self.max_iter!r}, "
            f"class_weight={self.class_weight!r}, random_state={self.random_state!r})"
        )

    @property
    def classes_(self) -> tuple[str, ...]:
        if self.labels is None:
            raise AttributeError("classes_ is known after fit (or pass labels=...)")
        return self.labels

    def params(self) -> dict[str, Any]:
        return {
            "labels": None if self.labels is None else list(self.labels),
            "C": self.C,
            "max_iter": self.max_iter,
            "class_weight": self.class_weight,
            "random_state": self.random_state,
        }

    def fit(
        self,
        X: np.ndarray,
        y: Sequence[Any],
        *,
        ids: Sequence[Hashable] | None = None,
    ) -> LogisticProxy:
        """Train on ``X`` (n, d) and labels ``y``; ``ids`` (optional) feed ``version``."""
        from sklearn.linear_model import LogisticRegression

        # float64 on purpose: scikit-learn's lbfgs is ~10x slower on float32 input
        X = np.asarray(X, dtype=np.float64)
        y_arr = np.asarray([str(v) for v in y], dtype=object)
        if X.ndim != 2 or X.shape[0] != len(y_arr):
            raise ValueError(f"X must be (n, d) with n == len(y); got {X.shape} and {len(y_arr)}")
        if len(y_arr) and not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        if self.labels is None:
            self.labels = tuple(sorted(set(y_arr.tolist())))
        unknown = sorted(set(y_arr.tolist()) - set(self.labels))
        if unknown:
            raise ValueError(f"labels {unknown} are not in the label order {list(self.labels)}")
        present = sorted(set(y_arr.tolist()), key=self.labels.index)
        self.missing_classes_ = tuple(c for c in self.labels if c not in present)
        self.version = self._version(X, y_arr, ids)
        if len(present) < 2:
            self._model = None
            self._present = None
            self.degenerate_ = True
            return self
        self.degenerate_ = False
        model = LogisticRegression(
            C=self.C,
            max_iter=self.max_iter,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )
        model.fit(X, y_arr)
        self._model = model
        self._present = np.array([self.labels.index(c) for c in model.classes_], dtype=np.int64)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, len(classes_)) probabilities, columns in ``classes_`` order."""
        if self.labels is None or self.version is None:
            raise RuntimeError("call fit() first")
        X = np.asarray(X, dtype=np.float32)
        out = np.zeros((X.shape[0], len(self.labels)), dtype=np.float64)
        if self.degenerate_ or self._model is None:
            out[:] = 1.0 / len(self.labels)
            return out
        # In chunks: scikit-learn multiplies float32 rows by float64 weights, which upcasts a
        # whole (n, d) copy to float64 -- 3 GiB for a 1M x 384 pool.
        for start in range(0, X.shape[0], PREDICT_CHUNK):
            stop = start + PREDICT_CHUNK
            out[start:stop, self._present] = self._model.predict_proba(X[start:stop])
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most likely label per row (ties -> first in ``classes_``)."""
        p = self.predict_proba(X)
        return np.asarray(self.classes_, dtype=object)[p.argmax(axis=1)]

    def _version(self, X: np.ndarray, y: np.ndarray, ids: Sequence[Hashable] | None) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(self.params(), sort_keys=True).encode())
        if ids is not None:
            if len(ids) != len(y):
                raise ValueError("ids and y must have the same length")
            pairs = sorted((str(i), str(lab)) for i, lab in zip(ids, y, strict=True))
            h.update(json.dumps(pairs).encode())
        else:
            h.update(np.ascontiguousarray(X).tobytes())
            h.update(json.dumps(y.tolist()).encode())
        return h.hexdigest()[:16]
