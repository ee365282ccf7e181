"""Per-language stopping in the store: the stop set, its snapshots, and the decision.

A front room (it feeds selection.stopping from the store); curation.pipeline calls it in every
`curate select` and nightly select.

* The **stop set** of a language is a fixed random sample (seeded) of up to
  ``[selection.stopping] stop_set_size`` of its embedded examples that had no label when the
  language was first seen. It never changes afterwards; examples labeled later stay in it (the
  proxy still predicts them, which is all the stability test needs).
* A **snapshot** is the proxy's predicted label on every stop-set example, with the language's
  label count and validation F1, taken once per labeled set (its fingerprint). A select that saw
  no new labels takes no snapshot -- the same proxy would agree with itself perfectly and fake
  stability.
* The **decision** (:func:`decide`) runs :class:`selection.stopping.StoppingRule` over each
  language's snapshots, oldest first.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from curation.config import Config
from curation.pool import PoolArrays
from curation.store import Store, utc_now

if TYPE_CHECKING:
    from selection.stopping import StoppingRule


def ensure_stop_sets(store: Store, config: Config, pool: PoolArrays, *, seed: int) -> None:
    """Draw the stop set of every language of ``pool`` that has none yet (needs the pool's ids,
    languages and labels only, not its vectors: the Ray engine draws from its index)."""
    size = config.selection.stopping.stop_set_size
    have = {row[0] for row in store.conn.execute("SELECT DISTINCT language FROM stop_set")}
    rows = []
    now = utc_now()
    for language in sorted(set(pool.languages.tolist()) - have):
        members = np.flatnonzero((pool.languages == language) & ~pool.labeled)
        if len(members) == 0:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(language.encode("utf-8"))])
        chosen = rng.choice(members, size=min(size, len(members)), replace=False)
        rows.extend((str(pool.ids[i]), language, now) for i in sorted(chosen))
    if rows:
        with store.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO stop_set (example_id, language, added_at) VALUES (?,?,?)",
                rows,
            )


def record_snapshot(
    store: Store,
    config: Config,
    pool: PoolArrays,
    predict: Callable[[np.ndarray], np.ndarray],  # vectors -> predicted label names
    *,
    fingerprint: str,
    f1: Mapping[str, float] | None,
    seed: int,
) -> bool:
    """The proxy's predictions on every stop set, once per labeled set; True when recorded."""
    ensure_stop_sets(store, config, pool, seed=seed)
    if store.conn.execute(
        "SELECT 1 FROM stop_snapshots WHERE fingerprint = ? LIMIT 1", (fingerprint,)
    ).fetchone():
        return False
    members = store.conn.execute(
        "SELECT example_id, language FROM stop_set ORDER BY example_id"
    ).fetchall()
    position = {str(example_id): i for i, example_id in enumerate(pool.ids.tolist())}
    present = [(e, lang) for e, lang in members if e in position]
    if not present:
        return False
    rows = np.asarray([position[e] for e, _ in present])
    predicted = predict(pool.vectors[rows])
    now = utc_now()
    labeled_counts = {
        language: int(((pool.languages == language) & pool.labeled).sum())
        for language in {lang for _, lang in present}
    }
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO stop_predictions (fingerprint, example_id, predicted) VALUES (?,?,?)",
            [(fingerprint, e, str(p)) for (e, _), p in zip(present, predicted, strict=True)],
        )
        conn.executemany(
            "INSERT INTO stop_snapshots (fingerprint, language, created_at, labels, f1) "
            "VALUES (?,?,?,?,?)",
            [
                (fingerprint, language, now, count, None if not f1 else f1.get(language))
                for language, count in sorted(labeled_counts.items())
            ],
        )
    return True


def stopping_rule(config: Config) -> StoppingRule:
    """The rule `[selection.stopping]` configures (select, and `curate simulate --stopping`)."""
    from selection.stopping import StoppingRule

    settings = config.selection.stopping
    return StoppingRule(
        window=settings.window,
        min_kappa=settings.min_kappa,
        min_gain_per_100=settings.min_gain_per_100,
        min_labels=settings.min_labels,
    )


def decide(store: Store, config: Config, languages: Iterable[str]) -> dict:
    """StopDecision per language (only languages with a stop set)."""
    from selection.stopping import LanguageHistory

    rule = stopping_rule(config)
    histories = {}
    for language in sorted(set(languages)):
        members = [
            row[0]
            for row in store.conn.execute(
                "SELECT example_id FROM stop_set WHERE language = ? ORDER BY example_id",
                (language,),
            )
        ]
        if not members:
            continue
        snapshots = store.conn.execute(
            "SELECT fingerprint, labels, f1 FROM stop_snapshots WHERE language = ? "
            "ORDER BY created_at, rowid",
            (language,),
        ).fetchall()
        predictions, labels, f1 = [], [], []
        for fingerprint, count, value in snapshots:
            by_example = dict(
                store.conn.execute(
                    "SELECT p.example_id, p.predicted FROM stop_predictions p JOIN stop_set s "
                    "ON s.example_id = p.example_id WHERE p.fingerprint = ? AND s.language = ?",
                    (fingerprint, language),
                ).fetchall()
            )
            if len(by_example) != len(members):
                continue  # a snapshot from before this language's stop set existed
            predictions.append([by_example[e] for e in members])
            labels.append(count)
            f1.append(value)
        if predictions:
            histories[language] = LanguageHistory(predictions, labels, f1)
    return rule.decide(histories)
