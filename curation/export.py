"""Export the curated (labeled) examples as a Hugging Face `datasets.Dataset`, Parquet or JSONL.

The label column is a `ClassLabel` over the store's label set, so `dataset.features["label"]`
knows the names, and every row keeps its id, language and where its label came from, plus what
an unbiased evaluation needs: `round` (the selection round that picked the example, null for an
imported label) and `is_control` (picked at random as the round's control slice rather than by
the strategy: only those rows, and imported ones, are free of the selection's bias). Output is
written to a temporary folder or file and renamed, so a killed export never leaves half a dataset.

`--split train=0.8,validation=0.1,test=0.1` writes one split per name (a `DatasetDict`, or one
Parquet / JSONL file per split in a folder), stratified by language and label: see
`split_indices`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curation.errors import InputError
from curation.store import Store

EXPORT_FORMATS = ("datasets", "parquet", "jsonl")
COLUMNS = ("id", "text", "label", "language", "label_source", "round", "is_control")
_SPLIT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def labeled_rows(store: Store, *, languages: list[str] | None = None) -> list[dict]:
    """Labeled examples in store order, with `round` and `is_control` (see the module doc).

    An example picked in several rounds (`curate select --reselect`) counts for the first.
    """
    sql = (
        "SELECT e.id, e.text, l.label, e.language, l.source AS label_source, "
        "CASE WHEN l.source = 'import' THEN NULL ELSE r.round_id END AS round, "
        "CASE WHEN l.source = 'import' THEN 0 ELSE COALESCE(r.is_control, 0) END AS is_control "
        "FROM examples e JOIN labels l ON l.example_id = e.id "
        "LEFT JOIN round_items r ON r.example_id = e.id AND r.round_id = "
        "(SELECT MIN(first.round_id) FROM round_items first WHERE first.example_id = e.id)"
    )
    params: list[str] = []
    if languages:
        sql += f" WHERE e.language IN ({','.join('?' * len(languages))})"
        params = list(languages)
    sql += " ORDER BY e.rowid"
    rows = [dict(row) for row in store.conn.execute(sql, params)]
    for row in rows:
        row["is_control"] = bool(row["is_control"])
    return rows


def _features(names: list[str]):  # noqa: ANN202 - datasets.Features
    from datasets import ClassLabel, Features, Value

    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "label": ClassLabel(names=names) if names else Value("string"),
            "language": Value("string"),
            "label_source": Value("string"),
            "round": Value("int64"),
            "is_control": Value("bool"),
        }
    )


def _dataset_of(rows: Sequence[dict], names: list[str]):  # noqa: ANN202 - datasets.Dataset
    from datasets import Dataset

    features = _features(names)
    columns = {name: [row[name] for row in rows] for name in features}
    if names:
        position = {name: i for i, name in enumerate(names)}
        columns["label"] = [position[label] for label in columns["label"]]
    return Dataset.from_dict(columns, features=features)


def to_dataset(store: Store, *, languages: list[str] | None = None):  # noqa: ANN201
    """A `datasets.Dataset` with columns id, text, label (ClassLabel), language, label_source,
    round (int, null for imported labels) and is_control (bool)."""
    return _dataset_of(labeled_rows(store, languages=languages), store.label_names())


# -- splits -------------------------------------------------------------------------------------


def parse_split(spec: str) -> dict[str, float]:
    """`train=0.8,validation=0.1,test=0.1` as {name: fraction}, in the order given."""
    fractions: dict[str, float] = {}
    for part in spec.split(","):
        name, equals, value = part.strip().partition("=")
        name = name.strip()
        if not equals or not _SPLIT_NAME.fullmatch(name):
            raise InputError(
                f"--split {spec!r}: {part.strip()!r} is not NAME=FRACTION "
                "(e.g. train=0.8,validation=0.1,test=0.1)"
            )
        if name in fractions:
            raise InputError(f"--split {spec!r}: split {name!r} is named twice")
        try:
            fraction = float(value)
        except ValueError:
            raise InputError(f"--split {spec!r}: {value.strip()!r} is not a number") from None
        if not (0.0 < fraction <= 1.0) or not math.isfinite(fraction):
            raise InputError(f"--split {spec!r}: {name} must be a fraction in (0, 1]")
        fractions[name] = fraction
    if len(fractions) < 2:
        raise InputError(f"--split {spec!r}: name at least two splits")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"--split {spec!r}: the fractions add up to {total:g}, not 1")
    return fractions


def _largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights` (which sum to 1); ties go to the earlier one."""
    exact = [total * weight for weight in weights]
    counts = [math.floor(value) for value in exact]
    order = sorted(range(len(weights)), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts


def split_indices(
    strata: Sequence[str], fractions: Sequence[float], *, seed: int
) -> list[np.ndarray]:
    """Row indices per split, stratified by `strata` (one key per row, e.g. "de|positive").

    Split sizes: the row count split by largest remainder, so they are exact (321 rows at
    0.8/0.1/0.1 give 257/32/32). Within that, every stratum gives each split the floor or the
    ceiling of its exact share (a stratum of 40 rows gives 32/4/4, one of 13 gives 10 or 11 /
    1 or 2 / 1 or 2): the shares' fractional parts are rounded up largest first, as long as the
    stratum and the split still have rows to place, ties broken by the seed. A stratum too small
    to reach every split (fewer rows than 1 / smallest fraction) therefore lands where its
    exact share is largest, mostly in the biggest split; only when the other strata left no room
    there does a row go to another split. Rows of a stratum are assigned in a seeded random
    order; each split lists its rows in store order.

    scikit-learn's `train_test_split(stratify=...)` cuts two ways only: chaining it for three
    splits compounds its rounding (a stratum can miss its share by almost 2) and it refuses a
    stratum of one row, which every real store has.
    """
    rng = np.random.default_rng(seed)
    n_splits = len(fractions)
    members: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(strata):
        members[key].append(index)
    keys = sorted(members)
    sizes = _largest_remainder(len(strata), fractions)
    counts = {key: [0] * n_splits for key in keys}
    stratum_left: dict[str, int] = {}
    split_left = list(sizes)
    fractional: list[tuple[float, float, str, int]] = []
    for key in keys:
        exact = [len(members[key]) * fraction for fraction in fractions]
        for k, value in enumerate(exact):
            counts[key][k] = math.floor(value)
            split_left[k] -= counts[key][k]
            if value - counts[key][k] > 1e-9:
                fractional.append((-(value - counts[key][k]), float(rng.random()), key, k))
        stratum_left[key] = len(members[key]) - sum(counts[key])
    for _, _, key, k in sorted(fractional):
        if stratum_left[key] > 0 and split_left[k] > 0:
            counts[key][k] += 1
            stratum_left[key] -= 1
            split_left[k] -= 1
    # What the rounding could not place (the splits with room had no share of that stratum).
    for key in keys:
        preference = sorted(range(n_splits), key=lambda k: (-fractions[k], k))
        for k in preference:
            while stratum_left[key] > 0 and split_left[k] > 0:
                counts[key][k] += 1
                stratum_left[key] -= 1
                split_left[k] -= 1
    out: list[list[int]] = [[] for _ in range(n_splits)]
    for key in keys:
        order = rng.permutation(members[key])
        start = 0
        for k in range(n_splits):
            out[k].extend(int(i) for i in order[start : start + counts[key][k]])
            start += counts[key][k]
    return [np.asarray(sorted(indices), dtype=np.int64) for indices in out]


# -- export -------------------------------------------------------------------------------------


def _per_language(rows: Sequence[dict]) -> dict[str, int]:
    per_language: dict[str, int] = {}
    for row in rows:
        per_language[row["language"]] = per_language.get(row["language"], 0) + 1
    return dict(sorted(per_language.items()))


def _write_jsonl(rows: Sequence[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({name: row[name] for name in COLUMNS}, ensure_ascii=False))
            handle.write("\n")


def export(
    store: Store,
    out: str | Path,
    *,
    fmt: str = "datasets",
    languages: list[str] | None = None,
    split: dict[str, float] | None = None,
    seed: int = 0,
) -> dict:
    """Write the labeled examples to `out`; returns counts per language (and per split).

    With `split` ({name: fraction}, see `parse_split`), `out` is a folder: a `DatasetDict` for
    "datasets", else one `NAME.parquet` / `NAME.jsonl` per split.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r} (use one of {', '.join(EXPORT_FORMATS)})")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out} already exists; exports never overwrite")
    names = store.label_names()
    rows = labeled_rows(store, languages=languages)
    temporary = out.with_name(out.name + ".tmp")
    if temporary.exists():
        shutil.rmtree(temporary) if temporary.is_dir() else temporary.unlink()
    result: dict = {
        "path": str(out),
        "format": fmt,
        "rows": len(rows),
        "labels": names,
        "per_language": _per_language(rows),
    }
    if split is None:
        if fmt == "datasets":
            _dataset_of(rows, names).save_to_disk(str(temporary))
        elif fmt == "parquet":
            _dataset_of(rows, names).to_parquet(str(temporary))
        else:
            _write_jsonl(rows, temporary)
        os.replace(temporary, out)
        return result
    parts = split_indices(
        [f"{row['language']}|{row['label']}" for row in rows], list(split.values()), seed=seed
    )
    by_split = {
        name: [rows[i] for i in indices] for name, indices in zip(split, parts, strict=True)
    }
    if fmt == "datasets":
        from datasets import DatasetDict

        DatasetDict(
            {name: _dataset_of(part, names) for name, part in by_split.items()}
        ).save_to_disk(str(temporary))
    else:
        temporary.mkdir(parents=True)
        for name, part in by_split.items():
            if fmt == "parquet":
                _dataset_of(part, names).to_parquet(str(temporary / f"{name}.parquet"))
            else:
                _write_jsonl(part, temporary / f"{name}.jsonl")
    os.replace(temporary, out)
    result["seed"] = seed
    result["stratified_by"] = "language|label"
    result["splits"] = {
        name: {"rows": len(part), "per_language": _per_language(part)}
        for name, part in by_split.items()
    }
    return result


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
        "Columns: id, text, label (ClassLabel), language, label_source, round (the selection "
        "round that picked the example; empty for imported labels), is_control (a random "
        "control pick: with the imported rows, the ones free of the selection's bias).",
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
