"""`curate ingest`, `status`, `quarantine`, `embed`, `index`, `search`, `export`: the data rooms."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from curation.cli.base import (
    STATE,
    JsonOption,
    app,
    emit_json,
    open_store,
    print_table,
    project_config,
    show_progress,
    stdout,
)
from curation.cli.progress import working
from curation.errors import InputError

if TYPE_CHECKING:
    from curation.ingest import FileReport


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

    config = project_config()
    with open_store(config) as store:
        reports = ingest_files(
            store,
            config,
            files,
            source=source,
            progress=show_progress(json_output),
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
        emit_json(summary)
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
    print_table(table)
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

    config = project_config()
    db = config.store.path / "curate.db"
    # A store path that is a file is an error (open_store says so), not an empty store.
    if not db.exists() and not config.store.path.is_file():
        payload = {"examples": 0, "labeled": 0, "quarantined": 0, "per_language": {}}
        if json_output:
            emit_json(payload)
        else:
            stdout.print(f"store {config.store.path} is empty (run `curate ingest FILE`)")
        return
    with open_store(config, read_only=True) as store:
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
        emit_json(payload)
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
    print_table(table)
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
    config = project_config()
    rows: list[dict] = []
    if (config.store.path / "curate.db").exists() or config.store.path.is_file():
        with open_store(config, read_only=True) as store:
            sql = "SELECT file, line, field, reason, raw FROM quarantine"
            params: list = []
            if file:
                sql += " WHERE file = ?"
                params.append(file)
            sql += " ORDER BY id LIMIT ?"
            params.append(limit)
            rows = [dict(row) for row in store.conn.execute(sql, params)]
    if json_output:
        emit_json({"rows": rows})
        return
    if not rows:
        stdout.print("no quarantined rows")
        return
    table = Table(title="quarantine")
    for column in ("file", "line", "field", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["file"], str(row["line"]), row["field"], row["reason"])
    print_table(table)


# -- embed / index / search ---------------------------------------------------------------------


@app.command()
def embed(json_output: JsonOption = False) -> None:
    """Embed every example that has no vector for the configured model yet."""
    from curation.pipeline import embed_store

    config = project_config()
    with open_store(config) as store:
        result = embed_store(store, config, progress=show_progress(json_output))
    if json_output:
        emit_json(result)
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

    config = project_config()
    with open_store(config) as store:
        _, counts = update_index(store, config, progress=show_progress(json_output))
    if json_output:
        emit_json(counts)
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

    config = project_config()
    with open_store(config) as store:
        vector_index, _ = update_index(store, config, progress=show_progress(json_output))
        if vector_index is None:
            raise InputError("no vectors yet: run `curate embed` first")
        with working(
            f"search: loading {config.embedding.model}", enabled=show_progress(json_output)
        ):
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
        emit_json({"query": query, "hits": hits})
        return
    table = Table(title=f"nearest to {query!r}")
    for column in ("score", "language", "id", "text"):
        table.add_column(column)
    for hit in hits:
        table.add_row(f"{hit['score']:.3f}", hit["language"], hit["id"], hit["text"])
    print_table(table)


# -- export -------------------------------------------------------------------------------------


@app.command("export")
def export_command(
    out: Annotated[
        Path, typer.Argument(help="Output folder (datasets, or any format with --split) or file.")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="datasets (save_to_disk), parquet or jsonl.")
    ] = "datasets",
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="Only these languages.")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="Split stratified by language and label, e.g. train=0.8,validation=0.1,test=0.1: "
            "a DatasetDict, or one NAME.parquet / NAME.jsonl per split in OUT.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --split shuffle.")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Export the labeled examples as a Hugging Face dataset (or Parquet / JSONL).

    Columns: id, text, label, language, label_source, round (the selection round that picked
    the example; null for imported labels) and is_control (a random control pick).
    """
    from curation.export import export, parse_split

    fractions = parse_split(split) if split is not None else None
    config = project_config()
    with open_store(config, read_only=True) as store:
        result = export(store, out, fmt=fmt, languages=language, split=fractions, seed=seed)
    if json_output:
        emit_json(result)
        return
    stdout.print(
        f"wrote {result['rows']} labeled examples to {result['path']} ({result['format']}): "
        + ", ".join(f"{code} {n}" for code, n in result["per_language"].items())
    )
    for name, part in result.get("splits", {}).items():
        stdout.print(
            f"  {name}: {part['rows']} ("
            + ", ".join(f"{code} {n}" for code, n in part["per_language"].items())
            + ")"
        )
    if "splits" in result:
        stdout.print(f"  stratified by language and label, seed {result['seed']}")
