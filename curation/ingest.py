"""Ingest unlabeled (or partly labeled) pools into the store, validating every row.

Formats, chosen by extension: CSV (``.csv``, ``.tsv``), JSON lines (``.jsonl``, ``.ndjson``) and
Parquet (``.parquet``, ``.pq``). Files are streamed in chunks of ``[ingest] chunk_rows`` rows, so a
1M-row file never holds 1M rows of Python objects.

Readers:
- Parquet is read batch by batch with pyarrow into polars frames.
- CSV and JSON lines are read with Python's C-accelerated ``csv`` and ``json`` modules, not
  polars: polars pads a short CSV row with nulls and coerces JSON types, which would let a
  malformed row through without a trace, and we must report every bad row with its line.

Columns: ``text`` (required), ``id``, ``language``, ``label`` (optional); all others are kept as
JSON metadata.

Line numbers (``line``) are 1-based: for JSON lines, the physical line; for CSV, the record
number counting the header as line 1 (equal to the physical line unless quoted fields span lines);
for Parquet, the row number.

A whole file is ingested in one transaction together with its ``ingested_files`` row: a process
killed mid-ingest leaves the store as before that file, and a rerun ingests it again from the
start. A file whose content hash was already ingested is skipped and reported as such.

Row checks, each sending the row to quarantine with file, line, field and reason:
missing/empty/whitespace-only text, undecodable bytes (invalid UTF-8, seen as U+FFFD after
decoding), text longer than ``max_text_length``, a label outside ``[labels] names``, an invalid or
disallowed language tag, a malformed line (bad JSON, a non-object, wrong number of CSV fields), a
value of the wrong type, and a given id already used by a different text.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from curation.config import Config
from curation.errors import InputError, UnreadableFileError
from curation.languages import (
    UNDETERMINED,
    Detection,
    LanguageDetector,
    is_allowed,
    standardize_tag,
)
from curation.normalize import file_sha256, hash_example_id, normalize_text, text_hash
from curation.store import Store, utc_now

CSV_SUFFIXES = {".csv", ".tsv"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
KNOWN_COLUMNS = ("id", "text", "language", "label")
REPLACEMENT_CHAR = "\ufffd"
# SQLite's default limit on host parameters in one statement is 32766; stay well below.
_SQL_BATCH = 5000

# Raise the csv module's field limit: a long text is a quarantine reason, not a crash.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class RawRow:
    """One record as read: values, or the reason it could not be parsed."""

    line: int
    values: dict | None
    problem: tuple[str, str] | None = None  # (field, reason) when the record itself is malformed
    raw: str | None = None


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

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "read": self.read,
            "added": self.added,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "labels_imported": self.labels_imported,
            "undetermined_language": self.undetermined_language,
            "per_language": dict(sorted(self.per_language.items())),
            "skipped": self.skipped,
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


# -- readers ------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with open(path, "rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            # Decoding with "replace" keeps the row: a bad byte becomes U+FFFD inside the field it
            # belongs to, so the quarantine can name that field.
            line = raw_line.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(number, None, ("line", f"malformed JSON: {exc.msg}"), line)
                continue
            if not isinstance(values, dict):
                kind = type(values).__name__
                yield RawRow(number, None, ("line", f"not a JSON object (a {kind})"), line)
                continue
            yield RawRow(number, values, None, line)


def _read_csv(path: Path) -> Iterator[RawRow]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise UnreadableFileError(f"{path}: empty file, no header row") from None
        except csv.Error as exc:
            raise UnreadableFileError(f"{path}: not a readable CSV header: {exc}") from None
        header = [name.strip().lstrip("\ufeff") for name in header]
        if "text" not in header:
            raise UnreadableFileError(
                f"{path}: no 'text' column (columns: {', '.join(header) or 'none'})"
            )
        record = 1
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                record += 1
                yield RawRow(record, None, ("line", f"malformed CSV: {exc}"), None)
                continue
            record += 1
            if not fields:
                continue
            raw = delimiter.join(fields)
            if len(fields) != len(header):
                reason = f"malformed row: {len(fields)} fields, header has {len(header)}"
                yield RawRow(record, None, ("line", reason), raw)
                continue
            yield RawRow(record, dict(zip(header, fields, strict=True)), None, raw)


def _read_parquet(path: Path, chunk_rows: int) -> Iterator[RawRow]:
    import polars as pl
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UnreadableFileError(f"{path}: not a readable Parquet file: {exc}") from None
    if "text" not in parquet.schema_arrow.names:
        columns = ", ".join(parquet.schema_arrow.names) or "none"
        raise UnreadableFileError(f"{path}: no 'text' column (columns: {columns})")
    number = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = pl.from_arrow(batch)
        for values in frame.iter_rows(named=True):
            number += 1
            yield RawRow(number, values, None, None)


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


def _as_optional_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from a Parquet null
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean")
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"a {type(value).__name__}")


class _Validator:
    def __init__(self, config: Config, label_names: Sequence[str] | None) -> None:
        self.max_len = config.ingest.max_text_length
        self.allowed = config.languages.allowed
        self.label_names = set(label_names) if label_names is not None else None
        self.label_list = ", ".join(label_names) if label_names is not None else ""

    def check(self, row: RawRow) -> _ValidRow | tuple[str, str]:
        if row.problem is not None:
            return row.problem
        values = row.values or {}
        for name, value in values.items():
            if isinstance(value, str) and REPLACEMENT_CHAR in value:
                return (str(name), "undecodable bytes (not valid UTF-8)")
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
        if len(text) > self.max_len:
            return ("text", f"text longer than {self.max_len} characters ({len(text)})")
        parsed: dict[str, str | None] = {}
        for name in ("id", "language", "label"):
            try:
                value = _as_optional_str(values.get(name))
            except TypeError as exc:
                return (name, f"{name} must be a string, not {exc}")
            parsed[name] = value.strip() if value is not None and value.strip() else None
        label = parsed["label"]
        if label is not None and self.label_names is not None and label not in self.label_names:
            return ("label", f"label '{label}' not in [labels] names ({self.label_list})")
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

    def __init__(self, store: Store, config: Config, *, progress: bool = True) -> None:
        self.store = store
        self.config = config
        self.progress = progress
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
        return report

    def _label_names(self) -> list[str] | None:
        if self.config.labels.names is not None:
            return list(self.config.labels.names)
        return None

    def _ingest_rows(
        self, path: Path, rows: Iterator[RawRow], source: str, report: FileReport
    ) -> None:
        from tqdm import tqdm

        conn = self.store.conn
        configured = self._label_names()
        if configured is not None:
            self._sync_configured_labels(configured)
        validator = _Validator(self.config, configured)
        known_labels = self.store.label_names()
        bar = tqdm(
            desc=f"ingest {path.name}",
            unit=" rows",
            disable=not self.progress,
            file=sys.stderr,
            mininterval=0.5,
        )
        now = utc_now()
        for chunk in _chunks(rows, self.config.ingest.chunk_rows):
            report.read += len(chunk)
            bar.update(len(chunk))
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
                continue
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
        bar.close()

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
        # OR IGNORE: a changed file at the same path re-reports the same bad line only once.
        self.store.conn.execute(
            "INSERT OR IGNORE INTO quarantine (file, line, field, reason, raw, source, created_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (str(path), row.line, field_name, reason, raw, source, now),
        )
        report.quarantined += 1


def ingest_files(
    store: Store,
    config: Config,
    paths: Sequence[str | Path],
    *,
    source: str | None = None,
    progress: bool = True,
) -> list[FileReport]:
    """Ingest several files; each is its own transaction (see module docstring)."""
    ingestor = Ingestor(store, config, progress=progress)
    return [ingestor.ingest(path, source=source) for path in paths]


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


def quarantine_unreadable_file(store: Store, path: str | Path, reason: str) -> None:
    """Record a wholly unreadable file (the nightly inbox must go on): one quarantine row with
    field `file`, and the file's content hash marked as seen so later runs skip it."""
    path = Path(path)
    now = utc_now()
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO quarantine (file, line, field, reason, raw, source, created_at) "
            "VALUES (?, NULL, 'file', ?, NULL, ?, ?)",
            (str(path), reason, path.name, now),
        )
        conn.execute(
            "INSERT OR IGNORE INTO ingested_files (content_hash, path, source, rows_read, added, "
            "duplicates, quarantined, ingested_at) VALUES (?, ?, ?, 0, 0, 0, 1, ?)",
            (file_sha256(str(path)), str(path), path.name, now),
        )
