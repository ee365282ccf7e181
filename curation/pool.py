"""Arrays of the pool as the selection step needs them, and selection rounds in the store.

`load_pool` joins examples, their current labels and their cached vectors into aligned NumPy
arrays (only examples that have a vector for the configured model: the count of the others is
reported so callers can say "run curate embed"). `record_round` writes a selection round and its
items in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from curation.config import Config
from curation.embeddings import EmbeddingCache
from curation.store import Store, utc_now


@dataclass(frozen=True)
class PoolArrays:
    """Aligned arrays over the embedded examples of a store."""

    ids: np.ndarray  # object array of example ids
    languages: np.ndarray  # object array of language tags
    labels: np.ndarray  # object array: label name, or None when unlabeled
    vectors: np.ndarray  # float32 (n, dim)
    selected_before: np.ndarray  # bool: in an earlier selection round
    pending: np.ndarray  # bool: pushed to Label Studio and not labeled yet
    not_embedded: int  # examples left out because they have no vector yet

    @property
    def labeled(self) -> np.ndarray:
        return np.array([label is not None for label in self.labels], dtype=bool)

    def __len__(self) -> int:
        return len(self.ids)


def selected_and_pending(store: Store) -> tuple[set[str], set[str]]:
    """Ids picked by an earlier selection round, and ids pushed to Label Studio and not
    labeled yet."""
    selected = {row[0] for row in store.conn.execute("SELECT example_id FROM round_items")}
    pending = {
        row[0]
        for row in store.conn.execute(
            "SELECT t.example_id FROM tasks t LEFT JOIN labels l ON l.example_id = t.example_id "
            "WHERE l.example_id IS NULL"
        )
    }
    return selected, pending


def load_pool(store: Store, config: Config) -> PoolArrays:
    cache = EmbeddingCache.for_config(store, config)
    ids, vectors = cache.load()
    info = {
        row[0]: (row[1], row[2])
        for row in store.conn.execute(
            "SELECT e.id, e.language, l.label FROM examples e "
            "LEFT JOIN labels l ON l.example_id = e.id"
        )
    }
    selected, pending = selected_and_pending(store)
    return PoolArrays(
        ids=np.asarray(ids, dtype=object),
        languages=np.asarray([info[i][0] for i in ids], dtype=object),
        labels=np.asarray([info[i][1] for i in ids], dtype=object),
        vectors=vectors,
        selected_before=np.asarray([i in selected for i in ids], dtype=bool),
        pending=np.asarray([i in pending for i in ids], dtype=bool),
        not_embedded=len(info) - len(ids),
    )


@dataclass(frozen=True)
class PoolIndex:
    """The embedded examples of one model in pool order (vector shard, row), without their
    vectors: ``pool`` has them all with vectors of width 0; ``shard``, ``row`` and ``files``
    are aligned with it."""

    pool: PoolArrays
    shard: np.ndarray
    row: np.ndarray
    files: np.ndarray

    def subset(self, rows: np.ndarray, vectors: np.ndarray) -> PoolArrays:
        """The pool's ``rows`` (positions, in pool order) with their ``vectors``."""
        pool = self.pool
        return PoolArrays(
            ids=pool.ids[rows],
            languages=pool.languages[rows],
            labels=pool.labels[rows],
            vectors=vectors,
            selected_before=pool.selected_before[rows],
            pending=pool.pending[rows],
            not_embedded=pool.not_embedded,
        )


def pool_index(store: Store, cache: EmbeddingCache) -> PoolIndex:
    """What :func:`load_pool` gives, in its order, but no vector: for callers that load only
    some rows' vectors (the Ray engine, the nightly's view of a large pool)."""
    mapping = store.conn.execute(
        "SELECT m.example_id, m.shard, m.row, e.language, l.label, e.file FROM embeddings m "
        "JOIN examples e ON e.id = m.example_id LEFT JOIN labels l ON l.example_id = m.example_id "
        "WHERE m.model = ? ORDER BY m.shard, m.row",
        (cache.key,),
    ).fetchall()
    ids = np.asarray([r[0] for r in mapping], dtype=object)
    selected, pending = selected_and_pending(store)
    total = store.conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
    pool = PoolArrays(
        ids=ids,
        languages=np.asarray([r[3] for r in mapping], dtype=object),
        labels=np.asarray([r[4] for r in mapping], dtype=object),
        vectors=np.zeros((len(ids), 0), dtype=np.float32),
        selected_before=np.fromiter((i in selected for i in ids), dtype=bool, count=len(ids)),
        pending=np.fromiter((i in pending for i in ids), dtype=bool, count=len(ids)),
        not_embedded=total - len(ids),
    )
    return PoolIndex(
        pool,
        np.asarray([r[1] for r in mapping], dtype=np.int64),
        np.asarray([r[2] for r in mapping], dtype=np.int64),
        np.asarray([r[5] for r in mapping], dtype=object),
    )


def load_pool_view(
    store: Store,
    config: Config,
    *,
    files: Sequence[str] = (),
    per_language: int = 20_000,
    seed: int = 0,
) -> PoolArrays:
    """:class:`PoolArrays` of part of the pool, in pool order: every labeled example, every
    example first read from one of ``files`` (tonight's batch), and a seeded uniform sample of
    up to ``per_language`` of the other examples of each language. What the nightly evaluate
    stage needs (the proxy's evaluation and the label review read the labeled rows only; the
    drift checks compare the batch with the labeled rows, or with the language's earlier rows
    when it has few labels) without every vector of a pool that does not fit on one machine
    (the Ray engine's case)."""
    cache = EmbeddingCache.for_config(store, config)
    index = pool_index(store, cache)
    full = index.pool
    keep = full.labeled | np.isin(index.files, list(files))
    rng = np.random.default_rng(seed)
    for language in sorted(set(full.languages[~keep].tolist())):
        members = np.flatnonzero(~keep & (full.languages == language))
        if len(members) > per_language:
            members = rng.choice(members, size=per_language, replace=False)
        keep[members] = True
    rows = np.flatnonzero(keep)
    _, vectors = cache.load(full.ids[rows].tolist())
    return index.subset(rows, vectors)


@dataclass(frozen=True)
class RoundItem:
    example_id: str
    rank: int
    score: float | None
    reason: str
    predicted_label: str | None = None
    predicted_score: float | None = None
    is_control: bool = False


def record_round(
    store: Store,
    *,
    strategy: str,
    allocation: str,
    budget: int,
    decision: dict,
    proxy_model_version: str | None,
    items: Sequence[RoundItem],
) -> int:
    """Store a selection round with its items; returns the round id."""
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO selection_rounds (created_at, strategy, allocation, budget, "
            "allocation_decision, proxy_model_version, status) VALUES (?,?,?,?,?,?, 'selected')",
            (
                utc_now(),
                strategy,
                allocation,
                budget,
                json.dumps(decision, ensure_ascii=False, sort_keys=True),
                proxy_model_version,
            ),
        )
        round_id = int(cursor.lastrowid)
        conn.executemany(
            "INSERT INTO round_items (round_id, example_id, rank, score, reason, "
            "predicted_label, predicted_score, is_control) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    round_id,
                    item.example_id,
                    item.rank,
                    item.score,
                    item.reason,
                    item.predicted_label,
                    item.predicted_score,
                    int(item.is_control),
                )
                for item in items
            ],
        )
    return round_id
