"""`curate adjudicate`: the examples the crowd could not settle, and a person's final word.

The queue (`adjudication_queue`) is rebuilt by every pull: ties, low agreement, all-skipped
examples, and crowd majorities that contradict an imported label. `set_label` writes a label with
source `adjudicated`, which later pulls never overwrite, and takes the example off the queue.
"""

from __future__ import annotations

import json

from curation.config import Config
from curation.errors import InputError
from curation.store import Store, utc_now
from labeling.push import label_names


def adjudication_queue(store: Store, *, limit: int | None = None) -> list[dict]:
    """The queue with each example's language, text, votes and current label (if any)."""
    sql = (
        "SELECT q.example_id, q.reason, q.votes, q.agreement, q.updated_at, e.language, e.text, "
        "l.label, l.source FROM adjudication_queue q JOIN examples e ON e.id = q.example_id "
        "LEFT JOIN labels l ON l.example_id = q.example_id ORDER BY e.language, q.example_id"
    )
    params: tuple = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (limit,)
    return [
        {
            "example_id": row["example_id"],
            "language": row["language"],
            "reason": row["reason"],
            "votes": json.loads(row["votes"]),
            "agreement": row["agreement"],
            "current_label": row["label"],
            "current_source": row["source"],
            "text": row["text"],
        }
        for row in store.conn.execute(sql, params)
    ]


def set_label(store: Store, config: Config, example_id: str, label: str) -> dict:
    """Settle one example: label it (source `adjudicated`) and take it off the queue."""
    names = label_names(store, config)
    if label not in names:
        raise InputError(f"unknown label {label!r}; the label set is {', '.join(names)}")
    if not store.conn.execute("SELECT 1 FROM examples WHERE id = ?", (example_id,)).fetchone():
        raise InputError(f"no example {example_id!r} in the store")
    with store.transaction() as conn:
        before = conn.execute(
            "SELECT label, source FROM labels WHERE example_id = ?", (example_id,)
        ).fetchone()
        queued = conn.execute(
            "DELETE FROM adjudication_queue WHERE example_id = ?", (example_id,)
        ).rowcount
        conn.execute(
            "INSERT INTO labels (example_id, label, source, updated_at) "
            "VALUES (?, ?, 'adjudicated', ?) ON CONFLICT (example_id) DO UPDATE SET "
            "label = excluded.label, source = excluded.source, updated_at = excluded.updated_at",
            (example_id, label, utc_now()),
        )
    return {
        "example_id": example_id,
        "label": label,
        "source": "adjudicated",
        "previous": None if before is None else {"label": before[0], "source": before[1]},
        "was_queued": bool(queued),
    }
