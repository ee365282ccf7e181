"""`curate run`: the whole cycle as one idempotent, resumable, lock-protected job.

Stages, in order: ingest, embed, pull, curate, train, evaluate, select, push, report. Each is
recorded in `run_steps` with its start, end, status (`ok`, `skipped`, `warning`, `failed`,
`dry-run`) and counts.

Why a killed run resumes "from that stage" without a resume pointer: every stage is idempotent
on the store's committed state. Ingest skips files by content hash and commits per file; embed
skips examples that have vectors and commits per shard; pull upserts annotations by id; the
snapshot is written under a temporary name and only counts once recorded; selection tops the
pending queue up to its targets, so a round selected before a kill makes the next run select
nothing; push reconciles by example id with the server before importing. A rerun therefore
repeats nothing that was committed and finishes what was not. The killed run's row is marked
`interrupted` by the next run.

One run at a time: an exclusive `flock` on `<store>/run.lock`, which also records the holder's
PID. The kernel drops the lock when its holder dies (SIGKILL included), so a stale lock file never
blocks; a live holder makes a second run exit with `EXIT_LOCKED` and names its PID.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from curation.config import Config
from curation.errors import (
    ConfigError,
    CurateError,
    InputError,
    StoreError,
    UnreadableFileError,
)
from curation.normalize import file_sha256
from curation.redact import RedactFilter, redact_data, redact_url
from curation.run_context import RunContext, StageResult
from curation.store import RUN_LOCK_NAME, Store, utc_now

if TYPE_CHECKING:
    from curation.pipeline import SelectionRequest

STAGES = ("ingest", "embed", "pull", "curate", "train", "evaluate", "select", "push", "report")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_WARNINGS = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later

log = logging.getLogger("curate.run")


class RunLockedError(CurateError):
    exit_code = EXIT_LOCKED


# -- lock -----------------------------------------------------------------------------------------


@contextmanager
def run_lock(store_path: Path):  # noqa: ANN201 - context manager
    store_path.mkdir(parents=True, exist_ok=True)
    path = store_path / RUN_LOCK_NAME  # Store reads its "pid N since T" to name a holder
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLockedError(
                f"another `curate run` holds {path} ({holder}); try again when it has finished"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {utc_now()}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock


# -- logging ----------------------------------------------------------------------------------


# The package's root loggers: every record of the project's modules during a run reaches
# run.log. The labeling and training wings log as "curate.labeling" and "curate.training", the
# nightly job as "curate.run", some curation modules under their module names.
LOG_ROOTS = ("curate", "curation", "selection", "labeling", "training")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def json_formatter(run_id: str) -> logging.Formatter:
    """JSON lines (python-json-logger): time (UTC), level, logger name, message, run id, the
    stage where known, and `exc_info` with the whole traceback of an exception."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level"},
        static_fields={"run_id": run_id},
        timestamp="time",
        json_ensure_ascii=False,
    )


class _WithoutTraceback(logging.Formatter):
    """For stderr without --debug: a failed stage is one line there; its traceback is in
    run.log."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


@contextmanager
def run_logging(  # noqa: ANN201 - context manager
    run_dir: Path | None, run_id: str, fmt: str, *, debug: bool = False, quiet: bool = False
):
    """Every record of the package's loggers (LOG_ROOTS) to stderr and, unless a dry run, to
    `<run_dir>/run.log`: text lines, or JSON lines with `[run] log_format = "json"`.

    stderr gets no tracebacks unless `debug`, and only warnings and errors when `quiet`;
    run.log gets everything from INFO (DEBUG with `debug`), tracebacks included.
    """
    level = logging.DEBUG if debug else logging.INFO

    def formatter() -> logging.Formatter:
        return json_formatter(run_id) if fmt == "json" else logging.Formatter(TEXT_FORMAT)

    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter() if debug else _WithoutTraceback(formatter()))
    stderr.setLevel(logging.WARNING if quiet else level)
    handlers: list[logging.Handler] = [stderr]
    if run_dir is not None:
        file_handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
        file_handler.setFormatter(formatter())
        file_handler.setLevel(level)
        handlers.append(file_handler)
    # Credentials in a URL never reach a log line: ours, and during the run also the root
    # logger's (under --debug the HTTP libraries log every request's URL there).
    redact = RedactFilter()
    root_handlers = list(logging.getLogger().handlers)
    for handler in [*handlers, *root_handlers]:
        handler.addFilter(redact)
    loggers = [logging.getLogger(name) for name in LOG_ROOTS]
    previous = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        # Not again through the root logger's handler (the CLI's basicConfig on stderr).
        logger.propagate = False
    try:
        yield
    finally:
        for logger, (old_level, old_propagate) in zip(loggers, previous, strict=True):
            for handler in handlers:
                logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = old_propagate
        for handler in root_handlers:
            handler.removeFilter(redact)
        for handler in handlers:
            handler.close()


@contextmanager
def library_progress(enabled: bool):  # noqa: ANN201 - context manager
    """The `datasets` library's own progress bars (writing a snapshot: "Saving the dataset",
    "Creating parquet from Arrow format") follow the run's: off under --quiet or off a TTY."""
    if enabled:
        yield
        return
    variable = "HF_DATASETS_DISABLE_PROGRESS_BARS"
    previous = os.environ.get(variable)
    # Read once, when `datasets` is first imported; if it is imported already, its switch.
    os.environ[variable] = "1"
    switch = sys.modules.get("datasets.utils.tqdm")
    was_disabled = switch.are_progress_bars_disabled() if switch is not None else True
    if switch is not None:
        switch.disable_progress_bars()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous
        if switch is not None and not was_disabled:
            switch.enable_progress_bars()


# -- stages -----------------------------------------------------------------------------------


def inbox_files(config: Config) -> list[Path]:
    files: set[Path] = set()
    for entry in config.run.inbox:
        if entry.is_file():
            files.add(entry)
        elif entry.is_dir():
            for pattern in config.run.patterns:
                files.update(p for p in entry.glob(pattern) if p.is_file())
    return sorted(files)


# An inbox file quarantined as unreadable: its `ingested_files` row read nothing, and its one
# quarantine row has field `file`. Its key is the content hash (or, for a file that cannot even
# be opened, UNOPENABLE_PREFIX + a hash of its path, size and mtime).
_UNREADABLE_KEYS = (
    "SELECT i.content_hash FROM ingested_files i WHERE i.rows_read = 0 AND i.added = 0 "
    "AND EXISTS (SELECT 1 FROM quarantine q WHERE q.file = i.path AND q.field = 'file')"
)
UNOPENABLE_PREFIX = "unopenable:"
_MAX_REASON = 500


def _inbox_key(path: Path) -> tuple[str, str | None]:
    """The key a file is known by (its content hash), and why it cannot be read if it cannot.

    A file that cannot be opened (permissions, an I/O error) has no content hash; its path, size
    and modification time stand in, so a fixed or replaced file is tried again.
    """
    try:
        return file_sha256(str(path)), None
    except OSError as exc:
        try:
            stat = path.stat()
            identity = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}"
        except OSError:
            identity = str(path)
        digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()
        return UNOPENABLE_PREFIX + digest, f"{path}: cannot be read: {exc.strerror or exc}"


def _is_file_problem(exc: Exception, path: Path) -> bool:
    """Whether an error ingesting one file is about that file (quarantine it and go on) rather
    than about the store or the configuration (which would fail every file: the stage fails)."""
    if isinstance(exc, UnreadableFileError):
        return True
    if isinstance(exc, sqlite3.Error | MemoryError | StoreError | ConfigError):
        return False
    if isinstance(exc, InputError):
        # Input errors about one file name it first (e.g. an unsupported file type); the others
        # are about the label set or the configuration.
        return str(exc).startswith(f"{path}:")
    # Any other failure reading this file's content (a reader crash: RecursionError,
    # UnicodeError, a pyarrow or OS error) must not stop the other files, tonight and every
    # night after.
    return not isinstance(exc, CurateError)


def _file_problem_reason(exc: Exception, path: Path) -> str:
    # Our own errors name the file already; a reader's crash is named by its type.
    text = str(exc) if isinstance(exc, CurateError) else f"{path}: {type(exc).__name__}: {exc}"
    reason = " ".join(text.split())  # one line
    # SQLite cannot store lone surrogates (a reader's error may quote the bad text).
    reason = reason.encode("utf-8", "replace").decode("utf-8")
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "…"


def quarantine_inbox_file(store: Store, path: Path, reason: str, key: str) -> None:
    """Record an unreadable inbox file once: one quarantine row (field `file`) and its key in
    `ingested_files`, so later runs skip it until its content changes."""
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
            (key, str(path), path.name, now),
        )


def stage_ingest(ctx: RunContext) -> StageResult:
    """Ingest the inbox's new files. A file that cannot be read is quarantined (once per
    content), warned about, and the other files and the later stages go on."""
    from curation.ingest import Ingestor

    if not ctx.config.run.inbox:
        return StageResult("skipped", {"files": 0}, "no [run] inbox configured")
    for entry in ctx.config.run.inbox:
        if not entry.exists():
            # A typo or an unmounted share must not look like a quiet night.
            ctx.warn(f"inbox {entry} does not exist: nothing read from it (see [run] inbox)")
    files = inbox_files(ctx.config)
    known = {row[0] for row in ctx.store.conn.execute("SELECT content_hash FROM ingested_files")}
    unreadable_before = {row[0] for row in ctx.store.conn.execute(_UNREADABLE_KEYS)}
    new: list[tuple[Path, str, str | None]] = []
    skipped_unreadable = 0
    for path in files:
        key, problem = _inbox_key(path)
        if key in unreadable_before:
            skipped_unreadable += 1
        elif key not in known:
            new.append((path, key, problem))
    counts = {
        "files": len(new),
        "read": 0,
        "added": 0,
        "duplicates": 0,
        "quarantined": 0,
        "unreadable_files": 0,
        "skipped_unreadable": skipped_unreadable,
    }
    # Said in the report every night the files stay, but warned about only once per content.
    message = (
        f"{skipped_unreadable} inbox file(s) quarantined as unreadable by an earlier run skipped "
        "(warned once per file content; `curate quarantine` lists them)"
        if skipped_unreadable
        else None
    )
    if ctx.dry_run:
        # Ingested for real, but into the dry run's scratch copy of the database: the later
        # stages then see what the real run's would (see `execute`).
        message = f"would ingest {len(new)} new file(s)" + (f"; {message}" if message else "")
    ingestor = Ingestor(ctx.store, ctx.config, progress=ctx.progress)
    for path, key, problem in new:
        if problem is None:
            try:
                report = ingestor.ingest(path, source=f"inbox:{path.parent.name}")
            except Exception as exc:
                if not _is_file_problem(exc, path):
                    raise
                problem = _file_problem_reason(exc, path)
            else:
                for name in ("read", "added", "duplicates", "quarantined"):
                    counts[name] += getattr(report, name)
                if report.added:
                    ctx.batch_files.append(str(path))
                continue
        quarantine_inbox_file(ctx.store, path, problem, key)
        counts["unreadable_files"] += 1
        counts["quarantined"] += 1
        ctx.warn(
            f"{'would quarantine' if ctx.dry_run else 'quarantined'} unreadable inbox file: "
            f"{problem} (skipped, without a warning, until its content changes)"
        )
    return StageResult("dry-run" if ctx.dry_run else "ok", counts, message)


def stage_embed(ctx: RunContext) -> StageResult:
    from curation.embeddings import EmbeddingCache
    from curation.pipeline import embed_store

    if ctx.dry_run:
        missing, _ = EmbeddingCache.for_config(ctx.store, ctx.config).missing()
        return StageResult("dry-run", {"would_embed": len(missing)})
    result = embed_store(ctx.store, ctx.config, progress=ctx.progress)
    return StageResult(
        "ok", {"embedded": result["embedded"], "already_embedded": result["already_embedded"]}
    )


def stage_curate(ctx: RunContext) -> StageResult:
    from curation.export import write_snapshot

    result = write_snapshot(ctx.store, run_id=ctx.run_id, dry_run=ctx.dry_run)
    status = "dry-run" if ctx.dry_run else "ok"
    message = None if result["written"] or ctx.dry_run else "labels unchanged: no new version"
    return StageResult(status, result, message)


def stage_evaluate(ctx: RunContext) -> StageResult:
    """Per-language macro-F1 of the retrained proxy (5-fold cross-validated), recorded.

    An unchanged labeled set (same fingerprint as a stored evaluation) is not evaluated again:
    the stored figures are reported and no duplicate point is recorded.
    """
    from curation.pipeline import evaluate_proxy
    from curation.pool import load_pool, load_pool_view

    if ctx.config.engine.kind == "ray":
        # The pool may not fit here: the labeled rows, tonight's batch and a sample of the
        # rest are all this stage reads (select scores the whole pool on the cluster).
        ctx.pool = load_pool_view(
            ctx.store, ctx.config, files=ctx.batch_files, seed=ctx.config.selection.seed
        )
    else:
        ctx.pool = load_pool(ctx.store, ctx.config)
    drift = _batch_drift(ctx)
    result = evaluate_proxy(ctx.store, ctx.config, ctx.pool)
    if result is None:
        return StageResult("skipped", drift, "too few labels to evaluate")
    # The same out-of-fold predictions (memoized) find suspected label errors; pull rebuilt
    # the adjudication queue, so they join it after every pull.
    from curation.quality import review_labels

    issues = {} if ctx.dry_run else {"label_issues": review_labels(ctx.store, ctx.config, ctx.pool)}
    result = {**result, **drift, **issues}
    if result["reused_evaluation"] is not None:
        return StageResult(
            "dry-run" if ctx.dry_run else "ok",
            result,
            f"labels unchanged since evaluation {result['reused_evaluation']}: not recomputed",
        )
    if not ctx.dry_run:
        with ctx.store.transaction() as conn:
            conn.execute(
                "INSERT INTO evaluations (created_at, run_id, model, labels, mean_macro_f1, "
                "worst_language_f1, per_language, fingerprint) VALUES (?,?,?,?,?,?,?,?)",
                (
                    utc_now(),
                    ctx.run_id,
                    result["model"],
                    result["labels"],
                    result["mean_macro_f1"],
                    result["worst_language_f1"],
                    json.dumps(result["per_language"], sort_keys=True),
                    result["fingerprint"],
                ),
            )
    return StageResult("dry-run" if ctx.dry_run else "ok", result)


def _batch_drift(ctx: RunContext) -> dict:
    """Drift of tonight's batch against the labeled data and earlier batches
    (curation.pool_drift); every alert is a run warning naming the language and signal."""
    from curation import pool_drift

    if not ctx.batch_files or ctx.pool is None:
        return {}
    findings = pool_drift.check_batch(
        ctx.store, ctx.config, ctx.pool, ctx.batch_files, seed=ctx.config.selection.seed
    )
    for finding in findings:
        if finding.alert:
            ctx.warn(f"drift in tonight's batch: {finding.message}")
    return pool_drift.summarize(findings)


NO_EMBEDDED_EXAMPLES = "no embedded examples yet: nothing to select from"


def stage_select(ctx: RunContext) -> StageResult:
    from curation.pipeline import (
        NoCandidatesError,
        SelectionRequest,
        pending_per_language,
        select_round,
    )
    from curation.pool import load_pool

    pending = pending_per_language(ctx.store)
    counts = {"selected": 0, "pending_before": sum(pending.values())}
    if ctx.config.run.queue_target == 0:
        return StageResult("skipped", counts, "[run] queue_target is 0")
    request = SelectionRequest(
        budget=ctx.config.run.queue_target,
        strategy=ctx.config.selection.strategy,
        allocation=ctx.config.selection.allocation,
        seed=ctx.config.selection.seed,
        pending=pending,
        target_overrides=dict(ctx.config.run.queue_targets) or None,
    )
    embed = ctx.results.get("embed")
    if ctx.dry_run and (embed is None or embed.counts.get("would_embed") != 0):
        # Examples without vectors until the real embed stage: plan instead of select.
        return _plan_select(ctx, request, counts)
    # A dry run gets here when every example has its vector already: the real selection, on
    # the dry run's scratch copy of the database, so its count is exactly the real run's.
    status = "dry-run" if ctx.dry_run else "ok"
    pool = ctx.pool if ctx.pool is not None else load_pool(ctx.store, ctx.config)
    if len(pool) == 0:
        # A fresh deployment (or an empty inbox): nothing to choose from is not a failure.
        return StageResult("skipped", counts, NO_EMBEDDED_EXAMPLES)
    try:
        result = select_round(ctx.store, ctx.config, request, pool=pool)
    except NoCandidatesError as exc:
        return StageResult(status, counts, str(exc))
    counts.update(
        selected=result["selected"],
        round_id=None if ctx.dry_run else result["round_id"],
        control=result["control"],
        per_language=result["per_language"],
        proxy_model_version=result["proxy_model_version"],
    )
    message = f"would select {result['selected']} (selected on a scratch copy of the store)"
    return StageResult(status, counts, message if ctx.dry_run else None)


def plan_selection(
    store: Store, config: Config, request: SelectionRequest, *, f1: dict[str, float] | None
) -> dict[str, int] | None:
    """How many examples per language `select_round` would add, with every example embedded.

    The dry run's select while some examples have no vector yet (new inbox files; with every
    vector there, the dry run runs the real `select_round` on its scratch copy instead): the
    same candidates (unlabeled, never selected, not pending), the same allocator and the same
    queue top-up as the real select, on the store as the dry run's ingest left it. It cannot
    run what needs the new vectors: the strategy's near-duplicate guard and the per-language
    stopping rule ([selection.stopping]) may take fewer than planned, and with `need`
    allocation the F1 per language comes from the dry run's evaluate stage (over the labels
    that have vectors already). None when the store has no example at all (select would
    skip).
    """
    from curation.pipeline import top_up
    from selection.allocation import allocate

    rows = store.conn.execute(
        "SELECT e.language, l.example_id IS NOT NULL, "
        "e.id IN (SELECT example_id FROM round_items) OR e.id IN (SELECT example_id FROM tasks) "
        "FROM examples e LEFT JOIN labels l ON l.example_id = e.id"
    ).fetchall()
    if not rows:
        return None
    candidates: Counter[str] = Counter()
    labeled: Counter[str] = Counter()
    for language, is_labeled, taken in rows:
        if is_labeled:
            labeled[language] += 1
        elif not taken:
            candidates[language] += 1
    if not candidates:
        return {}
    pool_sizes = dict(candidates)
    sizes = dict(pool_sizes)
    for language, n in (request.pending or {}).items():
        sizes[language] = sizes.get(language, 0) + n
    known_f1 = {k: v for k, v in (f1 or {}).items() if k in pool_sizes} or None
    allocation = allocate(
        request.budget,
        sizes,
        method=request.allocation,
        f1=known_f1 if request.allocation == "need" else None,
        labeled_counts={language: labeled.get(language, 0) for language in sizes},
        min_per_language=config.selection.min_per_language,
        max_per_language=config.selection.max_per_language,
        cold_start_share=config.selection.cold_start_share,
    )
    allocation = top_up(allocation, request, pool_sizes)
    return {language: n for language, n in sorted(allocation.per_language.items()) if n > 0}


def _plan_select(ctx: RunContext, request: SelectionRequest, counts: dict) -> StageResult:
    evaluation = ctx.results.get("evaluate")
    f1 = (evaluation.counts.get("per_language") if evaluation else None) or None
    planned = plan_selection(ctx.store, ctx.config, request, f1=f1)
    if planned is None:
        return StageResult("dry-run", counts, NO_EMBEDDED_EXAMPLES)
    counts.update(selected=sum(planned.values()), per_language=planned)
    return StageResult(
        "dry-run",
        counts,
        f"would select {counts['selected']} (planned by the allocator over the examples after "
        "ingest and embed; the near-duplicate guard and the stopping rule may take fewer)",
    )


def stage_report(ctx: RunContext) -> StageResult:
    report = redact_data(build_report(ctx))
    if ctx.dry_run:
        return StageResult("dry-run", {"would_write": str(ctx.run_dir)})
    (ctx.run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (ctx.run_dir / "report.md").write_text(report_markdown(report), encoding="utf-8")
    return StageResult("ok", {"path": str(ctx.run_dir / "report.md")})


def build_report(ctx: RunContext) -> dict:
    status = ctx.store.status()
    evaluation = ctx.results.get("evaluate")
    return {
        "run_id": ctx.run_id,
        "dry_run": ctx.dry_run,
        "stages": {
            name: {"status": r.status, "counts": r.counts, "message": r.message}
            for name, r in ctx.results.items()
        },
        "warnings": list(ctx.warnings),
        "store": {
            "examples": status["examples"],
            "labeled": status["labeled"],
            "quarantined": status["quarantined"],
            "per_language": status["per_language"],
        },
        "evaluation": None if evaluation is None else evaluation.counts,
    }


def report_markdown(report: dict) -> str:
    lines = [f"# curate run {report['run_id']}", ""]
    lines += ["| stage | status | counts | note |", "|---|---|---|---|"]
    for name, stage in report["stages"].items():
        counts = ", ".join(
            f"{k} {v}" for k, v in stage["counts"].items() if not isinstance(v, dict | list)
        )
        lines.append(f"| {name} | {stage['status']} | {counts} | {stage['message'] or ''} |")
    per_language_f1 = (report.get("evaluation") or {}).get("per_language", {})
    lines += [
        "",
        "## Per language",
        "",
        "| language | examples | labeled | proxy macro-F1 |",
        "|---|---:|---:|---:|",
    ]
    for code, counts in sorted(report["store"]["per_language"].items()):
        f1 = per_language_f1.get(code)
        lines.append(
            f"| {code} | {counts['examples']} | {counts['labeled']} | "
            f"{'' if f1 is None else f'{f1:.3f}'} |"
        )
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


StageFunction = Callable[[RunContext], StageResult]


def _stage_functions() -> dict[str, StageFunction]:
    from curation import nightly_steps

    return {
        "ingest": stage_ingest,
        "embed": stage_embed,
        "pull": nightly_steps.stage_pull,
        "curate": stage_curate,
        "train": nightly_steps.stage_train,
        "evaluate": stage_evaluate,
        "select": stage_select,
        "push": nightly_steps.stage_push,
        "report": stage_report,
    }


# -- the run ------------------------------------------------------------------------------------


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def execute(
    config: Config,
    *,
    dry_run: bool = False,
    progress: bool = False,
    debug: bool = False,
    quiet: bool = False,
) -> dict:
    """Run every stage under the lock; returns the `--json` object plus an `exit_code`.

    A dry run takes no lock and writes nothing to the store: it works on a scratch copy of the
    database (SQLite's online backup; before the first run, an empty scratch store), reading the
    vectors from the real store. Its ingest stage really ingests the new inbox files into that
    copy, so embed, evaluate and select see the examples the real run would have. Select runs
    for real on the copy when every example has its vector; when the real embed stage would
    add vectors first, it plans its round with the real allocator and queue top-up instead
    (`plan_selection`: an upper bound, exact unless the near-duplicate guard or the stopping
    rule holds examples back).
    """
    output = {"progress": progress, "debug": debug, "quiet": quiet}
    if dry_run:
        import tempfile

        # On the local engine: the Ray engine writes the pool's Parquet shards into the store
        # folder (the scratch copy reads the real one's), and a dry run writes nothing there.
        config = config.model_copy(
            update={"engine": config.engine.model_copy(update={"kind": "local"})}
        )

        with tempfile.TemporaryDirectory(prefix="curate-dry-run-") as scratch:
            store = _scratch_copy(config, Path(scratch))
            try:
                return _execute(store, config, dry_run=True, **output)
            finally:
                store.close()
    with run_lock(config.store.path):
        store = Store(config.store.path)
        try:
            return _execute(store, config, dry_run=False, **output)
        finally:
            store.close()


def _scratch_copy(config: Config, scratch: Path) -> Store:
    """A writable copy of the store's database under `scratch` (migrated if its schema is
    older), whose `path` points at the real store for the vectors; an empty one before the
    first run. The real store is only read."""
    from curation.store import DB_NAME

    if not (config.store.path / DB_NAME).exists():
        return Store(scratch)
    with Store(config.store.path, read_only=True) as real:
        copy = sqlite3.connect(scratch / DB_NAME)
        try:
            real.conn.backup(copy)
        finally:
            copy.close()
    store = Store(scratch)
    store.path = config.store.path  # vectors are read from the real store
    return store


def _execute(
    store: Store, config: Config, *, dry_run: bool, progress: bool, debug: bool, quiet: bool
) -> dict:
    run_id = new_run_id()
    # Not <store>/runs/: that folder holds the adapter training runs.
    run_dir = config.store.path / "nightly" / run_id
    if not dry_run:
        run_dir.mkdir(parents=True, exist_ok=True)
        with store.transaction() as conn:
            # Holding the lock means no other run is alive: a "running" row is a killed run.
            conn.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
            # ...and its stage that was running when it died is marked so too, not left
            # "running" forever on the dashboard and in reports.
            conn.execute(
                "UPDATE run_steps SET status = 'interrupted' WHERE status = 'running' "
                "AND run_id IN (SELECT id FROM runs WHERE status = 'interrupted')"
            )
            conn.execute(
                "INSERT INTO runs (id, started_at, status, pid, dry_run) VALUES (?,?,?,?,0)",
                (run_id, utc_now(), "running", os.getpid()),
            )
    ctx = RunContext(store, config, run_id, run_dir, dry_run, progress)
    failed = False
    with (
        run_logging(
            None if dry_run else run_dir, run_id, config.run.log_format, debug=debug, quiet=quiet
        ),
        library_progress(progress),
    ):
        log.info("run %s started%s", run_id, " (dry run)" if dry_run else "")
        for name, function in _stage_functions().items():
            started = utc_now()
            clock = time.perf_counter()
            if failed and name != "report":
                ctx.results[name] = StageResult("skipped", {}, "an earlier stage failed")
                continue
            _record_step(ctx, name, started, None, "running", {}, None)
            try:
                result = function(ctx)
            except Exception as exc:  # a stage failure is reported, not a traceback
                reason = f"{type(exc).__name__}: {exc}"
                # One line on stderr (the traceback only with --debug), the traceback in run.log.
                log.error("stage %s failed: %s", name, reason, exc_info=True, extra={"stage": name})
                result = StageResult("failed", {}, reason)
                failed = True
            result.counts.setdefault("seconds", round(time.perf_counter() - clock, 2))
            # A stage's message may quote an error that quotes a URL with credentials.
            result.message = None if result.message is None else redact_url(result.message)
            result.counts = redact_data(result.counts)
            if result.status == "warning" or (
                result.message and result.status == "skipped" and name in {"pull", "push"}
            ):
                ctx.warn(f"{name}: {result.message}")
            ctx.results[name] = result
            _record_step(
                ctx, name, started, utc_now(), result.status, result.counts, result.message
            )
            log.info(
                "stage %s: %s %s",
                name,
                result.status,
                json.dumps(result.counts, default=str),
                extra={"stage": name},
            )
            _fault_point(name)
        status = "failed" if failed else ("warnings" if ctx.warnings else "ok")
        if not dry_run:
            with store.transaction() as conn:
                conn.execute(
                    "UPDATE runs SET finished_at = ?, status = ?, warnings = ?, report_path = ? "
                    "WHERE id = ?",
                    (
                        utc_now(),
                        status,
                        json.dumps(redact_data(ctx.warnings)),
                        str(run_dir / "report.md"),
                        run_id,
                    ),
                )
        log.info("run %s finished: %s", run_id, status)
    exit_code = {"ok": EXIT_OK, "warnings": EXIT_WARNINGS, "failed": EXIT_FAILED}[status]
    return redact_data(
        {
            "run_id": run_id,
            "status": status,
            "dry_run": dry_run,
            "stages": {
                name: {"status": r.status, "counts": r.counts, "message": r.message}
                for name, r in ctx.results.items()
            },
            "warnings": ctx.warnings,
            "report": None if dry_run else str(run_dir / "report.md"),
            "exit_code": exit_code,
        }
    )


def _fault_point(stage: str) -> None:
    """Test hook: `CURATE_KILL_AFTER_STAGE=select` SIGKILLs this process right after that stage
    is recorded, so the crash tests kill a real run at a real stage boundary."""
    if os.environ.get("CURATE_KILL_AFTER_STAGE") == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _record_step(
    ctx: RunContext,
    stage: str,
    started: str,
    finished: str | None,
    status: str,
    counts: dict,
    message: str | None,
) -> None:
    if ctx.dry_run:
        return
    with ctx.store.transaction() as conn:
        conn.execute(
            "INSERT INTO run_steps (run_id, stage, started_at, finished_at, status, counts, "
            "message) VALUES (?,?,?,?,?,?,?) ON CONFLICT (run_id, stage) DO UPDATE SET "
            "finished_at = excluded.finished_at, status = excluded.status, "
            "counts = excluded.counts, message = excluded.message",
            (
                ctx.run_id,
                stage,
                started,
                finished,
                status,
                json.dumps(redact_data(counts), default=str, sort_keys=True),
                None if message is None else redact_url(message),
            ),
        )
