"""Uncertainty proxy: a fast classifier on embeddings whose probabilities drive selection.

:class:`LogisticProxy` (scikit-learn logistic regression) trains in seconds on a few thousand
vectors. Anything that satisfies :class:`ProbabilityModel` (e.g. a fine-tuned adapter model
wrapped by the training wing) can be swapped in.

Regularization decides everything on sentence embeddings: on multilingual-e5 features the same
labeled set gives a full-pool macro-F1 of 0.69 at C=1 and 0.80 at C=10 (a 15-class task), and
which query strategy beats random flips with it. So by default (``C="auto"``) the strength is
chosen on every fit by stratified cross-validation over a small grid
(``sklearn.linear_model.LogisticRegressionCV``, which warm-starts along the grid), and the
chosen value is kept as ``C_``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["LogisticProxy", "ProbabilityModel"]

#: Rows per scikit-learn call in ``predict_proba`` (bounds its float64 temporaries to ~200 MB).
PREDICT_CHUNK = 65_536
#: The grid ``C="auto"`` searches (inverse regularization strength, log-spaced).
DEFAULT_CS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: C used when cross-validation is impossible (fewer than two classes with 2+ examples). On
#: unit-length sentence embeddings the cross-validated choice is large at small sizes (UMSAB on
#: multilingual-e5: 23 at 100 labels, 10 at 500, 3 at 1,100), so a small fallback would be an
#: over-regularized proxy exactly when labels are scarcest.
FALLBACK_C = 10.0


def _one_blas_thread() -> Any:
    """BLAS limited to one thread for the proxy's small products. Measured on the 2-core VM
    with one other busy process: lbfgs on 1,100 x 384 took 6.3 s with 2 OpenBLAS threads and
    0.09 s with 1 (14,708 rows: 13.7 s vs 2.5 s) -- spinning BLAS threads that share cores
    with anything else stall each other, and these matrices are too small to gain from them."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


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
        C: inverse regularisation strength, or "auto": chosen per fit by stratified
            ``cv_folds``-fold cross-validation over ``Cs`` on the classes with 2+ examples
            (``FALLBACK_C`` when fewer than two classes have 2+ examples).
        Cs: the grid for ``C="auto"``.
        cv_folds: folds for ``C="auto"`` (fewer when the rarest class is smaller).
        scoring: what ``C="auto"`` maximizes (a scikit-learn scorer name).
        max_iter: solver iterations.
        class_weight: passed to scikit-learn (None or "balanced").
        random_state: solver seed (lbfgs is deterministic anyway).

    After ``fit``: ``classes_`` (label order), ``C_`` (the strength used), ``version`` (hash of
    training ids+labels+params),
    ``degenerate_`` (True when fewer than two classes were present: probabilities are uniform),
    ``missing_classes_`` (labels absent from training; their column is 0).
    """

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        *,
        C: float | Literal["auto"] = "auto",
        Cs: Sequence[float] = DEFAULT_CS,
        cv_folds: int = 3,
        scoring: str = "neg_log_loss",
        max_iter: int = 1000,
        class_weight: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.labels = None if labels is None else tuple(labels)
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if C != "auto" and not (isinstance(C, int | float) and C > 0):
            raise ValueError(f"C must be a positive number or 'auto', got {C!r}")
        if not Cs or any(c <= 0 for c in Cs):
            raise ValueError("Cs must be positive numbers")
        if cv_folds < 2:
            raise ValueError("cv_folds must be >= 2")
        self.C = C
        self.Cs = tuple(float(c) for c in Cs)
        self.cv_folds = int(cv_folds)
        self.scoring = scoring
        self.C_: float | None = None
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
            f"LogisticProxy(labels={self.labels!r}, C={self.C!r}, Cs={self.Cs!r}, "
            f"cv_folds={self.cv_folds!r}, scoring={self.scoring!r}, max_iter={self.max_iter!r}, "
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
            "Cs": list(self.Cs),
            "cv_folds": self.cv_folds,
            "scoring": self.scoring,
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
        self.C_ = self.choose_C(X, y_arr) if self.C == "auto" else float(self.C)
        model = LogisticRegression(
            C=self.C_,
            max_iter=self.max_iter,
            class_weight=self.class_weight,
            random_state=self.random_state,
        )
        with _one_blas_thread():
            model.fit(X, y_arr)
        self._model = model
        self._present = np.array([self.labels.index(c) for c in model.classes_], dtype=np.int64)
        return self

    def choose_C(self, X: np.ndarray, y: Sequence[Any]) -> float:
        """The grid value with the best cross-validated ``scoring`` (ties: the smaller C) on the
        classes with 2+ examples; ``FALLBACK_C`` when fewer than two such classes exist. Does
        not fit the proxy."""
        import warnings

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray([str(v) for v in y], dtype=object)
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        # A class seen once cannot be stratified (nor validated); leave such classes out of the
        # search rather than give up on it: in a many-class task with rare classes, singletons
        # are the rule after a small seed set, and a fixed fallback C there is a much weaker
        # proxy than the cross-validated one.
        classes, counts = np.unique(y, return_counts=True)
        searchable = classes[counts >= 2]
        if len(searchable) < 2:
            return FALLBACK_C
        if len(searchable) < len(classes):
            rows = np.isin(y, searchable)
            X, y = X[rows], y[rows]
        folds = min(self.cv_folds, int(counts[counts >= 2].min()))
        search = LogisticRegressionCV(
            Cs=sorted(self.Cs),  # ascending: argmax breaks ties towards the smaller C
            cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.random_state),
            scoring=self.scoring,
            max_iter=self.max_iter,
            class_weight=self.class_weight,
            random_state=self.random_state,
            refit=False,
            l1_ratios=(0.0,),  # pure L2, as LogisticRegression; silences sklearn 1.9's warning
            use_legacy_attributes=False,
        )
        with warnings.catch_warnings(), _one_blas_thread():
            # a fold without some class makes log-loss warn; the mean over folds still ranks C
            warnings.simplefilter("ignore", UserWarning)
            search.fit(X, y)
        # scores_: (folds, 1, len(Cs)) for the multinomial model. With refit=False, C_ would be
        # the mean of each fold's best C (a value off the grid); take the best mean score.
        scores = np.asarray(search.scores_)
        mean = scores.reshape(scores.shape[0], -1).mean(axis=0)
        return float(search.Cs_[int(np.argmax(mean))])

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
        with _one_blas_thread():
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
