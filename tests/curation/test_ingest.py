from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from curation.config import config_from_dict
from curation.errors import InputError, UnreadableFileError
from curation.ingest import Ingestor, ingest_files, summarize
from curation.store import Store
from tests.conftest import SAMPLES

LABELS = {"labels": {"names": ["negative", "neutral", "positive"]}}


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
            handle.write("\n")
    return path


def _quarantine(store: Store) -> list[tuple]:
    return [
        (Path(r["file"]).name, r["line"], r["field"], r["reason"])
        for r in store.conn.execute("SELECT * FROM quarantine ORDER BY line, field")
    ]


def test_sample_bad_csv_quarantines_each_bad_row_with_its_reason(tmp_path: Path) -> None:
    config = config_from_dict(LABELS)
    with _store(tmp_path) as store:
        (report,) = ingest_files(store, config, [SAMPLES / "pool_bad.csv"], progress=False)
        assert (report.read, report.added, report.quarantined) == (12, 5, 7)
        assert _quarantine(store) == [
            ("pool_bad.csv", 4, "text", "empty text"),
            ("pool_bad.csv", 6, "text", "whitespace-only text"),
            (
                "pool_bad.csv",
                7,
                "label",
                "label 'angry' not in [labels] names (negative, neutral, positive)",
            ),
            (
                "pool_bad.csv",
                9,
                "language",
                "unknown language code 'xx-QQ123' (not a valid BCP-47 tag)",
            ),
            ("pool_bad.csv", 10, "text", "text longer than 2000 characters (2369)"),
            ("pool_bad.csv", 11, "line", "malformed row: 5 fields, header has 4"),
            ("pool_bad.csv", 12, "text", "undecodable bytes (not valid UTF-8)"),
        ]
        raw = store.conn.execute("SELECT raw FROM quarantine WHERE line = 7").fetchone()[0]
        assert "angry" in raw  # the rejected row itself is kept, not only its reason


def test_jsonl_problems_each_have_file_line_field_reason(tmp_path: Path) -> None:
    config = config_from_dict(
        {**LABELS, "languages": {"allowed": ["en", "es"]}, "ingest": {"max_text_length": 40}}
    )
    path = _write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"id": "a", "text": "Good morning everyone", "language": "en", "label": "positive"},
            '{"id": "b", "text": "broken',
            '["not", "an", "object"]',
            "",
            {"id": "c", "text": 42, "language": "en"},
            {"id": "d", "language": "en"},
            {"id": "e", "text": "Bonjour tout le monde", "language": "fr"},
            {"id": "f", "text": "x" * 41, "language": "en"},
            {"id": "a", "text": "A different text under an old id", "language": "en"},
            {"id": "g", "text": "hola", "language": ["es"]},
            {"id": "h", "text": "Fine day", "language": "en", "label": "meh"},
        ],
    )
    with _store(tmp_path) as store:
        (report,) = ingest_files(store, config, [path], progress=False)
        assert (report.read, report.added, report.quarantined, report.malformed) == (10, 1, 9, 2)
        assert _quarantine(store) == [
            ("pool.jsonl", 2, "line", "malformed JSON: Unterminated string starting at"),
            ("pool.jsonl", 3, "line", "not a JSON object (a list)"),
            ("pool.jsonl", 5, "text", "text is not a string (a int)"),
            ("pool.jsonl", 6, "text", "missing text"),
            ("pool.jsonl", 7, "language", "language 'fr' not in [languages] allowed (en, es)"),
            ("pool.jsonl", 8, "text", "text longer than 40 characters (41)"),
            ("pool.jsonl", 9, "id", "id 'a' already used by a different text"),
            ("pool.jsonl", 10, "language", "language must be a string, not a list"),
            (
                "pool.jsonl",
                11,
                "label",
                "label 'meh' not in [labels] names (negative, neutral, positive)",
            ),
        ]


def test_undecodable_bytes_in_jsonl_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(
        b'{"text": "fine text", "language": "en"}\n'
        b'{"text": "bad \xff\xfe bytes", "language": "en"}\n'
    )
    with _store(tmp_path) as store:
        (report,) = ingest_files(store, config_from_dict({}), [path], progress=False)
        assert (report.added, report.quarantined) == (1, 1)
        assert _quarantine(store) == [
            ("bytes.jsonl", 2, "text", "undecodable bytes (not valid UTF-8)")
        ]


def test_sample_pool_counts_duplicates_labels_and_detection(tmp_path: Path) -> None:
    config = config_from_dict(LABELS)
    with _store(tmp_path) as store:
        (report,) = ingest_files(store, config, [SAMPLES / "pool.jsonl"], progress=False)
        assert (report.read, report.added, report.duplicates, report.quarantined) == (
            320,
            316,
            4,
            0,
        )
        assert dict(report.per_language) == {
            "ar": 40,
            "de": 40,
            "en": 39,
            "es": 39,
            "fr": 40,
            "hi": 39,
            "ru": 40,
            "zh": 39,
        }
        detected = dict(
            store.conn.execute(
                "SELECT id, language FROM examples WHERE language_source = 'detected'"
            ).fetchall()
        )
        assert len(detected) == 24
        assert all(example_id.split("-")[0] == code for example_id, code in detected.items())
        links = store.conn.execute(
            "SELECT given_id, example_id, line FROM duplicates ORDER BY line"
        ).fetchall()
        assert [tuple(r) for r in links] == [
            ("en-0040", "en-0007", 317),
            ("es-0040", "es-0022", 318),
            ("hi-0040", "hi-0016", 319),
            ("zh-0040", "zh-0026", 320),
        ]
        assert store.label_names() == ["negative", "neutral", "positive"]
        assert store.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 316
        meta = store.conn.execute("SELECT metadata FROM examples WHERE id='en-0001'").fetchone()
        assert set(json.loads(meta[0])) == {"source_channel"}


def test_reingest_is_a_no_op_and_says_so(tmp_path: Path) -> None:
    config = config_from_dict(LABELS)
    with _store(tmp_path) as store:
        first = ingest_files(store, config, [SAMPLES / "pool_bad.csv"], progress=False)
        before = store.status()
        quarantined = store.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        second = ingest_files(store, config, [SAMPLES / "pool_bad.csv"], progress=False)
        assert first[0].added == 5
        assert second[0].skipped and second[0].read == 0 and second[0].added == 0
        assert store.status() == before
        assert store.conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == quarantined
        assert summarize(second)["skipped_files"] == [str(SAMPLES / "pool_bad.csv")]


def test_same_rows_in_a_new_file_are_duplicates_not_new_examples(tmp_path: Path) -> None:
    rows = [{"text": f"row number {i}", "language": "en"} for i in range(5)]
    a = _write_jsonl(tmp_path / "a.jsonl", rows)
    b = _write_jsonl(tmp_path / "b.jsonl", rows + [{"text": "row  number 5 ", "language": "en"}])
    with _store(tmp_path) as store:
        ingest_files(store, config_from_dict({}), [a], progress=False)
        (report,) = ingest_files(store, config_from_dict({}), [b], progress=False)
        assert (report.added, report.duplicates) == (1, 5)
        assert store.conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 6
        assert (
            store.conn.execute(
                "SELECT raw_text FROM examples WHERE text = 'row number 5'"
            ).fetchone()[0]
            == "row  number 5 "
        )


def test_small_chunks_give_the_same_result_as_one_chunk(tmp_path: Path) -> None:
    rows = [
        {"text": f"text {i % 7}", "language": "en", "label": "a" if i % 2 else "b"}
        for i in range(20)
    ]
    path = _write_jsonl(tmp_path / "p.jsonl", rows)
    results = []
    for chunk_rows in (3, 1000):
        config = config_from_dict({"ingest": {"chunk_rows": chunk_rows}})
        with Store(tmp_path / f"s{chunk_rows}") as store:
            (report,) = ingest_files(store, config, [path], progress=False)
            results.append(
                (
                    report.added,
                    report.duplicates,
                    store.conn.execute("SELECT id, text FROM examples ORDER BY id").fetchall(),
                    store.label_names(),
                )
            )
    assert results[0] == results[1]
    assert results[0][0:2] == (7, 13)
    assert results[0][3] == ["b", "a"]  # labels seen in imports define the set, in order seen


def test_parquet_and_csv_read_like_jsonl(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "id": ["p1", "p2", "p3"],
            "text": ["Parquet works fine", "  ", "Otra fila en español"],
            "language": ["en", "en", "es"],
            "score": [1.5, 2.0, None],
        }
    )
    frame.write_parquet(tmp_path / "p.parquet")
    frame.write_csv(tmp_path / "p.csv")
    # Parquet rows are numbered from 1; CSV lines count the header as line 1.
    for name, line in (("p.parquet", 2), ("p.csv", 3)):
        with Store(tmp_path / f"store-{name}") as store:
            (report,) = ingest_files(store, config_from_dict({}), [tmp_path / name], progress=False)
            assert (report.read, report.added, report.quarantined) == (3, 2, 1)
            assert _quarantine(store) == [(name, line, "text", "whitespace-only text")]
            ids = [row[0] for row in store.conn.execute("SELECT id FROM examples ORDER BY id")]
            assert ids == ["p1", "p3"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "missing.jsonl: no such file"),
        ("nocol.csv", b"id,body\n1,hello\n", "nocol.csv: no 'text' column (columns: id, body)"),
        ("binary.jsonl", b"\x00\x01\x02garbage\n\x89PNG\n", "binary.jsonl: no readable record"),
        ("bad.parquet", b"PAR1 this is not parquet", "bad.parquet: not a readable Parquet file"),
    ],
)
def test_wholly_unreadable_file_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with _store(tmp_path) as store:
        with pytest.raises(UnreadableFileError) as caught:
            ingest_files(store, config_from_dict({}), [path], progress=False)
        assert message in str(caught.value)
        for table in ("examples", "quarantine", "ingested_files", "duplicates"):
            assert store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "pool.xlsx"
    path.write_bytes(b"x")
    with _store(tmp_path) as store, pytest.raises(InputError, match="unsupported file type"):
        ingest_files(store, config_from_dict({}), [path], progress=False)


def test_configured_label_set_cannot_drop_labels_in_use(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": "hi there", "label": "maybe"}])
    other = _write_jsonl(tmp_path / "b.jsonl", [{"text": "second file"}])
    with _store(tmp_path) as store:
        ingest_files(
            store, config_from_dict({"languages": {"detect": False}}), [path], progress=False
        )
        with pytest.raises(InputError, match="leaves out labels already in the store: maybe"):
            Ingestor(store, config_from_dict(LABELS), progress=False).ingest(other)


def test_no_detection_gives_und(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "a.jsonl", [{"text": "Das ist ein langer deutscher Satz"}])
    with _store(tmp_path) as store:
        (report,) = ingest_files(
            store, config_from_dict({"languages": {"detect": False}}), [path], progress=False
        )
        assert report.undetermined_language == 1
        row = store.conn.execute("SELECT language, language_source FROM examples").fetchone()
        assert tuple(row) == ("und", "undetermined")


def test_failed_ingest_rolls_back_the_whole_file(tmp_path: Path, monkeypatch) -> None:
    rows = [{"text": f"row {i}", "language": "en"} for i in range(50)]
    path = _write_jsonl(tmp_path / "a.jsonl", rows)
    config = config_from_dict({"ingest": {"chunk_rows": 10}})
    calls = {"n": 0}
    original = sqlite3.Connection.executemany

    class Boom(RuntimeError):
        pass

    with _store(tmp_path) as store:
        real_conn = store.conn

        class Wrapper:
            def __getattr__(self, name):
                return getattr(real_conn, name)

            def executemany(self, sql, rows):
                if sql.startswith("INSERT INTO examples"):
                    calls["n"] += 1
                    if calls["n"] == 3:
                        raise Boom("disk on fire")
                return original(real_conn, sql, rows)

        store.conn = Wrapper()
        with pytest.raises(Boom):
            ingest_files(store, config, [path], progress=False)
        store.conn = real_conn
        assert calls["n"] == 3  # two chunks were written inside the transaction, then rolled back
        assert store.conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 0
        assert store.conn.execute("SELECT COUNT(*) FROM ingested_files").fetchone()[0] == 0
        (report,) = ingest_files(store, config, [path], progress=False)
        assert report.added == 50
