"""Small SQL helpers shared by push and pull."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

# Far below SQLite's limit on host parameters per statement (32766 by default, 999 before 3.32).
IN_BATCH = 900


def select_in(
    conn: sqlite3.Connection, sql: str, ids: Sequence[str], *, params: Sequence = ()
) -> Iterator[sqlite3.Row]:
    """Run `sql` (with one `{ids}` placeholder for an IN list) over `ids` in batches."""
    ids = list(ids)
    for start in range(0, len(ids), IN_BATCH):
        part = ids[start : start + IN_BATCH]
        yield from conn.execute(sql.format(ids=",".join("?" * len(part))), [*params, *part])
