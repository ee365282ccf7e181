"""Drift of tonight's batch: the nightly job's gathering of curation.drift's tests.

A front room (it fits selection's proxy for the predicted-label mix). The *batch* is the
examples the run's ingest added (their file is one of the run's new inbox files). Compared:

* the language mix of the batch against every earlier example;
* per language, against the *labeled* examples of that language (what the model learned on;
  every earlier example of the language when it has too few labels): text length, embeddings
  (classifier two-sample test) and the proxy's predicted-label mix;
* per language, the language detector's confidence on detected rows against earlier detected
  rows of that language (a batch of another language or script forced into a known one).

Each finding with an alert becomes a run warning naming the language and the signal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from curation.config import Config
from curation.drift import (
    DriftFinding,
    DriftThresholds,
    classifier_two_sample_test,
    distribution_shift,
    mix_shift,
)
from curation.pool import PoolArrays
from curation.store import Store


def _rows(store: Store, files: Sequence[str]) -> dict[str, tuple]:
    """example id -> (in batch, language, text length, detector confidence or None)."""
    batch = set(files)
    out = {}
    for example_id, file, language, length, source, confidence in store.conn.execute(
        "SELECT id, file, language, length(text), language_source, language_confidence "
        "FROM examples"
    ):
        detected = confidence if source == "detected" else None
        out[example_id] = (file in batch, language, int(length), detected)
    return out


def check_batch(
    store: Store,
    config: Config,
    pool: PoolArrays,
    batch_files: Sequence[str],
    *,
    thresholds: DriftThresholds = DriftThresholds(),
    seed: int = 0,
) -> list[DriftFinding]:
    """Every drift finding for the batch (alerts and quiet ones), language mix first."""
    from selection.proxy import LogisticProxy

    if not batch_files:
        return []
    rows = _rows(store, batch_files)
    in_batch = [e for e, row in rows.items() if row[0]]
    if not in_batch:
        return []
    earlier = [e for e, row in rows.items() if not row[0]]
    findings = [
        mix_shift(
            "language_mix",
            Counter(rows[e][1] for e in in_batch),
            Counter(rows[e][1] for e in earlier),
            thresholds=thresholds,
        )
    ]
    rng = np.random.default_rng(seed)
    position = {str(e): i for i, e in enumerate(pool.ids.tolist())}
    labeled = pool.labeled
    proxy = None
    if labeled.sum() >= 2 and len(set(pool.labels[labeled].tolist())) >= 2:
        proxy = LogisticProxy(store.label_names()).fit(pool.vectors[labeled], pool.labels[labeled])
    batch_set = set(in_batch)
    # One pass over the store's examples, grouped by language (a pool may hold millions).
    batch_by_language: dict[str, list[str]] = {}
    for e in in_batch:
        batch_by_language.setdefault(rows[e][1], []).append(e)
    earlier_by_language: dict[str, list[str]] = {}
    for e in earlier:
        if rows[e][1] in batch_by_language:
            earlier_by_language.setdefault(rows[e][1], []).append(e)
    for language in sorted(batch_by_language):
        batch_ids = batch_by_language[language]
        labeled_ids = [
            str(pool.ids[i])
            for i in np.flatnonzero(labeled & (pool.languages == language))
            if str(pool.ids[i]) not in batch_set
        ]
        earlier_ids = earlier_by_language.get(language, [])
        reference = labeled_ids if len(labeled_ids) >= thresholds.min_rows else earlier_ids
        findings.append(
            distribution_shift(
                "text_length",
                [rows[e][2] for e in batch_ids],
                [rows[e][2] for e in reference],
                language=language,
                unit=" chars",
                thresholds=thresholds,
            )
        )
        batch_rows = [position[e] for e in batch_ids if e in position]
        reference_rows = [position[e] for e in reference if e in position]
        findings.append(
            classifier_two_sample_test(
                pool.vectors[batch_rows],
                pool.vectors[reference_rows],
                language=language,
                rng=rng,
                thresholds=thresholds,
            )
        )
        if proxy is not None and batch_rows and reference_rows:
            findings.append(
                mix_shift(
                    "predicted_labels",
                    _predicted(proxy, pool.vectors[batch_rows]),
                    _predicted(proxy, pool.vectors[reference_rows]),
                    language=language,
                    thresholds=thresholds,
                )
            )
        batch_confidence = [rows[e][3] for e in batch_ids if rows[e][3] is not None]
        earlier_confidence = [rows[e][3] for e in earlier_ids if rows[e][3] is not None]
        if batch_confidence:
            findings.append(
                distribution_shift(
                    "language_confidence",
                    batch_confidence,
                    earlier_confidence,
                    language=language,
                    thresholds=thresholds,
                )
            )
    return findings


def _predicted(proxy: Any, vectors: np.ndarray) -> Counter:
    return Counter(proxy.predict(vectors).tolist())


def summarize(findings: Sequence[DriftFinding]) -> dict[str, Any]:
    """The stage counts: alerts (messages) and every tested signal's statistic."""
    return {
        "drift_alerts": [f.message for f in findings if f.alert],
        "drift_tested": [
            {
                "signal": f.signal,
                "language": f.language,
                "statistic": None if f.statistic != f.statistic else round(f.statistic, 4),
                "p_value": None if f.p_value != f.p_value else float(f"{f.p_value:.3g}"),
                "alert": f.alert,
            }
            for f in findings
        ],
    }
