"""What the proxy's held-out view of the labeled set tells: calibration and suspected label errors.

A front room, like curation.pipeline (which imports it): it wires selection's proxy and
calibration and labeling's label-issue finder over the store's arrays.

Everything here starts from the same out-of-fold probabilities: every labeled example scored by
a proxy fitted without it (:func:`out_of_fold_probabilities`). They are computed once per
labeled set -- its :func:`labels_fingerprint` -- and kept in memory, so one nightly run's
evaluation, calibration and label review share one cross-validation.

* :func:`proxy_calibration`: per-language temperatures fitted on them (one global temperature
  for languages with fewer than ``min_labels``), stored per fingerprint in
  ``proxy_calibrations`` with a calibration report whose "after" figures are cross-fitted (the
  temperatures of each half are judged on the other half), so they are not flattered by fit.
* :func:`review_labels`: cleanlab's suspected label errors onto the adjudication queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.config import Config
from curation.pool import PoolArrays, load_pool
from curation.store import Store, utc_now

log = logging.getLogger(__name__)

# Held-out labels a language needs for a temperature of its own.
MIN_LABELS_FOR_TEMPERATURE = 30


def labels_fingerprint(pool: PoolArrays, config: Config, seed: int) -> str:
    """A hash of what the proxy's out-of-fold predictions depend on: labeled ids and their
    labels, the embedding model and the seed. Equal fingerprints give equal predictions."""
    from curation.embeddings import model_key

    labeled = pool.labeled
    ids = pool.ids[labeled]
    labels = pool.labels[labeled]
    digest = hashlib.sha256(f"{model_key(config.embedding)}\0{seed}\0".encode())
    for i in np.argsort(ids, kind="stable"):
        digest.update(f"{ids[i]}\t{labels[i]}\n".encode())
    return digest.hexdigest()[:32]


def out_of_fold_probabilities(
    vectors: np.ndarray, labels: np.ndarray, label_names: list[str], *, seed: int
) -> np.ndarray | None:
    """The proxy's class probabilities for each labeled example from the fold that held it
    out: (n, len(label_names)), columns in `label_names` order (0 for a label nobody has).

    Stratified `min(5, rarest class)`-fold cross-validation, shuffled with `seed`. The proxy's
    regularization is chosen once on the whole labeled set and then fixed in every fold
    (nested selection would cost 5x more for a figure that only ranks languages). None when
    some class has a single example (it cannot be stratified)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    from selection.proxy import LogisticProxy

    counts = Counter(labels.tolist())
    if len(counts) < 2 or min(counts.values()) < 2:
        return None
    folds = min(5, min(counts.values()))
    proxy = LogisticProxy(label_names, random_state=seed)
    strength = proxy.choose_C(vectors, labels)
    # The model LogisticProxy.fit trains, on the inputs it trains on (float64: lbfgs is ~10x
    # slower on float32; labels as strings), with one BLAS thread like the proxy.
    model = LogisticRegression(
        C=strength,
        max_iter=proxy.max_iter,
        class_weight=proxy.class_weight,
        random_state=proxy.random_state,
    )
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray([str(v) for v in labels], dtype=object)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"):
        in_sorted_order = cross_val_predict(model, x, y, cv=splitter, method="predict_proba")
    out = np.zeros((len(y), len(label_names)))
    out[:, [label_names.index(name) for name in np.unique(y)]] = in_sorted_order
    return out


@dataclass(frozen=True)
class OutOfFold:
    fingerprint: str
    ids: np.ndarray
    labels: np.ndarray
    languages: np.ndarray
    probabilities: np.ndarray
    label_names: tuple[str, ...]

    @property
    def label_index(self) -> np.ndarray:
        return np.array([self.label_names.index(str(v)) for v in self.labels], dtype=np.int64)


_memo: dict[str, OutOfFold | None] = {}


def labeled_out_of_fold(
    pool: PoolArrays, config: Config, label_names: list[str], *, seed: int
) -> OutOfFold | None:
    """Out-of-fold probabilities of the pool's labeled examples (memoized per fingerprint)."""
    fingerprint = labels_fingerprint(pool, config, seed)
    key = f"{fingerprint}\0{','.join(label_names)}"
    if key not in _memo:
        labeled = pool.labeled
        probabilities = (
            out_of_fold_probabilities(
                pool.vectors[labeled], pool.labels[labeled], label_names, seed=seed
            )
            if labeled.sum() >= 2
            else None
        )
        _memo.clear()  # one labeled set at a time: the arrays can be large
        _memo[key] = (
            None
            if probabilities is None
            else OutOfFold(
                fingerprint,
                pool.ids[labeled],
                pool.labels[labeled],
                pool.languages[labeled],
                probabilities,
                tuple(label_names),
            )
        )
    return _memo[key]


# -- calibration ----------------------------------------------------------------------------------


def _calibration_payload(oof: OutOfFold, *, seed: int) -> dict[str, Any]:
    from curation.calibration import calibration_payload

    return {
        "fingerprint": oof.fingerprint,
        "label_names": list(oof.label_names),
        **calibration_payload(
            oof.probabilities,
            oof.label_index,
            oof.languages,
            min_labels=MIN_LABELS_FOR_TEMPERATURE,
            seed=seed,
        ),
    }


def proxy_calibration(
    store: Store,
    config: Config,
    pool: PoolArrays | None = None,
    *,
    seed: int | None = None,
    persist: bool = True,
) -> dict[str, Any] | None:
    """The proxy's per-language temperatures and calibration report for the current labels
    (None with too few labels). Stored per fingerprint; reused while the labels are the same."""
    pool = load_pool(store, config) if pool is None else pool
    seed = config.selection.seed if seed is None else seed
    if pool.labeled.sum() < 2:
        return None
    fingerprint = labels_fingerprint(pool, config, seed)
    row = store.conn.execute(
        "SELECT payload FROM proxy_calibrations WHERE fingerprint = ?", (fingerprint,)
    ).fetchone()
    if row is not None:
        return json.loads(row[0])
    oof = labeled_out_of_fold(pool, config, store.label_names(), seed=seed)
    if oof is None:
        return None
    payload = _calibration_payload(oof, seed=seed)
    if persist:
        with store.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO proxy_calibrations (fingerprint, created_at, payload) "
                "VALUES (?, ?, ?)",
                (fingerprint, utc_now(), json.dumps(payload, sort_keys=True)),
            )
    return payload


def calibration_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """What a round records and `curate select` shows: temperature and held-out ECE before
    and after, per language."""
    return {
        language: {
            "temperature": row["temperature"],
            "source": row["source"],
            "ece_before": row["ece_before"],
            "ece_after": row["ece_after"],
        }
        for language, row in payload["report"].items()
    }


def calibrate(
    probabilities: np.ndarray, languages: np.ndarray, payload: dict[str, Any] | None
) -> np.ndarray:
    """``probabilities`` scaled by each row's language temperature (unchanged without one)."""
    from curation.calibration import PerLanguageTemperature

    if payload is None or len(probabilities) == 0:
        return probabilities
    return PerLanguageTemperature.from_payload(payload).transform(probabilities, languages)


# -- label review ---------------------------------------------------------------------------------


def review_labels(
    store: Store,
    config: Config,
    pool: PoolArrays | None = None,
    *,
    seed: int | None = None,
    max_per_language: int | None = None,
) -> dict[str, Any]:
    """Suspected label errors onto the adjudication queue (after a pull rebuilt it).

    Returns ``{"flagged", "per_language", "skipped", "checked"}``; ``checked`` is 0 when there
    are too few labels to cross-validate.
    """
    from labeling.label_issues import find_label_issues_per_language, queue_label_issues

    cap = (
        config.labelstudio.label_issues_per_language
        if max_per_language is None
        else (max_per_language)
    )
    empty = {"flagged": 0, "per_language": {}, "skipped": 0, "checked": 0}
    if cap == 0:
        return empty
    pool = load_pool(store, config) if pool is None else pool
    seed = config.selection.seed if seed is None else seed
    oof = labeled_out_of_fold(pool, config, store.label_names(), seed=seed)
    if oof is None:
        return empty
    issues = find_label_issues_per_language(
        oof.ids,
        oof.labels,
        oof.languages,
        oof.probabilities,
        oof.label_names,
        max_per_language=cap,
    )
    counts = queue_label_issues(store, issues)
    counts["checked"] = len(oof.ids)
    if counts["flagged"]:
        log.info(
            "%d suspected label errors queued for adjudication (%s)",
            counts["flagged"],
            ", ".join(f"{k} {v}" for k, v in counts["per_language"].items()),
        )
    return counts
