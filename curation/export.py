"""Export the curated (labeled) examples as a Hugging Face `datasets.Dataset`, Parquet or JSONL.

The label column is a `ClassLabel` over the store's label set, so `dataset.features["label"]`
knows the names, and every row keeps its id, language and where its label came from. Output is
written to a temporary folder or file and renamed, so a killed export never leaves half a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from curation.errors import InputError
from curation.store import Store

EXPORT_FORMATS = ("datasets", "parquet", "jsonl")


def labeled_rows(store: Store, *, languages: list[str] | None = None) -> list[dict]:
    sql = (
        "SELECT e.id, e.text, l.label, e.language, l.source AS label_source "
        "FROM examples e JOIN labels l ON l.example_id = e.id"
    )
    params: list[str] = []
    if languages:
        sql += f" WHERE e.language IN ({','.join('?' * len(languages))})"
        params = list(languages)
    sql += " ORDER BY e.rowid"
    return [dict(row) for row in store.conn.execute(sql, params)]


def to_dataset(store: Store, *, languages: list[str] | None = None):  # noqa: ANN201
    """A `datasets.Dataset` with columns id, text, label (ClassLabel), language, label_source."""
    from datasets import ClassLabel, Dataset, Features, Value

    names = store.label_names()
    rows = labeled_rows(store, languages=languages)
    features = Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "label": ClassLabel(names=names) if names else Value("string"),
            "language": Value("string"),
            "label_source": Value("string"),
        }
    )
    columns = {name: [row[name] for row in rows] for name in features}
    if names:
        position = {name: i for i, name in enumerate(names)}
        columns["label"] = [position[label] for label in columns["label"]]
    return Dataset.from_dict(columns, features=features)


def export(
    store: Store, out: str | Path, *, fmt: str = "datasets", languages: list[str] | None = None
) -> dict:
    """Write the labeled examples to `out`; returns counts per language."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r} (use one of {', '.join(EXPORT_FORMATS)})")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} already exists; exports never overwrite")
    dataset = to_dataset(store, languages=languages)
    temporary = out.with_name(out.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary) if temporary.is_dir() else temporary.unlink()
    if fmt == "datasets":
        dataset.save_to_disk(str(temporary))
    elif fmt == "parquet":
        dataset.to_parquet(str(temporary))
    else:
        with open(temporary, "w", encoding="utf-8") as handle:
            label_feature = dataset.features["label"]
            for row in dataset:
                if hasattr(label_feature, "int2str"):
                    row = {**row, "label": label_feature.int2str(row["label"])}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, out)
    per_language: dict[str, int] = {}
    for language in dataset["language"]:
        per_language[language] = per_language.get(language, 0) + 1
    return {
        "path": str(out),
        "format": fmt,
        "rows": len(dataset),
        "labels": store.label_names(),
        "per_language": dict(sorted(per_language.items())),
    }


# -- versioned snapshots (the nightly job's `curate` stage) ---------------------------------------


def _labels_hash(rows: list[dict]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r["id"]):
        digest.update(f"{row['id']}\t{row['label']}\t{row['language']}\n".encode())
    return digest.hexdigest()


def _agreement_by_language(store: Store) -> dict[str, dict]:
    """The latest agreement per language that the labeling step stored (else empty)."""
    table = store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='agreement_stats'"
    ).fetchone()
    if table is None:
        return {}
    try:
        rows = store.conn.execute(
            "SELECT language, krippendorff_alpha, fleiss_kappa, percent_agreement, annotations "
            "FROM agreement_stats a WHERE computed_at = (SELECT MAX(computed_at) FROM "
            "agreement_stats b WHERE b.language = a.language) ORDER BY language"
        ).fetchall()
    except sqlite3.Error:  # a schema this code does not know: leave it out of the card
        return {}
    return {
        row["language"]: {k: row[k] for k in row.keys() if k != "language"}  # noqa: SIM118
        for row in rows
    }


def dataset_card(
    version: int, rows: list[dict], label_names: list[str], agreement: dict, rounds: list[int]
) -> str:
    languages = sorted({row["language"] for row in rows})
    counts: dict[str, dict[str, int]] = {language: {} for language in languages}
    sources: dict[str, int] = {}
    for row in rows:
        by_label = counts[row["language"]]
        by_label[row["label"]] = by_label.get(row["label"], 0) + 1
        sources[row["label_source"]] = sources.get(row["label_source"], 0) + 1
    lines = [
        "---",
        "language:",
        *[f"- {language}" for language in languages],
        "task_categories:",
        "- text-classification",
        "---",
        "",
        f"# Curated dataset, version {version}",
        "",
        f"{len(rows)} labeled examples in {len(languages)} languages, written by `curate run`.",
        "Columns: id, text, label (ClassLabel), language, label_source.",
        "",
        "## Examples per language and label",
        "",
        "| language | " + " | ".join(label_names) + " | total |",
        "|---|" + "---:|" * (len(label_names) + 1),
    ]
    for language in languages:
        cells = [str(counts[language].get(name, 0)) for name in label_names]
        lines.append(
            f"| {language} | " + " | ".join(cells) + f" | {sum(counts[language].values())} |"
        )
    lines += ["", "## Where the labels came from", ""]
    lines += [f"- {source}: {n}" for source, n in sorted(sources.items())]
    lines += ["", "## Annotator agreement per language", ""]
    if agreement:
        for language, values in sorted(agreement.items()):
            shown = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in values.items()
                if k != "language"
            )
            lines.append(f"- {language}: {shown}")
    else:
        lines.append("No crowd annotations yet (imported labels only).")
    lines += ["", "## Source selection rounds", ""]
    lines.append(", ".join(str(r) for r in rounds) if rounds else "none (imported labels only)")
    return "\n".join(lines) + "\n"


def write_snapshot(store: Store, *, run_id: str | None = None, dry_run: bool = False) -> dict:
    """A new dataset version when the labels changed since the last one; never overwrites.

    Layout: `<store>/datasets/v0001/{dataset/ (save_to_disk), data.parquet, README.md}`, written
    under `v0001.tmp/` and renamed, then recorded in `dataset_versions`: a run killed anywhere
    leaves either no version or a whole one (a stale `.tmp` folder is removed next time).
    """
    rows = labeled_rows(store)
    content_hash = _labels_hash(rows)
    last = store.conn.execute(
        "SELECT version, content_hash FROM dataset_versions ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if last is not None and last["content_hash"] == content_hash:
        return {"version": last["version"], "written": False, "rows": len(rows)}
    if not rows:
        return {"version": None, "written": False, "rows": 0}
    version = 1 if last is None else last["version"] + 1
    root = store.path / "datasets"
    final = root / f"v{version:04d}"
    if dry_run:
        return {"version": version, "written": False, "would_write": str(final), "rows": len(rows)}
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.tmp"):
        shutil.rmtree(stale)
    if final.exists():
        # A folder without its row: a kill between rename and commit. It is the same content
        # version number reused; move it aside rather than overwrite anything.
        final.rename(root / f"v{version:04d}.orphan-{os.getpid()}")
    temporary = root / f"v{version:04d}.tmp"
    temporary.mkdir()
    dataset = to_dataset(store)
    dataset.save_to_disk(str(temporary / "dataset"))
    dataset.to_parquet(str(temporary / "data.parquet"))
    rounds = [
        row[0]
        for row in store.conn.execute(
            "SELECT DISTINCT r.round_id FROM round_items r JOIN labels l "
            "ON l.example_id = r.example_id ORDER BY r.round_id"
        )
    ]
    label_names = store.label_names()
    (temporary / "README.md").write_text(
        dataset_card(version, rows, label_names, _agreement_by_language(store), rounds),
        encoding="utf-8",
    )
    os.replace(temporary, final)
    per_language: dict[str, int] = {}
    per_label: dict[str, int] = {}
    for row in rows:
        per_language[row["language"]] = per_language.get(row["language"], 0) + 1
        per_label[row["label"]] = per_label.get(row["label"], 0) + 1
    from curation.store import utc_now

    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO dataset_versions (version, created_at, path, rows, content_hash, "
            "per_language, per_label, source_rounds, run_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                version,
                utc_now(),
                str(final),
                len(rows),
                content_hash,
                json.dumps(per_language, sort_keys=True),
                json.dumps(per_label, sort_keys=True),
                json.dumps(rounds),
                run_id,
            ),
        )
    return {"version": version, "written": True, "rows": len(rows), "path": str(final)}
