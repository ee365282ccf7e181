"""Every number the dashboard shows comes from one of these read-only queries.

Each function takes a read-only :class:`curation.store.Store` and returns plain data (pandas
frames, dicts, lists) that Streamlit can cache. Each is defensive about the schema: a table or a
column that this store does not have (an older store, or a table another part of the tool has not
added yet) gives an empty result, never an exception. `TABLES` names the store table(s) each
result comes from, so a page can say where a number was read.

Tables read today: examples, duplicates, quarantine, labels, label_set, embedding_shards,
embeddings, selection_rounds, round_items, tasks, annotations, training_runs, and, when the store
has schema version 2: runs, run_steps, evaluations.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curation.languages import standardize_tag
from curation.store import Store

UNKNOWN_LANGUAGE = "(unknown)"
MAP_MAX_POINTS = 5000
TEXT_PREVIEW = 300  # characters of a text shown in tables (full text: the example's row)


# -- schema helpers ------------------------------------------------------------------------------


def has_table(store: Store, name: str) -> bool:
    row = store.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
    ).fetchone()
    return row is not None


def columns(store: Store, table: str) -> set[str]:
    if not has_table(store, table):
        return set()
    return {row[1] for row in store.conn.execute(f"PRAGMA table_info({table})")}


def has_columns(store: Store, table: str, needed: Iterable[str]) -> bool:
    present = columns(store, table)
    return bool(present) and set(needed) <= present


def pick(store: Store, table: str, alias: str, wanted: Sequence[str]) -> str:
    """``alias.column`` for each wanted column the table has, ``NULL AS column`` otherwise."""
    present = columns(store, table)
    return ", ".join(f"{alias}.{c}" if c in present else f"NULL AS {c}" for c in wanted)


def frame(store: Store, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    cursor = store.conn.execute(sql, tuple(params))
    names = [d[0] for d in cursor.description]
    return pd.DataFrame.from_records(cursor.fetchall(), columns=names)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def _counts_by_language(store: Store, sql: str) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in store.conn.execute(sql)}


# -- overview -----------------------------------------------------------------------------------


def _csv_header(path: str) -> tuple[list[str], str] | None:
    """The header and delimiter of a CSV/TSV file, as ingest reads them; None when the file is
    gone or unreadable (its quarantined rows then count under "(unknown)")."""
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            for fields in csv.reader(handle, delimiter=delimiter):
                if any(name.strip() for name in fields):  # ingest skips blank lines too
                    return [name.strip().lstrip("\ufeff") for name in fields], delimiter
    except (OSError, csv.Error):
        return None
    return None


class _QuarantineLanguage:
    """The language of a quarantined row, read from its raw row: a JSON object's `language`,
    or a CSV line's `language` column (by its file's header). The standard form of the tag
    when it is valid BCP-47 (as the pool's codes are), else "(unknown)"."""

    def __init__(self) -> None:
        self._headers: dict[str, tuple[list[str], str] | None] = {}
        self._tags: dict[str, str] = {}

    def __call__(self, file: str | None, raw: str | None) -> str:
        tag = self._raw_tag(file, raw)
        if not isinstance(tag, str):
            return UNKNOWN_LANGUAGE
        if tag not in self._tags:
            self._tags[tag] = standardize_tag(tag) or UNKNOWN_LANGUAGE
        return self._tags[tag]

    def _raw_tag(self, file: str | None, raw: str | None) -> Any:
        if raw is None:
            return None
        value = _json(raw)
        if isinstance(value, dict):  # a JSON line, or a Parquet row stored as JSON
            return value.get("language")
        if file is None or not file.lower().endswith((".csv", ".tsv")):
            return None
        if file not in self._headers:
            self._headers[file] = _csv_header(file)
        found = self._headers[file]
        if found is None or "language" not in found[0]:
            return None
        header, delimiter = found
        try:
            fields = next(csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter), [])
        except csv.Error:
            return None
        # A malformed row (a field count off the header) has no trustworthy language column.
        return fields[header.index("language")] if len(fields) == len(header) else None


def quarantine_languages(store: Store) -> dict[str, int]:
    """Quarantined rows per language written in the rejected row, when it is a valid BCP-47 tag;
    the rest under "(unknown)"."""
    if not has_table(store, "quarantine"):
        return {}
    language_of = _QuarantineLanguage()
    counts: Counter[str] = Counter()
    for file, raw in store.conn.execute("SELECT file, raw FROM quarantine"):
        counts[language_of(file, raw)] += 1
    return dict(counts)


# `tasks.project_id` of examples written to a Label Studio import file instead of a server
# (`curate push --to FILE`, and the nightly push with no Label Studio configured): they are in
# no Label Studio project yet. The same value as labeling.push.OFFLINE_PROJECT (a test checks),
# kept here so the dashboard does not import the HTTP client to read one number.
IMPORT_FILE_PROJECT = 0


def unlabeled_tasks(store: Store) -> dict[str, dict[str, int]]:
    """Unlabeled examples with a task, per language, apart by where the task is:
    ``in_label_studio`` (a Label Studio project) and ``written_to_file`` (only an import file).
    An example both written to a file and pushed to a server counts as in Label Studio."""
    out: dict[str, dict[str, int]] = {"in_label_studio": {}, "written_to_file": {}}
    if not has_columns(store, "tasks", ("example_id", "project_id")):
        return out
    labels = has_table(store, "labels")
    rows = store.conn.execute(
        "SELECT e.language, SUM(t.in_studio), SUM(1 - t.in_studio) FROM "
        "(SELECT example_id, MAX(project_id != ?) AS in_studio FROM tasks GROUP BY example_id) t "
        "CROSS JOIN examples e ON e.id = t.example_id "
        + (
            "LEFT JOIN labels l ON l.example_id = t.example_id WHERE l.example_id IS NULL "
            if labels
            else ""
        )
        + "GROUP BY e.language",
        (IMPORT_FILE_PROJECT,),
    ).fetchall()
    for language, in_studio, to_file in rows:
        if in_studio:
            out["in_label_studio"][language] = int(in_studio)
        if to_file:
            out["written_to_file"][language] = int(to_file)
    return out


def overview(store: Store) -> dict[str, Any]:
    """Totals and one row per language: pool, labeled, in Label Studio, quarantined, ...

    * pool: ``examples`` rows (distinct normalized texts);
    * labeled: ``labels`` rows (a current verified label, any source);
    * in_label_studio: ``tasks`` in a Label Studio project whose example has no label yet
      (pushed, waiting for annotators);
    * written_to_file: ``tasks`` only written to a Label Studio import file (no server was
      configured), example not labeled yet;
    * selected: examples in any ``round_items`` row;
    * embedded: examples with a vector (any model) in ``embeddings``;
    * quarantined: ``quarantine`` rows, by the language written in the rejected row.
    """
    per: dict[str, dict[str, int]] = {}

    def put(column: str, counts: dict[str, int]) -> None:
        for language, count in counts.items():
            per.setdefault(language, {})[column] = count

    if has_table(store, "examples"):
        put(
            "pool",
            _counts_by_language(store, "SELECT language, COUNT(*) FROM examples GROUP BY language"),
        )
    if has_table(store, "labels"):
        put(
            "labeled",
            _counts_by_language(
                store,
                "SELECT e.language, COUNT(*) FROM labels l CROSS JOIN examples e "
                "ON e.id = l.example_id GROUP BY e.language",
            ),
        )
    if has_table(store, "tasks") and has_table(store, "examples"):
        for column, counts in unlabeled_tasks(store).items():
            put(column, counts)
    if has_table(store, "round_items"):
        put(
            "selected",
            _counts_by_language(
                store,
                "SELECT e.language, COUNT(DISTINCT r.example_id) FROM round_items r "
                "CROSS JOIN examples e ON e.id = r.example_id GROUP BY e.language",
            ),
        )
    if has_table(store, "embeddings"):
        put(
            "embedded",
            _counts_by_language(
                store,
                "SELECT e.language, COUNT(DISTINCT m.example_id) FROM embeddings m "
                "CROSS JOIN examples e ON e.id = m.example_id GROUP BY e.language",
            ),
        )
    put("quarantined", quarantine_languages(store))
    order = [
        "pool",
        "labeled",
        "in_label_studio",
        "written_to_file",
        "selected",
        "embedded",
        "quarantined",
    ]
    table = pd.DataFrame(
        [{"language": code, **{c: per[code].get(c, 0) for c in order}} for code in sorted(per)],
        columns=["language", *order],
    )
    duplicates = (
        store.conn.execute("SELECT COUNT(*) FROM duplicates").fetchone()[0]
        if has_table(store, "duplicates")
        else 0
    )
    quarantined = (
        store.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        if has_table(store, "quarantine")
        else 0
    )
    return {
        "per_language": table,
        "totals": {
            "pool": int(table["pool"].sum()),
            "labeled": int(table["labeled"].sum()),
            "in_label_studio": int(table["in_label_studio"].sum()),
            "written_to_file": int(table["written_to_file"].sum()),
            "selected": int(table["selected"].sum()),
            "embedded": int(table["embedded"].sum()),
            "quarantined": int(quarantined),
            "duplicates": int(duplicates),
        },
    }


POOL_STATUSES = (
    "labeled",
    "in Label Studio",
    "written to file",
    "selected, not pushed",
    "unlabeled",
)


def pool_status(store: Store) -> pd.DataFrame:
    """The pool per language split into disjoint statuses (they add up to the pool size):
    labeled (``labels``), else in Label Studio (``tasks`` of a project), else written to a
    Label Studio import file (``tasks`` of no project), else selected in a round
    (``round_items``) and not pushed yet, else unlabeled.

    Joins start from the small tables (CROSS JOIN fixes SQLite's loop order): no full scan of
    ``examples`` but its language index.
    """
    cols = ["language", "status", "examples"]
    if not has_table(store, "examples"):
        return pd.DataFrame(columns=cols)
    labels, tasks, items = (has_table(store, t) for t in ("labels", "tasks", "round_items"))
    pool = _counts_by_language(store, "SELECT language, COUNT(*) FROM examples GROUP BY language")
    parts: dict[str, dict[str, int]] = {}
    if labels:
        parts["labeled"] = _counts_by_language(
            store,
            "SELECT e.language, COUNT(*) FROM labels l CROSS JOIN examples e "
            "ON e.id = l.example_id GROUP BY e.language",
        )
    if tasks:
        waiting = unlabeled_tasks(store)
        parts["in Label Studio"] = waiting["in_label_studio"]
        parts["written to file"] = waiting["written_to_file"]
    if items:
        parts["selected, not pushed"] = _counts_by_language(
            store,
            "SELECT e.language, COUNT(*) FROM (SELECT DISTINCT example_id FROM round_items) r "
            "CROSS JOIN examples e ON e.id = r.example_id "
            + ("LEFT JOIN labels l ON l.example_id = r.example_id " if labels else "")
            + (
                "LEFT JOIN (SELECT DISTINCT example_id FROM tasks) t "
                "ON t.example_id = r.example_id "
                if tasks
                else ""
            )
            + "WHERE 1 "
            + ("AND l.example_id IS NULL " if labels else "")
            + ("AND t.example_id IS NULL " if tasks else "")
            + "GROUP BY e.language",
        )
    rows = []
    for language, total in sorted(pool.items()):
        rest = total
        for status in POOL_STATUSES[:-1]:
            count = parts.get(status, {}).get(language, 0)
            rest -= count
            if count:
                rows.append((language, status, count))
        if rest:
            rows.append((language, "unlabeled", rest))
    return pd.DataFrame(rows, columns=cols)


def round_budgets(store: Store) -> int:
    if not has_columns(store, "selection_rounds", ("budget",)):
        return 0
    return int(
        store.conn.execute("SELECT COALESCE(SUM(budget), 0) FROM selection_rounds").fetchone()[0]
    )


def labels_by_source(store: Store) -> dict[str, int]:
    if not has_columns(store, "labels", ("source",)):
        return {}
    return {
        row[0]: int(row[1])
        for row in store.conn.execute("SELECT source, COUNT(*) FROM labels GROUP BY source")
    }


def annotation_count(store: Store) -> int:
    """Annotations bought: pulled, not cancelled, not deleted."""
    if not has_columns(store, "annotations", ("was_cancelled", "deleted")):
        return 0
    return int(
        store.conn.execute(
            "SELECT COUNT(*) FROM annotations WHERE was_cancelled = 0 AND deleted = 0"
        ).fetchone()[0]
    )


def last_nightly_run(store: Store) -> dict[str, Any] | None:
    """The latest `curate run` (table `runs`, schema v2) with its stages (`run_steps`)."""
    if not has_columns(store, "runs", ("id", "started_at", "status")):
        return None
    row = store.conn.execute("SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1")
    names = [d[0] for d in row.description]
    values = row.fetchone()
    if values is None:
        return None
    run = dict(zip(names, values, strict=True))
    run["warnings"] = _json(run.get("warnings"))
    steps = pd.DataFrame()
    if has_columns(store, "run_steps", ("run_id", "stage", "status")):
        steps = frame(
            store, "SELECT * FROM run_steps WHERE run_id = ? ORDER BY started_at", (run["id"],)
        )
        if "counts" in steps:
            steps["counts"] = steps["counts"].map(
                lambda v: "" if v is None else json.dumps(_json(v), ensure_ascii=False)
            )
    run["steps"] = steps
    run["total_runs"] = int(store.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    return run


# -- selection ----------------------------------------------------------------------------------


def rounds(store: Store) -> pd.DataFrame:
    """One row per selection round with how many it chose (and how many as random control)."""
    cols = [
        "round",
        "created_at",
        "strategy",
        "allocation",
        "budget",
        "selected",
        "control",
        "status",
        "proxy_model_version",
    ]
    if not has_columns(store, "selection_rounds", ("id", "strategy", "budget")):
        return pd.DataFrame(columns=cols)
    items = has_table(store, "round_items")
    control = "SUM(is_control)" if "is_control" in columns(store, "round_items") else "0"
    sql = (
        "SELECT s.id AS round, "
        + pick(store, "selection_rounds", "s", ["created_at", "strategy", "allocation", "budget"])
        + ", "
        + (
            "COALESCE(c.selected, 0) AS selected, COALESCE(c.control, 0) AS control, "
            if items
            else "0 AS selected, 0 AS control, "
        )
        + pick(store, "selection_rounds", "s", ["status", "proxy_model_version"])
        + " FROM selection_rounds s "
        + (
            f"LEFT JOIN (SELECT round_id, COUNT(*) AS selected, {control} AS control "
            "FROM round_items GROUP BY round_id) c ON c.round_id = s.id "
            if items
            else ""
        )
        + "ORDER BY s.id"
    )
    return frame(store, sql)


def round_language_counts(store: Store) -> pd.DataFrame:
    """(round, language, selected, control) for the rounds-over-time chart."""
    cols = ["round", "language", "selected", "control"]
    if not has_table(store, "round_items"):
        return pd.DataFrame(columns=cols)
    control = "SUM(r.is_control)" if "is_control" in columns(store, "round_items") else "0"
    return frame(
        store,
        f"SELECT r.round_id AS round, e.language, COUNT(*) AS selected, {control} AS control "
        "FROM round_items r CROSS JOIN examples e ON e.id = r.example_id "
        "GROUP BY r.round_id, e.language ORDER BY r.round_id, e.language",
    )


def round_items(store: Store, round_id: int) -> pd.DataFrame:
    """A round's picks in rank order: language, text, score, reason, prediction, label now."""
    cols = [
        "rank",
        "example_id",
        "language",
        "text",
        "score",
        "reason",
        "predicted_label",
        "predicted_score",
        "control",
        "label_now",
    ]
    if not has_table(store, "round_items"):
        return pd.DataFrame(columns=cols)
    picked = pick(
        store,
        "round_items",
        "r",
        ["score", "reason", "predicted_label", "predicted_score", "is_control"],
    )
    table = frame(
        store,
        f"SELECT r.rank, r.example_id, e.language, substr(e.text, 1, {TEXT_PREVIEW}) AS text, "
        f"{picked}, l.label AS label_now FROM round_items r "
        "CROSS JOIN examples e ON e.id = r.example_id "
        "LEFT JOIN labels l ON l.example_id = r.example_id "
        "WHERE r.round_id = ? ORDER BY r.rank",
        (int(round_id),),
    ).rename(columns={"is_control": "control"})
    table["control"] = table["control"].fillna(0).astype(bool)
    return table.reindex(columns=cols)


def round_decision(store: Store, round_id: int) -> dict[str, Any]:
    """The allocator's stored decision for a round (``allocation_decision`` JSON), as a table."""
    if not has_columns(store, "selection_rounds", ("id", "allocation_decision")):
        return {}
    row = store.conn.execute(
        "SELECT allocation_decision FROM selection_rounds WHERE id = ?", (int(round_id),)
    ).fetchone()
    decision = _json(row[0]) if row else None
    if not isinstance(decision, dict):
        return {}
    per_language = decision.get("per_language") or {}
    explanations = decision.get("explanations") or {}
    f1 = decision.get("validation_f1") or {}
    uncertainty = decision.get("mean_uncertainty") or {}
    codes = sorted(set(per_language) | set(explanations) | set(f1) | set(uncertainty))
    table = pd.DataFrame(
        [
            {
                "language": code,
                "allocated": per_language.get(code),
                "validation_f1": f1.get(code),
                "mean_uncertainty": uncertainty.get(code),
                "explanation": explanations.get(code, ""),
            }
            for code in codes
        ],
        columns=["language", "allocated", "validation_f1", "mean_uncertainty", "explanation"],
    )
    return {
        "method": decision.get("method"),
        "budget": decision.get("budget"),
        "total": decision.get("total"),
        "table": table,
    }


def proxy_f1_by_round(store: Store) -> pd.DataFrame:
    """Per-language validation macro-F1 of the proxy at each round (``validation_f1``)."""
    cols = ["round", "created_at", "language", "macro_f1"]
    if not has_columns(store, "selection_rounds", ("id", "allocation_decision")):
        return pd.DataFrame(columns=cols)
    rows = []
    for round_id, created, raw in store.conn.execute(
        "SELECT id, created_at, allocation_decision FROM selection_rounds ORDER BY id"
    ):
        decision = _json(raw)
        if not isinstance(decision, dict):
            continue
        for code, value in (decision.get("validation_f1") or {}).items():
            if isinstance(value, int | float):
                rows.append((round_id, created, code, float(value)))
    return pd.DataFrame(rows, columns=cols)


def embedding_models(store: Store) -> pd.DataFrame:
    if not has_columns(store, "embedding_shards", ("model", "rows", "dim")):
        return pd.DataFrame(columns=["model", "rows", "dim"])
    return frame(
        store,
        "SELECT model, SUM(rows) AS rows, MAX(dim) AS dim FROM embedding_shards "
        "GROUP BY model ORDER BY SUM(rows) DESC",
    )


def pick_model_key(store: Store, preferred: str | None) -> str | None:
    """The configured model's key when the store has its vectors, else the biggest cache."""
    models = embedding_models(store)
    if models.empty:
        return None
    if preferred is not None and preferred in set(models["model"]):
        return preferred
    return str(models.iloc[0]["model"])


def _project(vectors: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, str]:
    if len(vectors) == 0:
        return np.zeros((0, 2), dtype=np.float32), method
    if method == "umap" and len(vectors) >= 10:
        try:
            import umap  # optional: only where installed

            reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=15)
            return reducer.fit_transform(vectors).astype(np.float32), "umap"
        except ImportError:
            pass
    from sklearn.decomposition import PCA  # here: the Overview page starts without sklearn

    data = np.asarray(vectors, dtype=np.float64)
    if len(data) < 2 or not np.ptp(data, axis=0).any():
        return np.zeros((len(data), 2), dtype=np.float32), "pca"
    # covariance_eigh: one (dim x dim) covariance and its eigendecomposition, far cheaper than
    # an SVD of the (n x dim) matrix for n >> dim (5000 x 384 here). sklearn flips signs so the
    # largest loading of each component is positive: the map keeps its orientation across runs.
    n_components = min(2, *data.shape)
    pca = PCA(n_components=n_components, svd_solver="covariance_eigh", random_state=seed)
    points = pca.fit_transform(data)
    if n_components < 2:  # one-dimensional vectors: the second axis is flat
        points = np.hstack([points, np.zeros((len(points), 1))])
    return points.astype(np.float32), "pca"


def pool_map(
    store: Store,
    model_key: str | None,
    *,
    method: str = "pca",
    max_points: int = MAP_MAX_POINTS,
    seed: int = 0,
) -> dict[str, Any]:
    """2-D map (PCA, or UMAP where installed) of a sample of the embedded pool.

    Every pick of the latest round is kept; the rest is a seeded uniform sample, so at most
    `max_points` points go to the browser. Status: ``selected (latest round)``, ``labeled``,
    ``selected earlier``, ``unlabeled``.
    """
    from curation.embeddings import EmbeddingCache

    empty = {
        "points": pd.DataFrame(columns=["x", "y", "example_id", "language", "status"]),
        "total": 0,
        "shown": 0,
        "method": method,
        "model": model_key,
    }
    if model_key is None or not has_table(store, "embeddings"):
        return empty
    latest = None
    if has_table(store, "selection_rounds"):
        latest = store.conn.execute("SELECT MAX(id) FROM selection_rounds").fetchone()[0]
    items = has_table(store, "round_items")
    labels = has_table(store, "labels")
    sql = (
        "SELECT m.example_id, e.language, "
        + ("(l.example_id IS NOT NULL) " if labels else "0 ")
        + "AS labeled, "
        + ("r.last_round AS last_round " if items else "NULL AS last_round ")
        + "FROM embeddings m JOIN examples e ON e.id = m.example_id "
        + ("LEFT JOIN labels l ON l.example_id = m.example_id " if labels else "")
        + (
            "LEFT JOIN (SELECT example_id, MAX(round_id) AS last_round FROM round_items "
            "GROUP BY example_id) r ON r.example_id = m.example_id "
            if items
            else ""
        )
        + "WHERE m.model = ?"
    )
    table = frame(store, sql, (model_key,))
    total = len(table)
    if total == 0:
        return empty
    in_latest = (
        (table["last_round"] == latest).to_numpy()
        if latest is not None
        else np.zeros(total, dtype=bool)
    )
    keep = np.flatnonzero(in_latest)[:max_points]
    rest = np.flatnonzero(~in_latest)
    room = max_points - len(keep)
    if room > 0 and len(rest):
        rng = np.random.default_rng(seed)
        keep = np.concatenate([keep, rng.choice(rest, size=min(room, len(rest)), replace=False)])
    keep.sort()
    sample = table.iloc[keep].reset_index(drop=True)
    ids, vectors = EmbeddingCache(store, model_key).load(sample["example_id"].tolist())
    points, used = _project(vectors, method, seed)
    status = np.where(
        sample["last_round"].eq(latest).to_numpy() if latest is not None else False,
        "selected (latest round)",
        np.where(
            sample["labeled"].astype(bool).to_numpy(),
            "labeled",
            np.where(sample["last_round"].notna().to_numpy(), "selected earlier", "unlabeled"),
        ),
    )
    out = pd.DataFrame(
        {
            "x": points[:, 0],
            "y": points[:, 1],
            "example_id": ids,
            "language": sample["language"].to_numpy(),
            "status": status,
        }
    )
    return {"points": out, "total": total, "shown": len(out), "method": used, "model": model_key}


# -- labeling -----------------------------------------------------------------------------------


def labelstudio_progress(store: Store) -> pd.DataFrame:
    """Per language: tasks pushed, annotated (>= 1 valid annotation), labeled, pending, gold."""
    cols = ["language", "pushed", "annotated", "labeled", "pending", "gold"]
    if not has_columns(store, "tasks", ("example_id", "project_id", "task_id")):
        return pd.DataFrame(columns=cols)
    gold = "SUM(t.is_gold)" if "is_gold" in columns(store, "tasks") else "0"
    with_annotations = has_columns(
        store, "annotations", ("project_id", "task_id", "was_cancelled", "deleted")
    )
    table = frame(
        store,
        "SELECT e.language, COUNT(*) AS pushed, "
        + ("SUM(a.task_id IS NOT NULL) " if with_annotations else "0 ")
        + "AS annotated, SUM(l.example_id IS NOT NULL) AS labeled, "
        f"SUM(l.example_id IS NULL) AS pending, {gold} AS gold "
        "FROM tasks t CROSS JOIN examples e ON e.id = t.example_id "
        "LEFT JOIN labels l ON l.example_id = t.example_id "
        + (
            "LEFT JOIN (SELECT DISTINCT project_id, task_id FROM annotations "
            "WHERE was_cancelled = 0 AND deleted = 0) a "
            "ON a.project_id = t.project_id AND a.task_id = t.task_id "
            if with_annotations
            else ""
        )
        + "GROUP BY e.language ORDER BY e.language",
    )
    return table.reindex(columns=cols)


def annotations(store: Store) -> pd.DataFrame:
    """Valid annotations (not cancelled, not deleted) with the example's language and truth.

    ``gold_label``: the example's current label when its task is a gold task, else None.
    """
    cols = [
        "project_id",
        "task_id",
        "example_id",
        "annotator",
        "choice",
        "lead_time",
        "created_at",
        "language",
        "is_gold",
        "gold_label",
        "label_now",
        "label_source",
    ]
    need = (
        "project_id",
        "task_id",
        "example_id",
        "annotator",
        "choice",
        "was_cancelled",
        "deleted",
    )
    if not has_columns(store, "annotations", need):
        return pd.DataFrame(columns=cols)
    have = columns(store, "annotations")
    lead = "a.lead_time" if "lead_time" in have else "NULL"
    created = "a.created_at" if "created_at" in have else "NULL"
    gold_join = has_columns(store, "tasks", ("project_id", "example_id", "is_gold"))
    table = frame(
        store,
        f"SELECT a.project_id, a.task_id, a.example_id, a.annotator, a.choice, {lead} AS "
        f"lead_time, {created} AS created_at, e.language, "
        + ("COALESCE(t.is_gold, 0) AS is_gold, " if gold_join else "0 AS is_gold, ")
        + "l.label AS label_now, l.source AS label_source FROM annotations a "
        "CROSS JOIN examples e ON e.id = a.example_id "
        + (
            "LEFT JOIN tasks t ON t.project_id = a.project_id AND t.example_id = a.example_id "
            if gold_join
            else ""
        )
        + "LEFT JOIN labels l ON l.example_id = a.example_id "
        "WHERE a.was_cancelled = 0 AND a.deleted = 0",
    )
    table["is_gold"] = table["is_gold"].astype(bool)
    table["gold_label"] = table["label_now"].where(table["is_gold"], None)
    return table.reindex(columns=cols)


def cancelled_by_annotator(store: Store) -> dict[str, int]:
    if not has_columns(store, "annotations", ("annotator", "was_cancelled", "deleted")):
        return {}
    return {
        row[0]: int(row[1])
        for row in store.conn.execute(
            "SELECT annotator, COUNT(*) FROM annotations WHERE was_cancelled = 1 AND deleted = 0 "
            "GROUP BY annotator"
        )
    }


def example_texts(store: Store, ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    values = list(dict.fromkeys(ids))
    for start in range(0, len(values), 900):
        part = values[start : start + 900]
        for example_id, text in store.conn.execute(
            f"SELECT id, substr(text, 1, {TEXT_PREVIEW}) FROM examples "
            f"WHERE id IN ({','.join('?' * len(part))})",
            part,
        ):
            out[example_id] = text
    return out


# -- model --------------------------------------------------------------------------------------


def label_names(store: Store) -> list[str]:
    if not has_columns(store, "label_set", ("name", "position")):
        return []
    return [row[0] for row in store.conn.execute("SELECT name FROM label_set ORDER BY position")]


def training_runs(store: Store) -> list[dict[str, Any]]:
    """Every training run with its config and metrics JSON decoded (see training.runs)."""
    if not has_columns(store, "training_runs", ("id", "status")):
        return []
    table = frame(store, "SELECT * FROM training_runs ORDER BY rowid")
    records = []
    for record in table.to_dict("records"):
        record["config"] = _json(record.get("config")) or {}
        record["metrics"] = _json(record.get("metrics")) or {}
        records.append(record)
    return records


def evaluations(store: Store) -> pd.DataFrame:
    """Per-language macro-F1 over time (table `evaluations`, schema v2), one row per language."""
    cols = [
        "evaluation",
        "created_at",
        "run_id",
        "model",
        "labels",
        "language",
        "macro_f1",
        "mean_macro_f1",
        "worst_language_f1",
    ]
    if not has_columns(store, "evaluations", ("id", "model", "per_language")):
        return pd.DataFrame(columns=cols)
    have = columns(store, "evaluations")
    pick = ", ".join(
        c if c in have else f"NULL AS {c}"
        for c in (
            "id",
            "created_at",
            "run_id",
            "model",
            "labels",
            "mean_macro_f1",
            "worst_language_f1",
            "per_language",
        )
    )
    rows = []
    for row in store.conn.execute(f"SELECT {pick} FROM evaluations ORDER BY id"):
        per_language = _json(row[7]) or {}
        for code, value in per_language.items():
            if isinstance(value, int | float):
                rows.append(
                    (row[0], row[1], row[2], row[3], row[4], code, float(value), row[5], row[6])
                )
    return pd.DataFrame(rows, columns=cols)


def proxy_confusion(store: Store) -> pd.DataFrame:
    """The selection proxy's predicted label at selection time vs the label bought since.

    One row per (language, true, predicted, control). A proxy-level stand-in for a confusion
    matrix while no training run has stored one; the random control slice is unbiased.
    """
    cols = ["language", "true_label", "predicted_label", "control", "count"]
    if not has_columns(store, "round_items", ("predicted_label", "is_control")) or not (
        has_columns(store, "labels", ("label", "source"))
    ):
        return pd.DataFrame(columns=cols)
    return frame(
        store,
        "SELECT e.language, l.label AS true_label, r.predicted_label, r.is_control AS control, "
        "COUNT(*) AS count FROM round_items r CROSS JOIN labels l ON l.example_id = r.example_id "
        "CROSS JOIN examples e ON e.id = r.example_id WHERE r.predicted_label IS NOT NULL "
        "AND l.source != 'import' GROUP BY 1, 2, 3, 4",
    )


def simulation_files(store_path: Path) -> list[dict[str, Any]]:
    """`curate simulate` results saved under ``<store>/simulations/*.json``."""
    folder = Path(store_path) / "simulations"
    out = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("strategies"), dict):
            out.append({"name": path.name, "results": data})
    return out


# -- quality ------------------------------------------------------------------------------------


def quarantine_rows(store: Store, limit: int = 5000) -> dict[str, Any]:
    cols = ["id", "file", "line", "field", "reason", "raw", "source", "created_at"]
    if not has_columns(store, "quarantine", ("file", "reason")):
        return {
            "rows": pd.DataFrame(columns=cols),
            "total": 0,
            "by_reason": pd.DataFrame(columns=["reason", "rows"]),
        }
    total = int(store.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])
    rows = frame(store, "SELECT * FROM quarantine ORDER BY id DESC LIMIT ?", (limit,))
    by_reason = frame(
        store,
        "SELECT reason, COUNT(*) AS rows FROM quarantine GROUP BY reason ORDER BY rows DESC",
    )
    language_of = _QuarantineLanguage()
    languages = [
        language_of(file, raw)
        for file, raw in zip(
            rows.get("file", pd.Series(dtype=object)),
            rows.get("raw", pd.Series(dtype=object)),
            strict=True,
        )
    ]
    rows.insert(1, "language", languages)
    return {"rows": rows, "total": total, "by_reason": by_reason}


def exact_duplicate_clusters(store: Store, limit: int = 2000) -> dict[str, Any]:
    """Texts seen more than once: the stored example and how many later rows repeated it."""
    cols = ["example_id", "language", "text", "copies", "files"]
    if not has_columns(store, "duplicates", ("example_id", "file")):
        return {"clusters": pd.DataFrame(columns=cols), "total": 0, "rows": 0}
    clusters = frame(
        store,
        f"SELECT d.example_id, e.language, substr(e.text, 1, {TEXT_PREVIEW}) AS text, "
        "COUNT(*) + 1 AS copies, GROUP_CONCAT(DISTINCT d.file) AS files FROM duplicates d "
        "CROSS JOIN examples e ON e.id = d.example_id GROUP BY d.example_id "
        "ORDER BY copies DESC, d.example_id LIMIT ?",
        (limit,),
    )
    total, rows = store.conn.execute(
        "SELECT COUNT(DISTINCT example_id), COUNT(*) FROM duplicates"
    ).fetchone()
    return {"clusters": clusters, "total": int(total), "rows": int(rows)}


def similarity_components(unit: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components of the graph that links rows whose cosine is >= `threshold`.

    `unit` holds unit-length rows. Returns, per row, the smallest row index of its component
    (a stable name: the same rows give the same numbers). An exact FAISS range search gives the
    edges, already in CSR layout (`lims` are the row pointers); scipy labels the components.
    """
    import faiss
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import connected_components

    size = len(unit)
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    lims, _, neighbours = index.range_search(unit, float(threshold))
    edges = np.ones(len(neighbours), dtype=np.int8)
    graph = csr_array(
        (edges, neighbours.astype(np.int64), lims.astype(np.int64)), shape=(size, size)
    )
    count, labels = connected_components(graph, directed=False)
    smallest = np.full(count, size, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(size))
    return smallest[labels]


def near_duplicate_clusters(
    store: Store,
    model_key: str | None,
    *,
    threshold: float,
    languages: Sequence[str] | None = None,
    max_vectors: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Clusters of examples whose vectors have cosine similarity >= `threshold` (any language).

    Scans at most `max_vectors` embedded examples (a seeded sample beyond that, said in the
    result) with an exact FAISS range search; clusters are connected components.
    """
    from curation.embeddings import EmbeddingCache

    cols = ["cluster", "size", "languages", "example_id", "language", "text"]
    empty = {"members": pd.DataFrame(columns=cols), "clusters": 0, "scanned": 0, "total": 0}
    if model_key is None or not has_table(store, "embeddings"):
        return empty
    table = frame(
        store,
        "SELECT m.example_id, e.language FROM embeddings m JOIN examples e "
        "ON e.id = m.example_id WHERE m.model = ? ORDER BY m.shard, m.row",
        (model_key,),
    )
    if languages:
        table = table[table["language"].isin(list(languages))].reset_index(drop=True)
    total = len(table)
    if total < 2:
        return {**empty, "total": total, "scanned": total}
    if total > max_vectors:
        rng = np.random.default_rng(seed)
        table = table.iloc[np.sort(rng.choice(total, size=max_vectors, replace=False))]
        table = table.reset_index(drop=True)
    ids, vectors = EmbeddingCache(store, model_key).load(table["example_id"].tolist())
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.ascontiguousarray(vectors / np.where(norms == 0, 1, norms), dtype=np.float32)
    roots = similarity_components(unit, threshold)
    unique, counts = np.unique(roots, return_counts=True)
    multi = unique[counts > 1]
    if len(multi) == 0:
        return {**empty, "scanned": len(unit), "total": total}
    size = dict(zip(unique.tolist(), counts.tolist(), strict=True))
    order = sorted(multi.tolist(), key=lambda r: (-size[r], r))
    number = {root: k + 1 for k, root in enumerate(order)}
    member_rows = [i for i in range(len(unit)) if roots[i] in number]
    member_ids = [ids[i] for i in member_rows]
    texts = example_texts(store, member_ids)
    members = pd.DataFrame(
        {
            "cluster": [number[roots[i]] for i in member_rows],
            "size": [size[roots[i]] for i in member_rows],
            "example_id": member_ids,
            "language": table["language"].to_numpy()[member_rows],
            "text": [texts.get(i, "") for i in member_ids],
        }
    )
    langs = members.groupby("cluster")["language"].agg(lambda s: ", ".join(sorted(set(s))))
    members["languages"] = members["cluster"].map(langs)
    members = members.sort_values(["cluster", "example_id"]).reset_index(drop=True)
    return {
        "members": members.reindex(columns=cols),
        "clusters": len(order),
        "scanned": len(unit),
        "total": total,
    }


def language_detection(store: Store, limit: int = 2000) -> dict[str, Any]:
    """Detected and undetermined languages: per-language counts and confidence, least sure rows."""
    need = ("language", "language_source", "language_confidence", "detected_guess")
    empty_cols = [
        "example_id",
        "language",
        "language_source",
        "language_confidence",
        "detected_guess",
        "text",
    ]
    if not has_columns(store, "examples", need):
        return {
            "summary": pd.DataFrame(),
            "histogram": pd.DataFrame(),
            "uncertain": pd.DataFrame(columns=empty_cols),
            "by_source": {},
        }
    by_source = {
        row[0]: int(row[1])
        for row in store.conn.execute(
            "SELECT language_source, COUNT(*) FROM examples GROUP BY language_source"
        )
    }
    summary = frame(
        store,
        "SELECT CASE WHEN language = 'und' THEN COALESCE(detected_guess, 'und') "
        "ELSE language END AS language, "
        "SUM(language_source = 'detected') AS detected, "
        "SUM(language_source = 'undetermined') AS undetermined, "
        "AVG(language_confidence) AS mean_confidence, MIN(language_confidence) AS "
        "min_confidence FROM examples WHERE language_source != 'given' GROUP BY 1 ORDER BY 1",
    )
    histogram = frame(
        store,
        "SELECT MIN(CAST(language_confidence * 10 AS INTEGER), 9) / 10.0 AS bin, "
        "language_source, COUNT(*) AS examples FROM examples "
        "WHERE language_source != 'given' AND language_confidence IS NOT NULL GROUP BY 1, 2",
    )
    uncertain = frame(
        store,
        "SELECT id AS example_id, language, language_source, language_confidence, "
        f"detected_guess, substr(text, 1, {TEXT_PREVIEW}) AS text FROM examples "
        "WHERE language_source != 'given' ORDER BY language_source = 'detected', "
        "language_confidence, id LIMIT ?",
        (limit,),
    )
    return {
        "summary": summary,
        "histogram": histogram,
        "uncertain": uncertain,
        "by_source": by_source,
    }


# -- tables the labeling step writes at each pull (schema v3) ------------------------------------


def stored_agreement(store: Store) -> dict[str, Any] | None:
    """Per-language agreement from the latest `curate pull` (``agreement_stats``), if any."""
    need = ("computed_at", "language", "krippendorff_alpha", "fleiss_kappa", "percent_agreement")
    if not has_columns(store, "agreement_stats", need):
        return None
    latest = store.conn.execute("SELECT MAX(computed_at) FROM agreement_stats").fetchone()[0]
    if latest is None:
        return None
    wanted = [
        "language",
        "units",
        "examples",
        "annotations",
        "annotators",
        "krippendorff_alpha",
        "fleiss_kappa",
        "percent_agreement",
        "labels",
        "needs_adjudication",
    ]
    table = frame(
        store,
        f"SELECT {pick(store, 'agreement_stats', 's', wanted)} FROM agreement_stats s "
        "WHERE s.computed_at = ? ORDER BY s.language",
        (latest,),
    ).rename(
        columns={
            "units": "items",
            "krippendorff_alpha": "alpha",
            "fleiss_kappa": "kappa",
            "percent_agreement": "percent",
        }
    )
    return {"computed_at": latest, "table": table}


def stored_gold_accuracy(store: Store) -> dict[str, Any] | None:
    """Gold answers per annotator from the latest pull (``annotator_gold``), if any."""
    need = ("computed_at", "annotator", "language", "answered", "correct")
    if not has_columns(store, "annotator_gold", need):
        return None
    latest = store.conn.execute("SELECT MAX(computed_at) FROM annotator_gold").fetchone()[0]
    if latest is None:
        return None
    table = frame(
        store,
        "SELECT annotator, language, answered, correct FROM annotator_gold "
        "WHERE computed_at = ? ORDER BY annotator, language",
        (latest,),
    )
    return {"computed_at": latest, "table": table}


def proxy_calibration(store: Store) -> dict[str, Any] | None:
    """The latest per-language calibration of the selection proxy (``proxy_calibrations``)."""
    if not has_columns(store, "proxy_calibrations", ("fingerprint", "created_at", "payload")):
        return None
    row = store.conn.execute(
        "SELECT created_at, payload FROM proxy_calibrations ORDER BY created_at DESC, rowid DESC "
        "LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return {"created_at": row[0], "report": json.loads(row[1])["report"]}


def stored_annotator_quality(store: Store) -> dict[str, Any] | None:
    """Per-annotator quality from the latest pull (``annotator_quality``): Dawid-Skene's
    estimated accuracy, or agreement with the majority label; None before the first pull."""
    need = ("computed_at", "annotator", "method", "answers", "accuracy")
    if not has_columns(store, "annotator_quality", need):
        return None
    latest = store.conn.execute("SELECT MAX(computed_at) FROM annotator_quality").fetchone()[0]
    if latest is None:
        return None
    table = frame(
        store,
        "SELECT annotator, method, answers, accuracy FROM annotator_quality "
        "WHERE computed_at = ? ORDER BY annotator",
        (latest,),
    )
    return {"computed_at": latest, "table": table}


def stored_adjudication_queue(store: Store) -> pd.DataFrame | None:
    """The queue the last pull rebuilt (``adjudication_queue``); None when the store has none."""
    if not has_columns(store, "adjudication_queue", ("example_id", "reason", "votes")):
        return None
    have = columns(store, "adjudication_queue")
    table = frame(
        store,
        "SELECT q.example_id, e.language, substr(e.text, 1, "
        f"{TEXT_PREVIEW}) AS text, q.reason, q.votes, "
        + ("q.agreement" if "agreement" in have else "NULL AS agreement")
        + ", "
        + ("q.updated_at" if "updated_at" in have else "NULL AS updated_at")
        + " FROM adjudication_queue q CROSS JOIN examples e ON e.id = q.example_id "
        "ORDER BY e.language, q.example_id",
    )

    def votes(raw: Any) -> str:
        value = _json(raw)
        if isinstance(value, dict):
            return ", ".join(
                f"{k}: {v}"
                for k, v in sorted(
                    value.items(),
                    key=lambda kv: (-kv[1] if isinstance(kv[1], int | float) else 0, str(kv[0])),
                )
            )
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return "" if raw is None else str(raw)

    table["votes"] = table["votes"].map(votes)
    return table
