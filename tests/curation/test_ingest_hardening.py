"""Hostile input to `curate ingest` (issue 16, "Data loss and crashes on input").

The rule every test checks: good rows in the same file are kept, the bad one is quarantined with
file, line, field and reason, nothing vanishes (read = added + duplicates + quarantined) and one
row never takes the whole file down.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation import ingest as ingest_module
from curation.config import config_from_dict
from curation.errors import UnreadableFileError
from curation.ingest import FileReport, ingest_files
from curation.store import Store
from tests.conftest import run_cli

# Language detection is not under test here; leaving it off keeps these tests light.
NO_DETECT: dict = {"languages": {"detect": False}}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _ingest(
    store_dir: Path, path: Path, settings: dict | None = None
) -> tuple[FileReport, list[tuple], list[tuple]]:
    """Ingest one file into a fresh store: (report, quarantine rows, (line, text) of examples)."""
    with Store(store_dir) as store:
        (report,) = ingest_files(
            store, config_from_dict(settings or NO_DETECT), [path], progress=False
        )
        quarantine = [
            (Path(r["file"]).name, r["line"], r["field"], r["reason"])
            for r in store.conn.execute("SELECT * FROM quarantine ORDER BY line, field")
        ]
        examples = [
            (r["line"], r["text"])
            for r in store.conn.execute("SELECT line, text FROM examples ORDER BY line")
        ]
    # Nothing vanishes: every record read is stored, linked as a duplicate or quarantined.
    assert report.read == report.added + report.duplicates + report.quarantined
    return report, quarantine, examples


def _counts(report: FileReport) -> tuple[int, int, int, int]:
    return report.read, report.added, report.quarantined, report.malformed


def _assert_nothing_written(store: Store) -> None:
    for table in ("examples", "quarantine", "ingested_files", "duplicates"):
        assert store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


# -- 1. CSV with an unbalanced quote ------------------------------------------------------------


def test_csv_quote_never_closed_costs_only_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('id,text\n1,first row\n2,"never closed\n3,third row\n4,fourth row\n')
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (4, 3, 1, 1)
    assert quarantine == [
        ("q.csv", 3, "line", "unbalanced quote: the quoted field opened on this line never closes")
    ]
    assert examples == [(2, "first row"), (4, "third row"), (5, "fourth row")]
    with Store(tmp_path / "s") as store:
        raw = store.conn.execute("SELECT raw FROM quarantine").fetchone()[0]
    assert raw == '2,"never closed'  # the bad line itself, not the rest of the file


def test_csv_quote_closed_badly_by_a_later_row_is_cut_back_to_its_own_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        'id,text,language\n1,"one",en\n2,"two never closed,en\n3,"three",en\n4,four,en\n'
    )
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (4, 3, 1, 1)
    assert quarantine == [
        (
            "q.csv",
            3,
            "line",
            "unbalanced quote: the quoted field opened on this line breaks on line 4 "
            "(',' expected after '\"')",
        )
    ]
    assert examples == [(2, "one"), (4, "three"), (5, "four")]


def test_csv_quote_open_past_the_line_limit_is_given_up(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ingest_module, "MAX_RECORD_LINES", 3)
    path = tmp_path / "q.csv"
    path.write_text('id,text\n1,"open\n2,b\n3,c\n4,d\n5,e\n6,"three\nline\nfield"\n')
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (6, 5, 1, 1)
    assert quarantine == [
        (
            "q.csv",
            2,
            "line",
            "unbalanced quote: the quoted field opened on this line is still open after 3 lines",
        )
    ]
    # A quoted field within the limit still spans its lines.
    assert examples == [(3, "b"), (4, "c"), (5, "d"), (6, "e"), (7, "three line field")]


def test_csv_line_numbers_are_physical_lines_after_a_multiline_field(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('id,text\n1,"two\nlines"\n2,after\n3,"   "\n4,"bad"x\n')
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (4, 2, 2, 1)
    assert quarantine == [
        ("m.csv", 5, "text", "whitespace-only text"),
        ("m.csv", 6, "line", "malformed CSV: ',' expected after '\"'"),
    ]
    assert examples == [(2, "two lines"), (4, "after")]


# -- 2. one JSON line that crashed the whole file -----------------------------------------------


def test_lone_surrogate_in_a_json_line_quarantines_only_that_line(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "s.jsonl",
        [
            '{"id": "a", "text": "good one"}',
            r'{"id": "b", "text": "bad \ud800 here"}',
            r'{"id": "c", "text": "fine", "meta": {"note": ["x", "\udfff"]}}',
            '{"id": "d", "text": "good two"}',
            r'{"id": "e", "text": "a pair \ud83d\ude00 is fine"}',
        ],
    )
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (5, 3, 2, 0)
    assert quarantine == [
        ("s.jsonl", 2, "text", "lone surrogate U+D800 (not valid Unicode)"),
        ("s.jsonl", 3, "meta", "lone surrogate U+DFFF (not valid Unicode)"),
    ]
    assert examples == [(1, "good one"), (4, "good two"), (5, "a pair \U0001f600 is fine")]


def test_deeply_nested_json_line_quarantines_only_that_line(tmp_path: Path) -> None:
    def lists(depth: int) -> str:
        return "[" * depth + "]" * depth

    path = _write_lines(
        tmp_path / "d.jsonl",
        [
            '{"text": "good one"}',
            lists(100_000),
            '{"text": ' + lists(100_000) + "}",
            '{"text": "too deep", "meta": ' + lists(101) + "}",
            '{"text": "deep enough", "meta": ' + lists(100) + "}",
            '{"text": "huge number", "n": 1' + "0" * 5000 + "}",
            '{"text": "good two"}',
        ],
    )
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (7, 3, 4, 3)
    assert quarantine == [
        ("d.jsonl", 2, "line", "malformed JSON: nested too deeply to parse"),
        ("d.jsonl", 3, "line", "malformed JSON: nested too deeply to parse"),
        ("d.jsonl", 4, "meta", "nested deeper than 100 levels"),
        (
            "d.jsonl",
            6,
            "line",
            "malformed JSON: Exceeds the limit (4300 digits) for integer string conversion: "
            "value has 5001 digits",
        ),
    ]
    assert examples == [(1, "good one"), (5, "deep enough"), (7, "good two")]


# -- 3. Parquet with a corrupt page -------------------------------------------------------------


def _three_row_groups(path: Path, **options) -> pa.Table:
    table = pa.table(
        {
            "id": [f"r{i:02d}" for i in range(1, 31)],
            "text": [f"row number {i} has its own text" for i in range(1, 31)],
        }
    )
    pq.write_table(table, path, row_group_size=10, use_dictionary=False, **options)
    return table


def _lost_group_two(name: str, error: str) -> list[tuple]:
    reason = f"unreadable Parquet row group 2 of 3 (rows 11-20): {error}"
    return [(name, line, "row_group", reason) for line in range(11, 21)]


def _kept_groups_one_and_three() -> list[tuple]:
    return [(i, f"row number {i} has its own text") for i in (*range(1, 11), *range(21, 31))]


def test_parquet_corrupt_page_keeps_the_readable_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    _three_row_groups(path)
    text_chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)
    end = text_chunk.data_page_offset + text_chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    data[end - 16 : end] = b"\xff" * 16  # the tail of row group 2's compressed text page
    path.write_bytes(bytes(data))
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (30, 20, 10, 10)
    assert quarantine == _lost_group_two("c.parquet", "Corrupt snappy compressed data.")
    assert examples == _kept_groups_one_and_three()


def test_parquet_page_failing_its_checksum_is_not_stored(tmp_path: Path) -> None:
    path = tmp_path / "k.parquet"
    _three_row_groups(path, compression="NONE", write_page_checksum=True)
    data = path.read_bytes()
    # A flipped letter is still valid text: only the page checksum can tell.
    path.write_bytes(data.replace(b"row number 15 ", b"ROW number 15 "))
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (30, 20, 10, 10)
    assert quarantine == _lost_group_two(
        "k.parquet",
        "could not verify page integrity, CRC checksum verification failed for page_ordinal 0",
    )
    assert examples == _kept_groups_one_and_three()


def test_parquet_invalid_utf8_is_undecodable_bytes_in_that_row(tmp_path: Path) -> None:
    path = tmp_path / "u.parquet"
    # view() skips Arrow's UTF-8 check, as a sloppy writer or a corrupt dictionary page would.
    text = pa.array([b"good row", b"bad \xff\xfe row", "real \ufffd ok".encode()], pa.binary())
    pq.write_table(pa.table({"text": text.view(pa.string()), "n": [1, 2, 3]}), path)
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (3, 2, 1, 0)
    assert quarantine == [("u.parquet", 2, "text", "undecodable bytes (not valid UTF-8)")]
    assert examples == [(1, "good row"), (3, "real \ufffd ok")]


def test_parquet_with_no_readable_row_group_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "all.parquet"
    _three_row_groups(path, compression="NONE", write_page_checksum=True)
    path.write_bytes(path.read_bytes().replace(b"row number", b"ROW number"))
    with Store(tmp_path / "s") as store:
        with pytest.raises(UnreadableFileError) as caught:
            ingest_files(store, config_from_dict(NO_DETECT), [path], progress=False)
        assert str(caught.value) == f"{path}: no readable record (every one of 30 was malformed)"
        _assert_nothing_written(store)


# -- 4. UTF-8 byte-order mark -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bom.jsonl", b'\xef\xbb\xbf{"id": "1", "text": "first row"}\n{"text": "second row"}\n'),
        ("bom.csv", b"\xef\xbb\xbfid,text\n1,first row\n,second row\n"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_utf8_byte_order_mark_is_accepted(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert (report.added, quarantine) == (2, [])
    first_line = 1 if name.endswith(".jsonl") else 2
    assert examples == [(first_line, "first row"), (first_line + 1, "second row")]
    with Store(tmp_path / "s") as store:
        first_id = store.conn.execute("SELECT id FROM examples WHERE text = 'first row'")
        assert first_id.fetchone()[0] == "1"  # the first column is 'id', not '\ufeffid'


# -- 5. invisible-only text and NUL -------------------------------------------------------------


def test_invisible_only_text_is_empty_and_nul_is_refused(tmp_path: Path) -> None:
    rows = [
        {"text": "\u200b"},
        {"text": "\u200c\u200d"},
        {"text": "\ufeff"},
        {"text": "\u2060"},
        {"text": "\x00"},
        {"text": " \u200b\u00a0\t"},
        {"text": "a\x00b"},
        {"text": "नमस्\u200dते and \u200cmore"},
        {"text": "ok", "label": "pos\x00"},
        {"text": "\u200b\x00\u2060\u200b"},
    ]
    path = _write_lines(tmp_path / "i.jsonl", [json.dumps(row) for row in rows])
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (10, 1, 9, 0)
    empty = "empty text (only invisible characters: {})"
    assert quarantine == [
        ("i.jsonl", 1, "text", empty.format("U+200B")),
        ("i.jsonl", 2, "text", empty.format("U+200C, U+200D")),
        ("i.jsonl", 3, "text", empty.format("U+FEFF")),
        ("i.jsonl", 4, "text", empty.format("U+2060")),
        ("i.jsonl", 5, "text", empty.format("U+0000")),
        ("i.jsonl", 6, "text", empty.format("U+200B")),
        ("i.jsonl", 7, "text", "contains a NUL character (U+0000)"),
        ("i.jsonl", 9, "label", "contains a NUL character (U+0000)"),
        ("i.jsonl", 10, "text", empty.format("U+200B, U+0000, U+2060")),
    ]
    # Joiners inside real text carry meaning (Devanagari, Persian): kept as given.
    assert examples == [(8, "नमस्\u200dते and \u200cmore")]


def test_invisible_only_text_and_nul_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "i.csv"
    path.write_bytes(b"id,text\n1,\x00\n2,a\x00b\n3,\xe2\x80\x8b\n4,fine\n")
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert _counts(report) == (4, 1, 3, 0)
    assert quarantine == [
        ("i.csv", 2, "text", "empty text (only invisible characters: U+0000)"),
        ("i.csv", 3, "text", "contains a NUL character (U+0000)"),
        ("i.csv", 4, "text", "empty text (only invisible characters: U+200B)"),
    ]
    assert examples == [(5, "fine")]


def test_invisible_only() -> None:
    from curation.normalize import invisible_only

    assert invisible_only("\u200b\u200c\u200d\u2060\ufeff\x00\u00ad\u3164\ufe0f")
    assert not invisible_only("\u200bx")
    assert not invisible_only("\U0001f600\ufe0f")


# -- 6. labels are strings or integers ----------------------------------------------------------


def test_label_must_be_a_string_or_an_integer(tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "l.jsonl",
        [
            '{"text": "t1", "label": Infinity}',
            '{"text": "t2", "label": -Infinity}',
            '{"text": "t3", "label": 2.5}',
            '{"text": "t4", "label": NaN}',
            '{"text": "t5", "label": true}',
            '{"text": "t6", "label": 2.0}',
            '{"text": "t7", "label": 1}',
            '{"text": "t8", "label": 0}',
            '{"text": "t9", "label": "positive"}',
            '{"text": "t10", "label": {"a": 1}}',
            '{"text": "t11", "id": 1.5}',
            '{"text": "t12", "id": 7}',
            '{"text": "t13", "language": 5}',
        ],
    )
    report, quarantine, _ = _ingest(tmp_path / "s", path)
    assert _counts(report) == (13, 4, 9, 0)
    label = "label must be a string or an integer, not {}"
    assert quarantine == [
        ("l.jsonl", 1, "label", label.format("a float (Infinity)")),
        ("l.jsonl", 2, "label", label.format("a float (-Infinity)")),
        ("l.jsonl", 3, "label", label.format("a float (2.5)")),
        ("l.jsonl", 4, "label", label.format("a float (NaN)")),
        ("l.jsonl", 5, "label", label.format("a boolean (true)")),
        ("l.jsonl", 6, "label", label.format("a float (2.0)")),
        ("l.jsonl", 10, "label", label.format("a dict")),
        ("l.jsonl", 11, "id", "id must be a string or an integer, not a float (1.5)"),
        ("l.jsonl", 13, "language", "language must be a string, not an int"),
    ]
    with Store(tmp_path / "s") as store:
        stored = store.conn.execute(
            "SELECT e.text, e.id, l.label FROM examples e LEFT JOIN labels l "
            "ON l.example_id = e.id ORDER BY e.line"
        ).fetchall()
        assert [(r[0], r[2]) for r in stored] == [
            ("t7", "1"),
            ("t8", "0"),
            ("t9", "positive"),
            ("t12", None),
        ]
        assert stored[3][1] == "7"
        assert store.label_names() == ["1", "0", "positive"]


def test_parquet_integer_labels_are_class_ids_float_labels_are_refused(tmp_path: Path) -> None:
    ints = tmp_path / "ints.parquet"
    pl.DataFrame({"text": ["p1", "p2", "p3"], "label": [0, 1, None]}).write_parquet(ints)
    report, quarantine, examples = _ingest(tmp_path / "s1", ints)
    assert (report.added, quarantine) == (3, [])
    floats = tmp_path / "floats.parquet"
    frame = pl.DataFrame({"text": ["f1", "f2", "f3"], "label": [1.0, float("nan"), None]})
    frame.write_parquet(floats)
    report, quarantine, examples = _ingest(tmp_path / "s2", floats)
    assert _counts(report) == (3, 1, 2, 0)
    assert quarantine == [
        ("floats.parquet", 1, "label", "label must be a string or an integer, not a float (1.0)"),
        ("floats.parquet", 2, "label", "label must be a string or an integer, not a float (NaN)"),
    ]
    assert examples == [(3, "f3")]


# -- 7. a real U+FFFD is text, only bad bytes are undecodable -----------------------------------


def test_real_replacement_character_is_kept_bad_bytes_are_not(tmp_path: Path) -> None:
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(
        '{"text": "real \ufffd in text"}\n'.encode()
        + b'{"text": "escaped \\ufffd too"}\n'
        + b'{"text": "bad \xff byte"}\n'
        + b'{"text": "fine", "m\xffeta": "x"}\n'
    )
    report, quarantine, examples = _ingest(tmp_path / "s1", jsonl)
    assert _counts(report) == (4, 2, 2, 0)
    assert quarantine == [
        ("r.jsonl", 3, "text", "undecodable bytes (not valid UTF-8)"),
        ("r.jsonl", 4, "m\ufffdeta", "undecodable bytes (not valid UTF-8)"),
    ]
    assert examples == [(1, "real \ufffd in text"), (2, "escaped \ufffd too")]
    with Store(tmp_path / "s1") as store:
        raw = store.conn.execute("SELECT raw FROM quarantine WHERE line = 3").fetchone()[0]
    assert raw == '{"text": "bad \ufffd byte"}'
    csv_path = tmp_path / "r.csv"
    csv_path.write_bytes("id,text\n1,real \ufffd here\n".encode() + b"2,bad \xff\n")
    report, quarantine, examples = _ingest(tmp_path / "s2", csv_path)
    assert quarantine == [("r.csv", 3, "text", "undecodable bytes (not valid UTF-8)")]
    assert examples == [(2, "real \ufffd here")]


# -- 8. UTF-16 and empty files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "encoding"),
    [
        ("le.csv", codecs.BOM_UTF16_LE + "id,text\n1,hello\n".encode("utf-16-le"), "UTF-16"),
        ("be.jsonl", codecs.BOM_UTF16_BE + '{"text": "hi"}\n'.encode("utf-16-be"), "UTF-16"),
        ("nobom.jsonl", '{"text": "hello"}\n'.encode("utf-16-le"), "UTF-16"),
        ("nobom.csv", "id,text\n1,hello\n".encode("utf-16-be"), "UTF-16"),
        ("u32.jsonl", codecs.BOM_UTF32_LE + '{"text": "hi"}\n'.encode("utf-32-le"), "UTF-32"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_utf16_file_is_refused_with_a_clean_message(
    tmp_path: Path, name: str, content: bytes, encoding: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    endian = "big" if "be" in name or name == "nobom.csv" else "little"
    with Store(tmp_path / "s") as store:
        with pytest.raises(UnreadableFileError) as caught:
            ingest_files(store, config_from_dict(NO_DETECT), [path], progress=False)
        assert str(caught.value) == (
            f"{path}: looks like {encoding} ({endian}-endian), not UTF-8; convert it to UTF-8"
        )
        _assert_nothing_written(store)


def test_column_names_in_messages_are_printable(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(b"id,bo\x00dy\x01\n1,hello\n")
    with Store(tmp_path / "s") as store, pytest.raises(UnreadableFileError) as caught:
        ingest_files(store, config_from_dict(NO_DETECT), [path], progress=False)
    assert str(caught.value) == f"{path}: no 'text' column (columns: id, bo\\x00dy\\x01)"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.jsonl", b""),
        ("empty.csv", b""),
        ("empty.tsv", b""),
        ("blank.jsonl", b"\n\n  \n"),
        ("blank.csv", b"\n\r\n"),
        ("bom.csv", b"\xef\xbb\xbf"),
        ("bom.jsonl", b"\xef\xbb\xbf\n"),
        ("header_only.csv", b"id,text\n"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_file_with_no_records_is_zero_rows_in_every_format(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    report, quarantine, examples = _ingest(tmp_path / "s", path)
    assert (report.read, report.added, quarantine, examples) == (0, 0, [], [])
    with Store(tmp_path / "s") as store:
        assert store.conn.execute("SELECT COUNT(*) FROM ingested_files").fetchone()[0] == 1


def test_empty_jsonl_and_empty_csv_exit_the_same_way(tmp_path: Path, capsys, monkeypatch) -> None:
    config = tmp_path / "curate.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "store"}"\n[languages]\ndetect = false\n')
    monkeypatch.setenv("CURATE_CONFIG", str(config))
    results = []
    for name in ("empty.jsonl", "empty.csv"):
        (tmp_path / name).write_bytes(b"")
        code, out, err = run_cli(capsys, "ingest", str(tmp_path / name), "--json")
        results.append((code, json.loads(out)["files"][0]["read"], err))
    assert results == [(0, 0, ""), (0, 0, "")]
