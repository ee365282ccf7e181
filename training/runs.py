"""Training runs in the store (`training_runs`) and on disk (`<store>/runs/<run_id>/`).

Run folder::

    training_config.json   the validated TrainingConfig (load with training.config.load_config)
    splits.json            example ids of train and validation (a resumed run reuses them)
    run.json               resolved settings: device, precision, accumulation, sampling, lr groups
    log.jsonl              every `log_every` steps: loss (all and per language), gradient norm, lr
    evaluations.jsonl      every evaluation: macro-F1 per language, mean, worst, confusion matrices
    metrics.json           the run's summary (also in the store's `metrics` column)
    adapter/               the best checkpoint (see training.model)
    checkpoint/            the last resumable state (weights, optimizer, scheduler, RNG, counters)

Statuses: ``running`` (also what a killed process leaves), ``finished``, ``failed``,
``interrupted``.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.errors import InputError
from curation.store import Store, utc_now

RUNS_DIR = "runs"
RESUMABLE = ("running", "interrupted", "failed")
CAP_PREFIXES = ("max_steps", "max_epochs", "max_minutes", "max_gpu_hours")


def new_run_id() -> str:
    """`YYYYmmddTHHMMSS-xxxx` (UTC): sorts by start time, unique enough for one store."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)


def runs_root(store: Store) -> Path:
    return store.path / RUNS_DIR


def run_dir(store: Store, run_id: str) -> Path:
    return runs_root(store) / run_id


def insert_run(store: Store, run_id: str, config: dict[str, Any]) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO training_runs (id, started_at, status, config) "
            "VALUES (?, ?, 'running', ?)",
            (run_id, utc_now(), json.dumps(config, ensure_ascii=False)),
        )


def update_run(
    store: Store,
    run_id: str,
    *,
    status: str | None = None,
    metrics: dict[str, Any] | None = None,
    adapter_path: str | None = None,
    stopped_because: str | None = None,
    finished: bool = False,
) -> None:
    sets: list[str] = []
    values: list[Any] = []
    for column, value in (
        ("status", status),
        ("metrics", None if metrics is None else json.dumps(metrics, ensure_ascii=False)),
        ("adapter_path", adapter_path),
        ("stopped_because", stopped_because),
    ):
        if value is not None:
            sets.append(f"{column} = ?")
            values.append(value)
    sets.append("finished_at = ?")
    values.append(utc_now() if finished else None)
    with store.transaction() as conn:
        conn.execute(f"UPDATE training_runs SET {', '.join(sets)} WHERE id = ?", (*values, run_id))


def _decode(row: Any) -> dict[str, Any]:
    record = dict(row)
    for key in ("config", "metrics"):
        if record.get(key):
            record[key] = json.loads(record[key])
    return record


def get_run(store: Store, run_id: str) -> dict[str, Any]:
    row = store.conn.execute("SELECT * FROM training_runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise InputError(f"no training run {run_id!r} in {store.path}")
    return _decode(row)


def list_runs(store: Store) -> list[dict[str, Any]]:
    rows = store.conn.execute("SELECT * FROM training_runs ORDER BY rowid").fetchall()
    return [_decode(row) for row in rows]


def latest_run(store: Store, *, resumable: bool = False) -> dict[str, Any] | None:
    for record in reversed(list_runs(store)):
        if not resumable or can_resume(store, record):
            return record
    return None


def can_resume(store: Store, record: dict[str, Any]) -> bool:
    """Unfinished (or stopped by a budget cap) and with a checkpoint on disk."""
    if not (run_dir(store, record["id"]) / "checkpoint" / "trainer_state.json").is_file():
        return False
    if record["status"] in RESUMABLE:
        return True
    reason = record.get("stopped_because") or ""
    return record["status"] == "finished" and reason.startswith(CAP_PREFIXES)


def summary_payload(record: dict[str, Any]) -> dict[str, Any]:
    """The `curate train --json` object of a run record."""
    metrics = record.get("metrics") or {}
    best = metrics.get("best") or {}
    return {
        "run_id": record["id"],
        "status": record["status"],
        "trainable_params": metrics.get("trainable_params"),
        "total_params": metrics.get("total_params"),
        "peak_memory_mb": metrics.get("peak_memory_mb"),
        "wall_seconds": metrics.get("wall_seconds"),
        "steps": metrics.get("steps"),
        "stopped_because": record.get("stopped_because"),
        "adapter_path": record.get("adapter_path"),
        "best": {
            "step": best.get("step"),
            "mean_macro_f1": best.get("mean_macro_f1"),
            "worst_language": best.get("worst_language"),
            "worst_language_f1": best.get("worst_language_f1"),
            "per_language": best.get("per_language", {}),
        },
    }


def report_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per language: examples, first/best/last macro-F1, calibration (T, ECE)."""
    metrics = record.get("metrics") or {}
    counts = metrics.get("examples") or {}
    best = (metrics.get("best") or {}).get("per_language", {})
    evaluations = metrics.get("evaluations") or []
    first = evaluations[0]["per_language"] if evaluations else {}
    last = evaluations[-1]["per_language"] if evaluations else {}
    calibration = metrics.get("calibration") or {}
    codes = sorted(set(counts.get("train", {})) | set(counts.get("validation", {})) | set(best))
    rows = []
    for code in codes:
        calibrated = calibration.get(code) or {}
        rows.append(
            {
                "language": code,
                "train": counts.get("train", {}).get(code, 0),
                "validation": counts.get("validation", {}).get(code, 0),
                "best_macro_f1": best.get(code),
                "first_macro_f1": first.get(code),
                "last_macro_f1": last.get(code),
                # Expected calibration error of the validation probabilities, before and after
                # the language's temperature (cross-fitted: curation.calibration).
                "temperature": calibrated.get("temperature"),
                "ece_before": calibrated.get("ece_before"),
                "ece_after": calibrated.get("ece_after"),
            }
        )
    return rows


def validation_examples(store: Store, directory: Path) -> tuple[list[str], list[str], list[str]]:
    """(texts, label names, languages) of a run's recorded validation split, as labeled now."""
    splits = json.loads((directory / "splits.json").read_text("utf-8"))
    ids = splits["validation"]
    rows: dict[str, tuple[str, str, str]] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        sql = (
            "SELECT e.id, e.text, l.label, e.language FROM examples e JOIN labels l "
            f"ON l.example_id = e.id WHERE e.id IN ({','.join('?' * len(chunk))})"
        )
        for row in store.conn.execute(sql, chunk):
            rows[row[0]] = (row[1], row[2], row[3])
    kept = [rows[i] for i in ids if i in rows]
    return [r[0] for r in kept], [r[1] for r in kept], [r[2] for r in kept]
