"""`curate ingest` with several files, and labels a file brings that the store does not know
(issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

from curation.store import Store
from tests.conftest import run_cli, write_config

NO_DETECT = '[store]\npath = "store"\n[languages]\ndetect = false\n'


def _files(folder: Path) -> tuple[Path, Path, Path]:
    """A good JSONL file, a CSV without a `text` column (wholly unreadable), a good CSV."""
    good = folder / "a.jsonl"
    good.write_text(
        '{"text": "first text", "language": "en"}\n{"text": "zweiter Text", "language": "de"}\n',
        encoding="utf-8",
    )
    bad = folder / "bad.csv"
    bad.write_text("id,body\n1,hello\n", encoding="utf-8")
    later = folder / "c.csv"
    later.write_text("text,language\nthird text,en\n", encoding="utf-8")
    return good, bad, later


def _entry(path: Path, status: str, **counts: object) -> dict:
    entry: dict = {
        "file": str(path),
        "status": status,
        "read": 0,
        "added": 0,
        "duplicates": 0,
        "quarantined": 0,
        "labels_imported": 0,
        "undetermined_language": 0,
        "per_language": {},
        "skipped": status == "skipped",
        "error": None,
    }
    entry.update(counts)
    return entry


def _counts(store_path: Path) -> tuple[list[str], list[str]]:
    with Store(store_path, read_only=True) as store:
        texts = [row[0] for row in store.conn.execute("SELECT text FROM examples ORDER BY text")]
        files = [row[0] for row in store.conn.execute("SELECT path FROM ingested_files")]
    return texts, sorted(files)


def test_json_reports_every_file_and_goes_on_after_an_unreadable_one(
    tmp_path: Path, capsys
) -> None:
    write_config(tmp_path, NO_DETECT)
    good, bad, later = _files(tmp_path)
    code, out, err = run_cli(capsys, "ingest", str(good), str(bad), str(later), "--json")
    assert code == 2
    assert err == f"error: {bad}: no 'text' column (columns: id, body)\n"
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "read": 3,
        "added": 3,
        "duplicates": 0,
        "quarantined": 0,
        "labels_imported": 0,
        "undetermined_language": 0,
        "per_language": {"de": 1, "en": 2},
        "skipped_files": [],
        "files": [
            _entry(good, "ingested", read=2, added=2, per_language={"de": 1, "en": 1}),
            _entry(bad, "error", error=f"{bad}: no 'text' column (columns: id, body)"),
            _entry(later, "ingested", read=1, added=1, per_language={"en": 1}),
        ],
    }
    # The bad file left nothing behind; the files after it were ingested.
    assert _counts(tmp_path / "store") == (
        ["first text", "third text", "zweiter Text"],
        sorted([str(good), str(later)]),
    )


def test_rerun_reports_skipped_files_and_the_still_bad_one(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT)
    good, bad, later = _files(tmp_path)
    run_cli(capsys, "ingest", str(good), str(bad), "--json")
    missing = tmp_path / "missing.jsonl"
    code, out, err = run_cli(
        capsys, "ingest", str(good), str(bad), str(missing), str(later), "--json"
    )
    assert code == 2
    assert err == (
        f"error: {bad}: no 'text' column (columns: id, body)\nerror: {missing}: no such file\n"
    )
    payload = json.loads(out)
    assert payload["skipped_files"] == [str(good)]
    assert [(entry["status"], entry["error"]) for entry in payload["files"]] == [
        ("skipped", None),
        ("error", f"{bad}: no 'text' column (columns: id, body)"),
        ("error", f"{missing}: no such file"),
        ("ingested", None),
    ]
    assert (payload["read"], payload["added"]) == (1, 1)


def test_human_output_lists_each_file_and_each_error_on_one_line(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT)
    good, bad, later = _files(tmp_path)
    code, out, err = run_cli(capsys, "ingest", str(good), str(bad), str(later))
    assert code == 2
    assert err == f"error: {bad}: no 'text' column (columns: id, body)\n"
    assert out.splitlines()[:3] == [
        f"{good}: ingested: read 2, added 2, duplicates 0, quarantined 0",
        f"{bad}: error, nothing ingested from it (the reason is on stderr)",
        f"{later}: ingested: read 1, added 1, duplicates 0, quarantined 0",
    ]


def test_all_good_files_exit_0(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT)
    good, _, later = _files(tmp_path)
    code, out, err = run_cli(capsys, "ingest", str(good), str(later), "--json")
    assert (code, err) == (0, "")
    assert [entry["status"] for entry in json.loads(out)["files"]] == ["ingested", "ingested"]


# -- labels the store does not know ----------------------------------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
ANGRY = (
    "label 'angry' is not one of the store's labels (negative, neutral, positive); "
    "add it to [labels] names or ingest with --new-labels"
)


def _label_state(store_path: Path) -> tuple[list[str], list[tuple], dict[str, int]]:
    """The store's label set, its `label` quarantine rows and its label counts."""
    with Store(store_path, read_only=True) as store:
        rows = store.conn.execute(
            "SELECT file, line, reason FROM quarantine WHERE field = 'label' ORDER BY line"
        ).fetchall()
        counts = dict(
            store.conn.execute("SELECT label, COUNT(*) FROM labels GROUP BY label ORDER BY label")
        )
        return store.label_names(), [tuple(row) for row in rows], counts


def test_new_label_after_a_labeled_ingest_is_quarantined(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT)
    pool, bad = SAMPLES / "pool.jsonl", SAMPLES / "pool_bad.csv"
    code, out, err = run_cli(capsys, "ingest", str(pool), str(bad), "--json")
    assert (code, err) == (0, "")
    files = json.loads(out)["files"]
    assert [(entry["added"], entry["quarantined"]) for entry in files] == [(316, 0), (5, 7)]
    assert _label_state(tmp_path / "store") == (
        ["positive", "negative", "neutral"],  # first-seen order in pool.jsonl
        [(str(bad), 7, ANGRY)],
        {"negative": 106, "neutral": 106, "positive": 109},
    )


def test_new_labels_flag_accepts_a_new_class(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT)
    pool, bad = SAMPLES / "pool.jsonl", SAMPLES / "pool_bad.csv"
    assert run_cli(capsys, "ingest", str(pool), "--json")[0] == 0
    code, out, err = run_cli(capsys, "ingest", "--new-labels", str(bad), "--json")
    assert (code, err) == (0, "")
    assert (json.loads(out)["added"], json.loads(out)["quarantined"]) == (6, 6)
    assert _label_state(tmp_path / "store") == (
        ["positive", "negative", "neutral", "angry"],
        [],
        {"angry": 1, "negative": 106, "neutral": 106, "positive": 109},
    )


def test_first_labeled_ingest_defines_the_label_set(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT)
    first = tmp_path / "first.csv"
    first.write_text("text,label\none,b\ntwo,a\nthree,c\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "ingest", str(first), "--json")
    assert (code, json.loads(out)["labels_imported"], json.loads(out)["quarantined"]) == (0, 3, 0)
    assert _label_state(tmp_path / "store") == (["b", "a", "c"], [], {"a": 1, "b": 1, "c": 1})


def test_configured_label_names_still_decide(tmp_path: Path, capsys) -> None:
    write_config(tmp_path, NO_DETECT + '[labels]\nnames = ["negative", "neutral", "positive"]\n')
    bad = SAMPLES / "pool_bad.csv"
    code, _, err = run_cli(capsys, "ingest", "--new-labels", str(bad), "--json")
    assert (code, err) == (0, "")
    reason = "label 'angry' not in [labels] names (negative, neutral, positive)"
    assert _label_state(tmp_path / "store")[:2] == (
        ["negative", "neutral", "positive"],
        [(str(bad), 7, reason)],
    )
