"""The pool as Parquet shards, for a distributed engine to read (curation.ray_engine).

Ingest appends the examples it stores to the SQLite store (the source of truth); this module
mirrors them into ``<store>/pool/part-NNNNNN.parquet`` files (columns ``id``, ``text``,
``language``), each covering one range of example rowids. Examples are never deleted or
rewritten, so a shard is final once written, and "which examples are not in a shard yet" is
simply "rowid above the last shard's last rowid". `curate ingest` (and the nightly ingest stage)
write the shards of what they added; the Ray engine syncs before it reads, which also fills in
the shards of a store made before this existed.

Crash safety is the vector shards' (curation.embeddings): a file is written to ``.tmp``, fsynced
and renamed, then recorded in ``pool_shards`` in the same write transaction; a file no committed
row names is an orphan of a killed writer and is deleted under the write lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from curation.store import Store, delete_unrecorded_files, utc_now

__all__ = ["PoolShard", "pool_folder", "pool_shards", "sync_pool_shards"]

POOL_FOLDER = "pool"
#: Rows per Parquet row group: the unit a distributed reader hands to one worker, so that a
#: single large shard still feeds every embedding actor.
ROW_GROUP_ROWS = 2048


@dataclass(frozen=True)
class PoolShard:
    """One Parquet shard of the pool: the examples with ``first_rowid <= rowid <= last_rowid``."""

    shard: int
    path: Path
    rows: int
    first_rowid: int
    last_rowid: int


def pool_folder(store: Store) -> Path:
    return store.path / POOL_FOLDER


def pool_shards(store: Store) -> list[PoolShard]:
    """The recorded shards, in pool (rowid) order."""
    folder = pool_folder(store)
    return [
        PoolShard(int(shard), folder / path, int(rows), int(first), int(last))
        for shard, path, rows, first, last in store.conn.execute(
            "SELECT shard, path, rows, first_rowid, last_rowid FROM pool_shards ORDER BY shard"
        )
    ]


def sync_pool_shards(store: Store, *, rows_per_shard: int = 100_000) -> list[PoolShard]:
    """Write the examples no shard covers yet as new shards of at most ``rows_per_shard`` rows;
    returns the shards written (none when the pool is covered). Idempotent and safe against a
    second writer: it runs under the store's write lock."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
    folder = pool_folder(store)
    written: list[PoolShard] = []
    paths: list[Path] = []
    try:
        with store.transaction() as conn:
            _remove_orphans(store)
            covered = conn.execute("SELECT COALESCE(MAX(last_rowid), 0) FROM pool_shards")
            after = int(covered.fetchone()[0])
            shard = int(
                conn.execute("SELECT COALESCE(MAX(shard), 0) FROM pool_shards").fetchone()[0]
            )
            cursor = conn.execute(
                "SELECT rowid, id, text, language FROM examples WHERE rowid > ? ORDER BY rowid",
                (after,),
            )
            while rows := cursor.fetchmany(rows_per_shard):
                shard += 1
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"part-{shard:06d}.parquet"
                paths.append(path)
                table = pa.table(
                    {
                        "id": pa.array([row[1] for row in rows], type=pa.string()),
                        "text": pa.array([row[2] for row in rows], type=pa.string()),
                        "language": pa.array([row[3] for row in rows], type=pa.string()),
                    }
                )
                temporary = path.with_suffix(".parquet.tmp")
                pq.write_table(table, temporary, row_group_size=ROW_GROUP_ROWS)
                with open(temporary, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
                record = PoolShard(shard, path, len(rows), int(rows[0][0]), int(rows[-1][0]))
                store.conn.execute(
                    "INSERT INTO pool_shards (shard, path, rows, first_rowid, last_rowid, "
                    "created_at) VALUES (?,?,?,?,?,?)",
                    (
                        shard,
                        path.name,
                        record.rows,
                        record.first_rowid,
                        record.last_rowid,
                        utc_now(),
                    ),
                )
                written.append(record)
    except BaseException:
        if not store.conn.in_transaction:
            # rolled back: no row names these files
            for path in paths:
                path.unlink(missing_ok=True)
                path.with_suffix(".parquet.tmp").unlink(missing_ok=True)
        raise
    return written


def _remove_orphans(store: Store) -> int:
    """Delete files in the pool folder that no committed row names (a killed writer's).
    Called inside the write transaction."""
    recorded = {row[0] for row in store.conn.execute("SELECT path FROM pool_shards")}
    return delete_unrecorded_files(pool_folder(store), recorded)
