"""Ingest unlabeled (or partly labeled) pools into the store, validating every row.

Formats, chosen by extension: CSV (``.csv``, ``.tsv``), JSON lines (``.jsonl``, ``.ndjson``) and
Parquet (``.parquet``, ``.pq``). Files are streamed in chunks of ``[ingest] chunk_rows`` rows, so a
1M-row file never holds 1M rows of Python objects.

Readers:
- Parquet is read row group by row group, batch by batch, with pyarrow into polars frames; page
  checksums are verified where the writer wrote them. A row group that cannot be read (a corrupt
  page: bad compression, a bad page header, a failed checksum) costs only its own unread rows:
  each is quarantined with field ``row_group`` and a reason naming the row group and its rows,
  and the other row groups are ingested. A string that is not valid UTF-8 (polars would abort
  on it) makes only its own row undecodable.
- CSV and JSON lines are read with Python's C-accelerated ``csv`` and ``json`` modules, not
  polars: polars pads a short CSV row with nulls and coerces JSON types, which would let a
  malformed row through without a trace, and we must report every bad row with its line.

Encoding: CSV and JSON lines must be UTF-8; a leading UTF-8 byte-order mark is accepted and
dropped. A file that looks like UTF-16 or UTF-32 (its byte-order mark, or NUL in every other
byte) is refused as a whole with a message saying so, never read as garbage rows. Bytes that are
not valid UTF-8 make their row undecodable (they are kept as lone surrogates until then, so the
quarantine names the field they are in); a U+FFFD really present in the text is just a character.

Unbalanced quotes in CSV: the ``csv`` module is fed physical lines one at a time and the lines each
record took are remembered. When a record cannot be parsed -- a quoted field that never closes,
one still open after ``MAX_RECORD_LINES`` physical lines, or one "closed" by a later line's quote
into a strict-mode error -- only the line where that record starts is quarantined, and parsing
resumes at the line after it: the lines the open quote swallowed are read again as records of
their own. A quoted field that spans lines and closes cleanly is one record (an ordinary
multi-line field). The limit of this: a stray quote that a later line happens to close cleanly,
with the header's number of fields, cannot be told from a multi-line field, and is read as one.

Empty files: a file with no record (0 bytes, only blank lines or a byte-order mark, a CSV with
only its header, a Parquet file with no rows) is not an error in any format: it is ingested with
0 rows and recorded like any other file. A CSV whose header has no ``text`` column stays an error
even with no rows: its columns say it is the wrong file.

Columns: ``text`` (required), ``id``, ``language``, ``label`` (optional); all others are kept as
JSON metadata.

Line numbers (``line``) are 1-based physical lines: for JSON lines, the line; for CSV, the line
where the record starts (the header is line 1 when the file starts with it), also after a quoted
field that spans lines; for Parquet, the row number.

A whole file is ingested in one transaction together with its ``ingested_files`` row: a process
killed mid-ingest leaves the store as before that file, and a rerun ingests it again from the
start. A file whose content hash was already ingested is skipped and reported as such.

Row checks, each sending the row to quarantine with file, line, field and reason:
- missing, empty or whitespace-only text, and text made only of invisible characters (zero-width
  space and joiners, word joiner, BOM, NUL and other controls; see `normalize.invisible_only`),
  reported as ``empty text (only invisible characters: U+200B)``. Joiners inside a real text are
  kept: they carry meaning in Indic and Arabic scripts and in emoji;
- a NUL character (U+0000) anywhere in a value: the row is quarantined, not cleaned. A NUL in text
  means a broken export (a C string, a UTF-16 fragment); removing it would store a text nobody
  wrote, and what else the export broke is unknown;
- undecodable bytes (invalid UTF-8) and lone surrogates (``"\\ud800"`` escaped in JSON): neither is
  text, and SQLite cannot store them;
- JSON that cannot be parsed: bad syntax, a non-object, nesting too deep for the parser, an
  integer longer than Python converts; and a value nested deeper than ``MAX_NESTING`` levels;
- text longer than ``max_text_length``, a label outside ``[labels] names`` (without them: once
  the store has labels, a label outside those, unless ingested with ``new_labels``), an invalid or
  disallowed language tag, a malformed CSV record, a given id already used by a different text;
- a value of the wrong type. ``label`` and ``id`` are strings or integers: an integer (class ids
  0, 1, 2) is kept as its decimal string; a float (2.5, and also 2.0, NaN and Infinity) or a
  boolean is refused with a reason naming its type and value, never coerced. ``language`` is a
  string.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from curation.config import Config
from curation.errors import InputError, UnreadableFileError
from curation.languages import (
    UNDETERMINED,
    Detection,
    LanguageDetector,
    is_allowed,
    standardize_tag,
)
from curation.normalize import (
    file_sha256,
    hash_example_id,
    invisible_only,
    normalize_text,
    text_hash,
)
from curation.store import Store, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

CSV_SUFFIXES = {".csv", ".tsv"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
KNOWN_COLUMNS = ("id", "text", "language", "label")
REPLACEMENT_CHAR = "\ufffd"
UNDECODABLE = "undecodable bytes (not valid UTF-8)"
# A CSV record may span at most this many physical lines; past it an open quote is taken for a
# stray one. Real multi-line fields (a review in paragraphs) stay far below, and a stray quote
# costs at most this many lines read twice.
MAX_RECORD_LINES = 1000
# Values nested deeper are refused: no real metadata is this deep, and the metadata's json.dumps
# must stay far from Python's recursion limit (a JSON line near it parses, then dumps would not).
MAX_NESTING = 100
# SQLite's default limit on host parameters in one statement is 32766; stay well below.
_SQL_BATCH = 5000

# Raise the csv module's field limit: a long text is a quarantine reason, not a crash.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

# Lone surrogates: an undecodable byte kept by "surrogateescape" (U+DC80..U+DCFF) or a "\ud800"
# escape in JSON. Neither is text, and SQLite's UTF-8 cannot store them.
_SURROGATE = re.compile("[\ud800-\udfff]")
# One scan finds both things a string may hide: a NUL or a lone surrogate.
_SUSPECT = re.compile("[\x00\ud800-\udfff]")
# Byte-order marks of encodings that are not UTF-8; UTF-32 LE first, it starts like UTF-16 LE.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian)"),
)


@dataclass
class RawRow:
    """One record as read: values, or the reason it could not be parsed."""

    line: int
    values: dict | None
    problem: tuple[str, str] | None = None  # (field, reason) when the record itself is malformed
    raw: str | None = None
    # The record's bytes were not all valid UTF-8: its lone surrogates in U+DC80..U+DCFF stand
    # for those bytes (a JSON "\udc80" escape is told apart by this flag being False).
    bad_bytes: bool = False


@dataclass
class FileReport:
    """What ingesting one file did (`curate ingest` sums these)."""

    file: str
    read: int = 0
    added: int = 0
    duplicates: int = 0
    quarantined: int = 0
    malformed: int = 0  # records that could not be parsed at all (also counted in quarantined)
    labels_imported: int = 0
    undetermined_language: int = 0
    per_language: Counter = field(default_factory=Counter)
    skipped: bool = False  # content already ingested
    ingested_at: str | None = None
    # Why the file could not be ingested at all (it was rolled back; its counts are all 0).
    error: str | None = None
    # The exception behind `error`, kept so `--debug` can still show its traceback.
    failure: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        return "skipped" if self.skipped else "ingested"

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "status": self.status,
            "read": self.read,
            "added": self.added,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "labels_imported": self.labels_imported,
            "undetermined_language": self.undetermined_language,
            "per_language": dict(sorted(self.per_language.items())),
            "skipped": self.skipped,
            "error": self.error,
        }


@dataclass
class _ValidRow:
    line: int
    given_id: str | None
    raw_text: str
    text: str
    text_hash: str
    label: str | None
    language: str | None
    metadata: dict
    detection: Detection | None = None


# -- text helpers -------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, bool]:
    """UTF-8 text, and whether some bytes were not valid UTF-8."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        # Each bad byte becomes a lone surrogate inside the value it belongs to, so the quarantine
        # can name that field; "replace" would make them U+FFFD, which real text may contain.
        return data.decode("utf-8", errors="surrogateescape"), True


def _storable(text: str) -> str:
    """Text SQLite can store: each lone surrogate (a bad byte, a bad escape) becomes U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT_CHAR, text)


def _printable(text: str) -> str:
    """Text fit for a one-line message: NUL and other unprintable characters escaped."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (pyarrow's may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _wide_encoding(head: bytes) -> str | None:
    """'UTF-16 (little-endian)' and the like when a file's first bytes look like UTF-16/32."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return name
    # No byte-order mark: mostly-ASCII UTF-16/32 text has NUL in the high bytes of every code unit
    # and almost never in the low byte. UTF-8 text has no NUL; binary files lack the rhythm.
    for width, name in ((4, "UTF-32"), (2, "UTF-16")):
        units = len(head) // width
        if units < 4:
            continue
        nul_share = [
            head[offset : units * width : width].count(0) / units for offset in range(width)
        ]
        for low, endian in ((0, "little"), (width - 1, "big")):
            high = [share for offset, share in enumerate(nul_share) if offset != low]
            if nul_share[low] < 0.1 and min(high) > 0.6:
                return f"{name} ({endian}-endian)"
    return None


def _refuse_wide_encoding(path: Path) -> None:
    with open(path, "rb") as handle:
        name = _wide_encoding(handle.read(4096))
    if name is not None:
        raise UnreadableFileError(f"{path}: looks like {name}, not UTF-8; convert it to UTF-8")


# -- readers ------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    _refuse_wide_encoding(path)
    with open(path, "rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            if number == 1:
                raw_line = raw_line.removeprefix(codecs.BOM_UTF8)  # an encoding mark, not data
            line, bad_bytes = _decode(raw_line)
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            problem = None
            try:
                values = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = f"malformed JSON: {exc.msg}"
            except RecursionError:
                problem = "malformed JSON: nested too deeply to parse"
            except ValueError as exc:
                # An integer longer than Python converts (4300 digits); the advice after ';'
                # (sys.set_int_max_str_digits) is for programmers, not for whoever fixes the file.
                problem = f"malformed JSON: {str(exc).split(';')[0]}"
            if problem is None and not isinstance(values, dict):
                problem = f"not a JSON object (a {type(values).__name__})"
            if problem is not None:
                yield RawRow(number, None, ("line", problem), line, bad_bytes)
                continue
            yield RawRow(number, values, None, line, bad_bytes)


class _RecordTooLong(Exception):
    """A CSV record took more than MAX_RECORD_LINES physical lines."""


class _PhysicalLines:
    """A text file's lines for ``csv.reader``, numbered; the lines of the record being parsed are
    remembered, and all but its first can be handed back to be read again (module docstring)."""

    def __init__(self, handle: Iterable[str]) -> None:
        self._source = iter(handle)
        self._again: deque[tuple[int, str]] = deque()
        self._numbered = 0
        self.record: list[tuple[int, str]] = []

    def __iter__(self) -> _PhysicalLines:
        return self

    def __next__(self) -> str:
        if self._again:
            number, line = self._again.popleft()
        else:
            line = next(self._source)
            self._numbered += 1
            number = self._numbered
            if number == 1:
                line = line.removeprefix("\ufeff")  # an encoding mark, not data
        record = self.record
        record.append((number, line))
        if len(record) > MAX_RECORD_LINES:
            # Raised through csv.reader, which starts its next record afresh.
            raise _RecordTooLong(f"a quoted field is still open after {MAX_RECORD_LINES} lines")
        return line

    def start_record(self) -> None:
        self.record = []

    def give_back_all_but_first(self) -> tuple[int, str]:
        """The record's first line; its other lines will be read again."""
        first, *rest = self.record
        self._again.extendleft(reversed(rest))
        self.record = []
        return first


def _broken_record_reason(error: Exception, first: int, last: int) -> str:
    if isinstance(error, _RecordTooLong):
        return (
            "unbalanced quote: the quoted field opened on this line is still open after "
            f"{MAX_RECORD_LINES} lines"
        )
    if str(error) == "unexpected end of data":  # csv's strict mode: end of file inside quotes
        return "unbalanced quote: the quoted field opened on this line never closes"
    if last > first:
        return (
            "unbalanced quote: the quoted field opened on this line breaks on line "
            f"{last} ({error})"
        )
    return f"malformed CSV: {error}"


def _read_csv(path: Path) -> Iterator[RawRow]:
    _refuse_wide_encoding(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        lines = _PhysicalLines(handle)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header: list[str] | None = None
        while header is None:
            lines.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                return  # no header, so no record: an empty file (see the module docstring)
            except (csv.Error, _RecordTooLong) as exc:
                message = _printable(_storable(str(exc)))
                raise UnreadableFileError(f"{path}: not a readable CSV header: {message}") from None
            if any(name.strip() for name in fields):  # blank lines before the header are skipped
                header = [_storable(name).strip().lstrip("\ufeff") for name in fields]
        if "text" not in header:
            columns = ", ".join(_printable(name) for name in header)
            raise UnreadableFileError(f"{path}: no 'text' column (columns: {columns})")
        while True:
            lines.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                break
            except (csv.Error, _RecordTooLong) as exc:
                last = lines.record[-1][0]
                number, line = lines.give_back_all_but_first()
                reason = _broken_record_reason(exc, number, last)
                yield RawRow(number, None, ("line", reason), line.rstrip("\r\n"), True)
                continue
            if not fields:
                continue
            record = lines.record
            number = record[0][0]
            raw = (
                record[0][1] if len(record) == 1 else "".join(text for _, text in record)
            ).rstrip("\r\n")
            # bad_bytes=True: CSV has no escapes, every lone surrogate in it is an undecodable byte.
            if len(fields) != len(header):
                reason = f"malformed row: {len(fields)} fields, header has {len(header)}"
                yield RawRow(number, None, ("line", reason), raw, True)
                continue
            yield RawRow(number, dict(zip(header, fields, strict=True)), None, raw, True)


def _rows_with_bad_utf8(batch: pa.RecordBatch) -> Iterator[tuple[dict, bool]]:
    """Rows of a batch whose string columns hold invalid UTF-8 (polars aborts on those): such a
    column is read as bytes and each value decoded like a line of the other formats."""
    import polars as pl
    import pyarrow as pa

    columns, as_bytes = [], []
    for column_field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_string(column_field.type) or pa.types.is_large_string(column_field.type):
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                large = pa.types.is_large_string(column_field.type)
                column = column.view(pa.large_binary() if large else pa.binary())
                as_bytes.append(column_field.name)
        columns.append(column)
    fixed = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
    fixed.validate(full=True)  # anything else wrong: the caller gives up on the row group
    for values in pl.from_arrow(fixed).iter_rows(named=True):
        bad_bytes = False
        for name in as_bytes:
            if values[name] is not None:
                values[name], bad = _decode(values[name])
                bad_bytes = bad_bytes or bad
        yield values, bad_bytes


def _batch_rows(batch: pa.RecordBatch) -> Iterator[tuple[dict, bool]]:
    import polars as pl
    import pyarrow as pa

    try:
        # Arrow does not check UTF-8 when reading Parquet; a corrupt dictionary page or a sloppy
        # writer leaves invalid strings that would abort polars. A full check is a fast C++ pass.
        batch.validate(full=True)
    except pa.ArrowInvalid:
        yield from _rows_with_bad_utf8(batch)
        return
    for values in pl.from_arrow(batch).iter_rows(named=True):
        yield values, False


def _read_parquet(path: Path, chunk_rows: int) -> Iterator[RawRow]:
    import pyarrow.parquet as pq
    from polars.exceptions import PanicException

    try:
        # Page checksums, where the writer wrote them, catch a corrupt page that would otherwise
        # decode into plausible but wrong text.
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UnreadableFileError(f"{path}: not a readable Parquet file: {exc}") from None
    if "text" not in parquet.schema_arrow.names:
        columns = ", ".join(_printable(name) for name in parquet.schema_arrow.names) or "none"
        raise UnreadableFileError(f"{path}: no 'text' column (columns: {columns})")
    metadata = parquet.metadata
    groups = metadata.num_row_groups
    first = 1
    for group in range(groups):
        last = first + metadata.row_group(group).num_rows - 1
        number = first - 1
        try:
            for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[group]):
                for values, bad_bytes in _batch_rows(batch):
                    number += 1
                    yield RawRow(number, values, None, None, bad_bytes)
        # Any failure reading a row group (OSError for bad compression or a bad page header,
        # ArrowInvalid for bad encodings, a polars panic) costs that row group only; the footer
        # still says which rows it held. GeneratorExit is not caught: it is a BaseException.
        except (Exception, PanicException) as exc:
            reason = (
                f"unreadable Parquet row group {group + 1} of {groups} (rows {first}-{last}): "
                f"{_one_line(exc)}"
            )
            for lost in range(number + 1, last + 1):
                yield RawRow(lost, None, ("row_group", reason))
        first = last + 1


def read_rows(path: Path, *, chunk_rows: int = 20000) -> Iterator[RawRow]:
    """Every record of a file, in order, malformed ones included (with their problem)."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path)
    if suffix in CSV_SUFFIXES:
        return _read_csv(path)
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path, chunk_rows)
    known = ", ".join(sorted(CSV_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES))
    raise InputError(f"{path}: unsupported file type '{suffix}' (use one of {known})")


def _chunks(rows: Iterator[RawRow], size: int) -> Iterator[list[RawRow]]:
    chunk: list[RawRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- validation ---------------------------------------------------------------------------------


def _surrogate_reason(text: str, bad_bytes: bool) -> str:
    found = _SURROGATE.findall(text)
    if bad_bytes and all("\udc80" <= char <= "\udcff" for char in found):
        return UNDECODABLE
    return f"lone surrogate U+{ord(found[0]):04X} (not valid Unicode)"


def _scan_values(values: dict, bad_bytes: bool) -> tuple[tuple[str, str] | None, str | None]:
    """Every string of a record (keys and nested values too) and its nesting checked: (the problem
    that refuses the row, else None; the first field holding a NUL, else None). The NUL is only
    reported after the text checks, so that a text of nothing but NUL counts as empty."""
    nul_field: str | None = None
    for name, value in values.items():
        # The common case, a flat string field: one regex scan, no walk.
        if (
            type(value) is str
            and type(name) is str
            and _SUSPECT.search(value) is None
            and _SUSPECT.search(name) is None
        ):
            continue
        field_name = _storable(str(name))
        pending: list[tuple[object, int]] = [(name, 0), (value, 0)]
        while pending:  # a walk with its own stack: nesting must not hit the recursion limit
            item, depth = pending.pop()
            if isinstance(item, str):
                if _SURROGATE.search(item) is not None:
                    return (field_name, _surrogate_reason(item, bad_bytes)), None
                if nul_field is None and "\x00" in item:
                    nul_field = field_name
            elif isinstance(item, dict | list | tuple):
                if depth >= MAX_NESTING:
                    return (field_name, f"nested deeper than {MAX_NESTING} levels"), None
                children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
                pending.extend((child, depth + 1) for child in children)
    return None, nul_field


def _float_text(value: float) -> str:
    """A float as the JSON lines that hold one spell it (NaN, Infinity)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _as_optional_str(name: str, value: object, *, integers: bool) -> str | None:
    """A string column's value; TypeError with the reason for any other type. Integers, where
    allowed, become their decimal string (class ids 0, 1, 2); floats and booleans never do:
    2.0 as "2", 2.5 as "2.5" or NaN as no value would each change what the file says."""
    if value is None or isinstance(value, str):
        return value
    if integers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    wanted = "a string or an integer" if integers else "a string"
    if isinstance(value, bool):
        kind = f"a boolean ({'true' if value else 'false'})"
    elif isinstance(value, float):
        kind = f"a float ({_float_text(value)})"
    else:
        type_name = type(value).__name__
        kind = f"{'an' if type_name[:1] in 'aeiou' else 'a'} {type_name}"
    raise TypeError(f"{name} must be {wanted}, not {kind}")


def _invisible_reason(text: str) -> str:
    codes = [f"U+{ord(char):04X}" for char in dict.fromkeys(text) if not char.isspace()]
    listed = ", ".join(codes[:8]) + (", ..." if len(codes) > 8 else "")
    return f"empty text (only invisible characters: {listed})"


class _Validator:
    def __init__(
        self,
        config: Config,
        label_names: Sequence[str] | None,
        store_labels: Sequence[str] | None = None,
    ) -> None:
        self.max_len = config.ingest.max_text_length
        self.allowed = config.languages.allowed
        self.label_names = set(label_names) if label_names is not None else None
        self.label_list = ", ".join(label_names) if label_names is not None else ""
        # The store's labels when no [labels] names are configured: a value outside them is far
        # more often a typo or a wrong file than a new class, so it must not become one silently.
        self.store_labels = set(store_labels) if store_labels is not None else None
        self.store_label_list = ", ".join(sorted(store_labels)) if store_labels is not None else ""

    def check(self, row: RawRow) -> _ValidRow | tuple[str, str]:
        if row.problem is not None:
            return row.problem
        values = row.values or {}
        problem, nul_field = _scan_values(values, row.bad_bytes)
        if problem is not None:
            return problem
        if "text" not in values or values["text"] is None:
            return ("text", "missing text")
        raw_text = values["text"]
        if not isinstance(raw_text, str):
            return ("text", f"text is not a string (a {type(raw_text).__name__})")
        if raw_text == "":
            return ("text", "empty text")
        text = normalize_text(raw_text)
        if not text:
            return ("text", "whitespace-only text")
        if invisible_only(text):
            return ("text", _invisible_reason(text))
        if nul_field is not None:
            return (nul_field, "contains a NUL character (U+0000)")
        if len(text) > self.max_len:
            return ("text", f"text longer than {self.max_len} characters ({len(text)})")
        parsed: dict[str, str | None] = {}
        for name in ("id", "language", "label"):
            try:
                value = _as_optional_str(name, values.get(name), integers=name != "language")
            except TypeError as exc:
                return (name, str(exc))
            parsed[name] = value.strip() if value is not None and value.strip() else None
        label = parsed["label"]
        if label is not None and self.label_names is not None and label not in self.label_names:
            return ("label", f"label '{label}' not in [labels] names ({self.label_list})")
        if label is not None and self.store_labels is not None and label not in self.store_labels:
            return (
                "label",
                f"label '{label}' is not one of the store's labels ({self.store_label_list}); "
                "add it to [labels] names or ingest with --new-labels",
            )
        language = parsed["language"]
        if language is not None:
            standard = standardize_tag(language)
            if standard is None:
                return ("language", f"unknown language code '{language}' (not a valid BCP-47 tag)")
            if not is_allowed(standard, self.allowed):
                allowed = ", ".join(self.allowed or [])
                return ("language", f"language '{standard}' not in [languages] allowed ({allowed})")
            language = standard
        metadata = {k: v for k, v in values.items() if k not in KNOWN_COLUMNS}
        return _ValidRow(
            line=row.line,
            given_id=parsed["id"],
            raw_text=raw_text,
            text=text,
            text_hash=text_hash(text),
            label=label,
            language=language,
            metadata=metadata,
        )


# -- the ingest itself --------------------------------------------------------------------------


def _existing(conn, sql: str, keys: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), _SQL_BATCH):
        part = unique[start : start + _SQL_BATCH]
        marks = ",".join("?" * len(part))
        for key, value in conn.execute(sql.format(marks=marks), part):
            found[key] = value
    return found


class Ingestor:
    """Ingests files into one store with one config; keeps the language detector warm."""

    def __init__(
        self, store: Store, config: Config, *, progress: bool = True, new_labels: bool = False
    ) -> None:
        self.store = store
        self.config = config
        self.progress = progress
        # Accept labels the store does not have yet (only matters without [labels] names).
        self.new_labels = new_labels
        self.detector = LanguageDetector(
            allowed=config.languages.allowed,
            min_confidence=config.languages.min_confidence,
            accuracy=config.languages.detection_accuracy,
        )

    def __repr__(self) -> str:
        return f"Ingestor(store={self.store!r}, progress={self.progress})"

    def ingest(self, path: str | Path, *, source: str | None = None) -> FileReport:
        path = Path(path)
        if not path.is_file():
            raise UnreadableFileError(f"{path}: no such file")
        content_hash = file_sha256(str(path))
        conn = self.store.conn
        seen = conn.execute(
            "SELECT path, ingested_at FROM ingested_files WHERE content_hash = ?", (content_hash,)
        ).fetchone()
        report = FileReport(file=str(path))
        if seen is not None:
            report.skipped = True
            report.ingested_at = seen["ingested_at"]
            return report
        source_name = source or path.name
        rows = read_rows(path, chunk_rows=self.config.ingest.chunk_rows)
        with self.store.transaction():
            self._ingest_rows(path, rows, source_name, report)
            if report.read > 0 and report.malformed == report.read:
                raise UnreadableFileError(
                    f"{path}: no readable record (every one of {report.read} was malformed)"
                )
            conn.execute(
                "INSERT INTO ingested_files (content_hash, path, source, rows_read, added, "
                "duplicates, quarantined, ingested_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    content_hash,
                    str(path),
                    source_name,
                    report.read,
                    report.added,
                    report.duplicates,
                    report.quarantined,
                    utc_now(),
                ),
            )
            if report.added and self.config.engine.kind == "ray":
                # The distributed engine reads the pool as Parquet shards: the file's new
                # examples become one, committed with them.
                from curation.pool_shards import sync_pool_shards

                sync_pool_shards(self.store, rows_per_shard=self.config.engine.pool_shard_rows)
        return report

    def _label_names(self) -> list[str] | None:
        if self.config.labels.names is not None:
            return list(self.config.labels.names)
        return None

    def _ingest_rows(
        self, path: Path, rows: Iterator[RawRow], source: str, report: FileReport
    ) -> None:
        from tqdm import tqdm

        configured = self._label_names()
        if configured is not None:
            self._sync_configured_labels(configured)
        known_labels = self.store.label_names()
        # Without [labels] names the first labeled ingest defines the label set; after that a
        # new value is quarantined unless the user said new classes are meant (--new-labels).
        closed = configured is None and bool(known_labels) and not self.new_labels
        validator = _Validator(self.config, configured, list(known_labels) if closed else None)
        bar = tqdm(
            desc=f"ingest {path.name}",
            unit=" rows",
            disable=not self.progress,
            file=sys.stderr,
            mininterval=0.5,
        )
        now = utc_now()
        # Closed however the file ends (a bad file raises mid-way): an open bar is closed by
        # the garbage collector at a random later write, as stray lines on stderr.
        try:
            for chunk in _chunks(rows, self.config.ingest.chunk_rows):
                report.read += len(chunk)
                bar.update(len(chunk))
                self._ingest_chunk(path, chunk, validator, known_labels, source, now, report)
        finally:
            bar.close()

    def _ingest_chunk(
        self,
        path: Path,
        chunk: list[RawRow],
        validator: _Validator,
        known_labels: list[str],
        source: str,
        now: str,
        report: FileReport,
    ) -> None:
        """Validate, deduplicate and store one chunk of a file's rows (one transaction's part)."""
        conn = self.store.conn
        valid: list[_ValidRow] = []
        for row in chunk:
            if row.problem is not None:
                report.malformed += 1
            checked = validator.check(row)
            if isinstance(checked, tuple):
                self._quarantine(path, row, checked, source, now, report)
            else:
                valid.append(checked)
        if not valid:
            return
        self._detect_languages(valid)
        by_hash = _existing(
            conn,
            "SELECT text_hash, id FROM examples WHERE text_hash IN ({marks})",
            [row.text_hash for row in valid],
        )
        given = [row.given_id for row in valid if row.given_id is not None]
        hashed = [hash_example_id(row.text) for row in valid if row.given_id is None]
        by_id = _existing(
            conn, "SELECT id, text_hash FROM examples WHERE id IN ({marks})", given + hashed
        )
        new_examples, new_labels, dups = [], [], []
        for row in valid:
            if row.text_hash in by_hash:
                dups.append((by_hash[row.text_hash], row))
                continue
            example_id = row.given_id or hash_example_id(row.text)
            if example_id in by_id:
                reason = f"id '{example_id}' already used by a different text"
                self._quarantine(
                    path,
                    RawRow(row.line, None, None, row.raw_text),
                    ("id", reason),
                    source,
                    now,
                    report,
                )
                continue
            by_hash[row.text_hash] = example_id
            by_id[example_id] = row.text_hash
            language, lang_source, confidence, guess = self._language_of(row)
            if language == UNDETERMINED:
                report.undetermined_language += 1
            new_examples.append(
                (
                    example_id,
                    row.text,
                    row.raw_text,
                    row.text_hash,
                    language,
                    lang_source,
                    confidence,
                    guess,
                    source,
                    str(path),
                    row.line,
                    json.dumps(row.metadata, ensure_ascii=False, default=str)
                    if row.metadata
                    else None,
                    now,
                )
            )
            report.per_language[language] += 1
            if row.label is not None:
                new_labels.append((example_id, row.label))
        conn.executemany(
            "INSERT INTO examples (id, text, raw_text, text_hash, language, language_source, "
            "language_confidence, detected_guess, source, file, line, metadata, created_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            new_examples,
        )
        report.added += len(new_examples)
        for canonical, row in dups:
            conn.execute(
                "INSERT OR IGNORE INTO duplicates (example_id, given_id, label, source, file, "
                "line, created_at) VALUES (?,?,?,?,?,?,?)",
                (canonical, row.given_id, row.label, source, str(path), row.line, now),
            )
            if row.label is not None:
                # The same text labeled again: the label applies to the first occurrence when
                # it has none yet; a conflicting label stays on the duplicate row.
                new_labels.append((canonical, row.label))
        report.duplicates += len(dups)
        for label in dict.fromkeys(label for _, label in new_labels):
            if label not in known_labels:
                known_labels.append(label)
                conn.execute(
                    "INSERT INTO label_set (name, position) VALUES (?, ?)",
                    (label, len(known_labels) - 1),
                )
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO labels (example_id, label, source, updated_at) "
            "VALUES (?, ?, 'import', ?)",
            [(example_id, label, now) for example_id, label in new_labels],
        )
        report.labels_imported += conn.total_changes - before

    def _sync_configured_labels(self, names: list[str]) -> None:
        stored = self.store.label_names()
        if stored == names:
            return
        extra = [name for name in stored if name not in names]
        used = (
            self.store.conn.execute(
                f"SELECT DISTINCT label FROM labels WHERE label IN ({','.join('?' * len(extra))})",
                extra,
            ).fetchall()
            if extra
            else []
        )
        if used:
            bad = ", ".join(row[0] for row in used)
            raise InputError(
                f"[labels] names leaves out labels already in the store: {bad}; add them back"
            )
        self.store.conn.execute("DELETE FROM label_set")
        self.store.conn.executemany(
            "INSERT INTO label_set (name, position) VALUES (?, ?)",
            [(name, position) for position, name in enumerate(names)],
        )

    def _detect_languages(self, rows: list[_ValidRow]) -> None:
        if not self.config.languages.detect:
            return
        missing = [row for row in rows if row.language is None]
        if not missing:
            return
        detections = self.detector.detect([row.text for row in missing])
        for row, detection in zip(missing, detections, strict=True):
            row.detection = detection

    def _language_of(self, row: _ValidRow) -> tuple[str, str, float | None, str | None]:
        if row.language is not None:
            return row.language, "given", None, None
        detection = row.detection
        if detection is None:
            return UNDETERMINED, "undetermined", None, None
        if detection.language == UNDETERMINED:
            return UNDETERMINED, "undetermined", detection.confidence, detection.best_guess
        return detection.language, "detected", detection.confidence, detection.best_guess

    def _quarantine(
        self,
        path: Path,
        row: RawRow,
        problem: tuple[str, str],
        source: str,
        now: str,
        report: FileReport,
    ) -> None:
        field_name, reason = problem
        raw = row.raw
        if raw is None and row.values is not None:
            raw = json.dumps(row.values, ensure_ascii=False, default=str)
        # A bad row may hold undecodable bytes or lone surrogates, in its raw text and in a field
        # name; SQLite cannot store them, so they are kept as U+FFFD.
        stored = [_storable(text) if text is not None else None for text in (raw, field_name)]
        # OR IGNORE: a changed file at the same path re-reports the same bad line only once.
        self.store.conn.execute(
            "INSERT OR IGNORE INTO quarantine (file, line, field, reason, raw, source, created_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (str(path), row.line, stored[1], _storable(reason), stored[0], source, now),
        )
        report.quarantined += 1


def ingest_files(
    store: Store,
    config: Config,
    paths: Sequence[str | Path],
    *,
    source: str | None = None,
    progress: bool = True,
    keep_going: bool = False,
    new_labels: bool = False,
) -> list[FileReport]:
    """Ingest several files; each is its own transaction (see module docstring).

    With ``keep_going``, a file that is bad input as a whole (`InputError`: unreadable, wrong
    format, no `text` column) is rolled back and reported with its ``error``, and the next file
    is still ingested: one bad file in a batch must not cost the good ones. Without it the first
    such error is raised. Other failures (a broken store, a bug) always stop: they would fail
    every later file too.
    ``new_labels`` lets files add labels the store does not have yet (without it, and without
    [labels] names, a label outside the store's label set is quarantined once the set exists).
    """
    ingestor = Ingestor(store, config, progress=progress, new_labels=new_labels)
    reports: list[FileReport] = []
    for path in paths:
        try:
            reports.append(ingestor.ingest(path, source=source))
        except InputError as exc:
            if not keep_going:
                raise
            reports.append(FileReport(file=str(path), error=str(exc), failure=exc))
    return reports


def summarize(reports: Sequence[FileReport]) -> dict:
    """The `curate ingest --json` object."""
    per_language: Counter = Counter()
    for report in reports:
        per_language.update(report.per_language)
    return {
        "read": sum(r.read for r in reports),
        "added": sum(r.added for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "quarantined": sum(r.quarantined for r in reports),
        "labels_imported": sum(r.labels_imported for r in reports),
        "undetermined_language": sum(r.undetermined_language for r in reports),
        "per_language": dict(sorted(per_language.items())),
        "skipped_files": [r.file for r in reports if r.skipped],
        "files": [r.to_dict() for r in reports],
    }
