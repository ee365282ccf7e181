"""`curate push`, `curate pull`, `curate adjudicate`: the Label Studio bridge on the command line.

Registered on the main `curate` app (curation.cli imports this module). The server comes from
$LABEL_STUDIO_URL / `[labelstudio] url` and $LABEL_STUDIO_API_KEY / `[labelstudio] api_key`,
the environment over the file for both; without one, `push --to FILE` and `pull --from FILE`
work on Label Studio's import and export files. See labeling.push and labeling.pull for what
exactly happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curation.cli.base import (
    JsonOption,
    app,
    emit_json,
    open_store,
    print_table,
    project_config,
    stdout,
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def push(
    round_id: Annotated[
        int | None,
        typer.Option(
            "--round",
            min=1,
            help="Push this round (default: every round not pushed yet, oldest first; when all "
            "are, the latest again).",
        ),
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="No server: write Label Studio's JSON import file (and its labeling config).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Send selection rounds to Label Studio as tasks, in active-learning order, exactly once.

    Every round not pushed yet goes, oldest first; a round written to an import file before
    (`--to`) is listed as not pushed, with the `--round ID` that pushes it."""
    from labeling.client import LabelStudioClient
    from labeling.push import push as push_rounds
    from labeling.push import write_import_file

    config = project_config()
    with open_store(config) as store:
        if to is not None:
            result = write_import_file(store, config, to, round_id=round_id)
        else:
            client = LabelStudioClient.from_config(config)
            result = push_rounds(store, config, client, round_id=round_id)
    if json_output:
        emit_json(result)
        return
    if to is not None:
        rounds = result["round_ids"]
        which = f"round {rounds[0]}" if len(rounds) == 1 else f"rounds {_ids(rounds)}"
        stdout.print(
            f"wrote {result['tasks']} tasks of {which} to {result['file']} "
            f"({result['pushed']} new, {result['already_pushed']} written before, "
            f"{result['gold']} gold); labeling config: {result['label_config']}"
        )
        stdout.print(
            "in Label Studio: create a project with that labeling config, import the file, set "
            f"Annotation > Sampling to 'Uncertainty sampling' and the model version to "
            f"{result['model_version']!r}; later export as JSON and run `curate pull --from FILE`"
        )
        return
    table = Table(title=f"push to project {result['project_id']}")
    for column in ("round", "pushed", "already pushed", "adopted", "gold", "overlap set"):
        table.add_column(column, justify="right")
    for row in result["rounds"]:
        table.add_row(
            str(row["round_id"]),
            str(row["pushed"]),
            str(row["already_pushed"]),
            str(row["adopted"]),
            str(row["gold"]),
            str(row["overlap_set"]),
        )
    print_table(table)
    for row in result["not_pushed"]:
        stdout.print(f"round {row['round_id']} not pushed: {row['reason']}")
    stdout.print(f"annotate at {result['url']}")


def _ids(numbers: list[int]) -> str:
    return ", ".join(str(number) for number in numbers)


@app.command()
def pull(
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="No server: read Label Studio's JSON export file instead."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Bring annotations back, resolve labels, and measure agreement per language."""
    from labeling.client import LabelStudioClient
    from labeling.pull import pull as pull_annotations
    from labeling.pull import pull_from_file

    config = project_config()
    with open_store(config) as store:
        if from_file is not None:
            result = pull_from_file(store, config, from_file)
        else:
            client = LabelStudioClient.from_config(config)
            result = pull_annotations(store, config, client)
        # The pull rebuilt the adjudication queue; suspected label errors (cleanlab on the
        # proxy's out-of-fold probabilities) join it, capped per language.
        from curation.quality import review_labels

        result["label_issues"] = review_labels(store, config)
        result["needs_adjudication"] += result["label_issues"]["flagged"]
    if json_output:
        emit_json(result)
        return
    stdout.print(
        f"annotations: {result['annotations']} live ({result['new']} new, {result['updated']} "
        f"updated, {result['deleted']} deleted); labels resolved: {result['labels_resolved']}, "
        f"withdrawn: {result['labels_withdrawn']}; waiting for more answers: {result['pending']}; "
        f"needs adjudication: {result['needs_adjudication']}"
    )
    if result["per_language"]:
        table = Table(title="agreement per language")
        for column in (
            "language",
            "annotations",
            "annotators",
            "items >= 2",
            "alpha",
            "kappa",
            "% agree",
            "new labels",
            "crowd labels",
            "adjudicate",
        ):
            table.add_column(column, justify="left" if column == "language" else "right")
        for language, row in result["per_language"].items():
            table.add_row(
                language,
                str(row["annotations"]),
                str(row["annotators"]),
                str(row["units"]),
                _fmt(row["agreement"]),
                _fmt(row["fleiss_kappa"]),
                "-"
                if row["percent_agreement"] is None
                else f"{100 * row['percent_agreement']:.1f}",
                str(row["labels"]),
                str(row["crowd_labels"]),
                str(row["needs_adjudication"]),
            )
        print_table(table)
    if result["gold_accuracy"]:
        table = Table(title="annotators on gold tasks")
        for column in ("annotator", "language", "answered", "correct", "accuracy"):
            table.add_column(
                column, justify="left" if column in ("annotator", "language") else "right"
            )
        for annotator, languages in result["gold_accuracy"].items():
            for language, row in languages.items():
                table.add_row(
                    annotator,
                    language,
                    str(row["answered"]),
                    str(row["correct"]),
                    _fmt(row["accuracy"], 2),
                )
        print_table(table)
    quality = result.get("annotator_quality") or {}
    if quality.get("annotators"):
        method = quality["method"]
        table = Table(
            title="annotators: "
            + (
                "estimated accuracy (Dawid-Skene)"
                if method == "dawid_skene"
                else "agreement with the majority label"
            )
        )
        for column in ("annotator", "answers", "accuracy"):
            table.add_column(column, justify="left" if column == "annotator" else "right")
        for annotator, row in quality["annotators"].items():
            table.add_row(annotator, str(row["answers"]), _fmt(row["accuracy"], 2))
        print_table(table)
    issues = result["label_issues"]
    if issues["flagged"]:
        stdout.print(
            f"suspected label errors queued for adjudication: {issues['flagged']} ("
            + ", ".join(f"{k} {v}" for k, v in issues["per_language"].items())
            + f"; {issues['checked']} labels checked)"
        )
    if result["needs_adjudication"]:
        stdout.print("see and settle them with: curate adjudicate")


@app.command()
def adjudicate(
    set_label: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--set",
            metavar="EXAMPLE_ID LABEL",
            help="Settle one example with this label (source 'adjudicated').",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 1000,
    json_output: JsonOption = False,
) -> None:
    """List the examples annotators could not settle, or settle one with --set."""
    from labeling.adjudicate import adjudication_queue
    from labeling.adjudicate import set_label as settle

    config = project_config()
    if set_label is not None:
        example_id, label = set_label
        with open_store(config) as store:
            result = settle(store, config, example_id, label)
        if json_output:
            emit_json(result)
            return
        previous = result["previous"]
        was = f" (was {previous['label']!r} from {previous['source']})" if previous else ""
        stdout.print(f"{example_id}: {label!r}, adjudicated{was}")
        return
    rows: list[dict] = []
    if (config.store.path / "curate.db").exists():
        with open_store(config) as store:  # not read-only: an old store gets the queue table
            rows = adjudication_queue(store, limit=limit)
    if json_output:
        emit_json({"rows": rows, "count": len(rows)})
        return
    if not rows:
        stdout.print("nothing to adjudicate")
        return
    table = Table(title=f"to adjudicate ({len(rows)})")
    for column in ("example", "language", "reason", "votes", "current", "text"):
        table.add_column(column)
    for row in rows:
        votes = ", ".join(f"{label} {count}" for label, count in row["votes"].items())
        current = (
            f"{row['current_label']} ({row['current_source']})" if row["current_label"] else ""
        )
        table.add_row(
            row["example_id"], row["language"], row["reason"], votes, current, row["text"]
        )
    print_table(table)
    stdout.print("settle one with: curate adjudicate --set EXAMPLE_ID LABEL")
