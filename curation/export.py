"""Export the curated (labeled) examples as a Hugging Face `datasets.Dataset`, Parquet or JSONL.

The label column is a `ClassLabel` over the store's label set, so `dataset.features["label"]`
knows the names, and every row keeps its id, language and where its label came from. Output is
written to a temporary folder or file and renamed, so a killed export never leaves half a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
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
