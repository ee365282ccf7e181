"""The `curate` command line.

Exit codes: 0 success, 2 bad usage or bad input, 1 any other failure. Errors are one line on
stderr (`error: ...`), with a traceback only under `--debug`. Every reporting command takes
`--json` and then prints exactly one JSON object on stdout; logs and progress go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from curation.config import Config, load_config, resolve_config_path
from curation.errors import ConfigError, CurateError, InputError
from curation.store import Store

if TYPE_CHECKING:
    from curation.ingest import FileReport

app = typer.Typer(
    name="curate",
    help="Multilingual active learning and data curation: ingest, embed, select, label, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

log = logging.getLogger("curate")
# Data (tweets, file names) may hold "[...]" or ":name:": never interpret it as markup.
stdout = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)


class _State:
    config_path: str | None = None
    debug: bool = False
    quiet: bool = False


STATE = _State()

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")
]


def _config() -> Config:
    config = load_config(STATE.config_path)
    if config.training:
        # The [training] section belongs to the training wing; checked here, at load, so a typo
        # fails every command at once rather than the nightly train stage weeks later.
        from training.config import parse_training_config

        parse_training_config(config.training)
    # Likewise the strategy name: a typo must fail at load (exit 2), not in the nightly select
    # stage (exit 1). The registry lives in selection/, which curation.config may not import.
    from selection.registry import available

    valid = ["default", *available()]
    if config.selection.strategy not in valid:
        origin = resolve_config_path(STATE.config_path) or "config"
        raise ConfigError(
            f"{origin}: [selection] strategy: unknown strategy {config.selection.strategy!r}; "
            f"valid: {', '.join(valid)}"
        )
    return config


def _open_store(config: Config, *, read_only: bool = False) -> Store:
    return Store(config.store.path, read_only=read_only)


def _progress(json_output: bool) -> bool:
    # Progress bars go to stderr; hide them when stderr is not a terminal or when asked.
    return not STATE.quiet and sys.stderr.isatty()


def _emit_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


@app.callback()
def _global(
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Project file (default: $CURATE_CONFIG, else ./curate.toml, else defaults).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    STATE.config_path = config
    STATE.debug = debug
    STATE.quiet = quiet
    if quiet or not sys.stderr.isatty():
        # transformers and huggingface_hub read this when first imported: no "Loading weights"
        # bars in cron logs or under --quiet.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# -- ingest -------------------------------------------------------------------------------------


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="CSV, JSONL or Parquet files.")],
    source: Annotated[
        str | None, typer.Option("--source", help="Source name recorded with each row.")
    ] = None,
    new_labels: Annotated[
        bool,
        typer.Option(
            "--new-labels",
            help="Accept labels the store does not have yet as new classes (without [labels] "
            "names they are quarantined once the store has labels).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Validate rows, detect missing languages, drop duplicates and store the pool.

    Each file is its own transaction; a file that cannot be read at all is reported and the next
    one is still ingested (exit code 2 when any file was such an error).
    """
    from curation.ingest import ingest_files, summarize

    config = _config()
    with _open_store(config) as store:
        reports = ingest_files(
            store,
            config,
            files,
            source=source,
            progress=_progress(json_output),
            keep_going=True,
            new_labels=new_labels,
        )
    summary = summarize(reports)
    failed = [report for report in reports if report.error is not None]
    for report in failed:
        if STATE.debug and report.failure is not None:
            traceback.print_exception(report.failure)
        sys.stderr.write(f"error: {report.error}\n")
    code = 2 if failed else 0  # bad input, as when a single file fails
    if json_output:
        _emit_json(summary)
        raise typer.Exit(code)
    if len(failed) == len(reports):
        # Nothing was read: the error lines on stderr say it all (as for one bad file).
        raise typer.Exit(code)
    for report in reports:
        stdout.print(f"{report.file}: {_file_outcome(report)}")
    table = Table(title="ingest")
    for column in ("read", "added", "duplicates", "quarantined", "labels imported"):
        table.add_column(column, justify="right")
    table.add_row(
        *(str(summary[key]) for key in ("read", "added", "duplicates", "quarantined")),
        str(summary["labels_imported"]),
    )
    stdout.print(table)
    if summary["per_language"]:
        stdout.print(
            "added per language: "
            + ", ".join(f"{code} {n}" for code, n in summary["per_language"].items())
        )
    if summary["undetermined_language"]:
        stdout.print(
            f"{summary['undetermined_language']} rows got language 'und' (detection below "
            f"min_confidence {config.languages.min_confidence})"
        )
    if summary["quarantined"]:
        stdout.print("see the rejected rows with: curate quarantine")
    raise typer.Exit(code)


def _file_outcome(report: FileReport) -> str:
    """One file's line in `curate ingest`'s human output."""
    if report.error is not None:
        return "error, nothing ingested from it (the reason is on stderr)"
    if report.skipped:
        return "already ingested (same content), nothing changed"
    return (
        f"ingested: read {report.read}, added {report.added}, duplicates {report.duplicates}, "
        f"quarantined {report.quarantined}"
    )


# -- status -------------------------------------------------------------------------------------


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Examples, labels and vectors per language."""
    from curation.embeddings import EmbeddingCache, resolve_backend

    config = _config()
    db = config.store.path / "curate.db"
    if not db.exists():
        payload = {"examples": 0, "labeled": 0, "quarantined": 0, "per_language": {}}
        if json_output:
            _emit_json(payload)
        else:
            stdout.print(f"store {config.store.path} is empty (run `curate ingest FILE`)")
        return
    with _open_store(config, read_only=True) as store:
        payload = store.status()
        cache = EmbeddingCache.for_config(store, config)
        embedded = dict(
            store.conn.execute(
                "SELECT e.language, COUNT(*) FROM embeddings m JOIN examples e "
                "ON e.id = m.example_id WHERE m.model = ? GROUP BY e.language",
                (cache.key,),
            ).fetchall()
        )
        # Vectors of other models stay in the store untouched (switching back reuses them);
        # say they are there, so a model switch never looks like lost work.
        other_models = {
            key: int(count)
            for key, count in store.conn.execute(
                "SELECT model, COUNT(*) FROM embeddings WHERE model != ? GROUP BY model "
                "ORDER BY model",
                (cache.key,),
            )
        }
    for code, counts in payload["per_language"].items():
        counts["embedded"] = embedded.get(code, 0)
    payload["embedded"] = sum(embedded.values())
    payload["model"] = config.embedding.model
    payload["model_key"] = cache.key
    payload["backend"] = resolve_backend(config.embedding)
    payload["other_models"] = other_models
    payload["store"] = str(config.store.path)
    if json_output:
        _emit_json(payload)
        return
    table = Table(title=f"store {config.store.path}")
    for column, justify in (
        ("language", "left"),
        ("examples", "right"),
        ("labeled", "right"),
        ("embedded", "right"),
    ):
        table.add_column(column, justify=justify)
    for code, counts in payload["per_language"].items():
        table.add_row(
            code, str(counts["examples"]), str(counts["labeled"]), str(counts["embedded"])
        )
    table.add_section()
    table.add_row(
        "all", str(payload["examples"]), str(payload["labeled"]), str(payload["embedded"])
    )
    stdout.print(table)
    stdout.print(
        f"quarantined rows: {payload['quarantined']}   duplicates linked: "
        f"{payload['duplicates']}   labels: {', '.join(payload['labels']) or 'none yet'}"
    )
    stdout.print(f"embedding model: {config.embedding.model} ({payload['backend']})")
    for key, count in other_models.items():
        stdout.print(
            f"also stored: {count} vectors of {key.split('|', 1)[0]} (kept; not used while "
            f"[embedding] model is {config.embedding.model})"
        )


# -- quarantine ---------------------------------------------------------------------------------


@app.command()
def quarantine(
    file: Annotated[
        str | None, typer.Option("--file", help="Only rows from this file path.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 1000,
    json_output: JsonOption = False,
) -> None:
    """Rows rejected at ingest, with file, line, field and reason."""
    config = _config()
    rows: list[dict] = []
    if (config.store.path / "curate.db").exists():
        with _open_store(config, read_only=True) as store:
            sql = "SELECT file, line, field, reason, raw FROM quarantine"
            params: list = []
            if file:
                sql += " WHERE file = ?"
                params.append(file)
            sql += " ORDER BY id LIMIT ?"
            params.append(limit)
            rows = [dict(row) for row in store.conn.execute(sql, params)]
    if json_output:
        _emit_json({"rows": rows})
        return
    if not rows:
        stdout.print("no quarantined rows")
        return
    table = Table(title="quarantine")
    for column in ("file", "line", "field", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["file"], str(row["line"]), row["field"], row["reason"])
    stdout.print(table)


# -- embed / index / search ---------------------------------------------------------------------


@app.command()
def embed(json_output: JsonOption = False) -> None:
    """Embed every example that has no vector for the configured model yet."""
    from curation.embeddings import embed_pool

    config = _config()
    with _open_store(config) as store:
        result = embed_pool(store, config, progress=_progress(json_output))
    if json_output:
        _emit_json(result)
        return
    if result["embedded"] == 0:
        stdout.print(
            f"nothing to embed: all {result['already_embedded']} examples already have "
            f"{result['model']} vectors"
        )
        return
    rate = result["embedded"] / result["seconds"] if result["seconds"] else float("nan")
    stdout.print(
        f"embedded {result['embedded']} examples with {result['model']} "
        f"({result['dim']}-d) in {result['seconds']:.1f} s ({rate:.0f} texts/s); "
        f"{result['already_embedded']} already had vectors"
    )


@app.command()
def index(json_output: JsonOption = False) -> None:
    """Build or update the FAISS index over the cached vectors."""
    from curation.index import update_index

    config = _config()
    with _open_store(config) as store:
        _, counts = update_index(store, config)
    if json_output:
        _emit_json(counts)
        return
    stdout.print(
        f"index: {counts['indexed']} vectors ({counts['kind']}), {counts['added']} added"
        + (", rebuilt" if counts["rebuilt"] else "")
    )


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Text to find neighbours of.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Neighbours to show.")] = 5,
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="Only these languages.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Nearest examples to a text (cosine), optionally within languages."""
    from curation.embeddings import make_embedder
    from curation.index import update_index

    config = _config()
    with _open_store(config) as store:
        vector_index, _ = update_index(store, config)
        if vector_index is None:
            raise InputError("no vectors yet: run `curate embed` first")
        query_vector = make_embedder(config.embedding).encode_queries([query])
        scores, ids = vector_index.search(query_vector, k, language=language)
        found = ids[0]
        marks = ",".join("?" * len(found))
        rows = {
            row["id"]: row
            for row in store.conn.execute(
                f"SELECT id, language, text FROM examples WHERE id IN ({marks})", found
            )
        }
    hits = [
        {"id": i, "score": float(s), "language": rows[i]["language"], "text": rows[i]["text"]}
        for i, s in zip(found, scores[0], strict=False)
    ]
    if json_output:
        _emit_json({"query": query, "hits": hits})
        return
    table = Table(title=f"nearest to {query!r}")
    for column in ("score", "language", "id", "text"):
        table.add_column(column)
    for hit in hits:
        table.add_row(f"{hit['score']:.3f}", hit["language"], hit["id"], hit["text"])
    stdout.print(table)


# -- export -------------------------------------------------------------------------------------


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Argument(help="Output folder (datasets) or file.")],
    fmt: Annotated[
        str, typer.Option("--format", help="datasets (save_to_disk), parquet or jsonl.")
    ] = "datasets",
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="Only these languages.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Export the labeled examples as a Hugging Face dataset (or Parquet / JSONL)."""
    from curation.export import export

    config = _config()
    with _open_store(config, read_only=True) as store:
        result = export(store, out, fmt=fmt, languages=language)
    if json_output:
        _emit_json(result)
        return
    stdout.print(
        f"wrote {result['rows']} labeled examples to {result['path']} ({result['format']}): "
        + ", ".join(f"{code} {n}" for code, n in result["per_language"].items())
    )


# -- entry point --------------------------------------------------------------------------------


def _is_click_error(exc: BaseException) -> bool:
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps errors to exit codes and one-line messages."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("CURATE_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="curate", standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(1)
    except CurateError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # the last net: one line unless --debug
        if _is_click_error(exc):
            # Usage errors (typer vendors click, so match by interface, not by class).
            if debug:
                traceback.print_exc()
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.stderr.write(exc.format_message() + "\n")
                sys.exit(2)
            command = getattr(getattr(exc, "ctx", None), "command_path", "curate")
            sys.stderr.write(f"error: {exc.format_message()} (see: {command} --help)\n")
            sys.exit(exc.exit_code)
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


# The steps' commands live in their own modules, which register themselves on `app`.
from curation import (  # noqa: E402, F401
    cli_labeling,
    cli_run,
    cli_select,
    cli_training,
)

if __name__ == "__main__":
    # Run through the imported module, where the step modules registered their commands.
    from curation.cli import main as registered_main

    registered_main()
