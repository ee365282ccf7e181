"""`curate run`: the nightly job (registered on the main `curate` app)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from curation.cli.base import (
    STATE,
    JsonOption,
    app,
    emit_json,
    print_table,
    project_config,
    show_progress,
    stdout,
)


@app.command("run")
def run_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what each stage would do; write nothing.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """The whole cycle: ingest, embed, pull, curate, train, evaluate, select, push, report.

    Exit codes: 0 success, 3 success with warnings (e.g. Label Studio unreachable),
    1 a stage failed, 75 another run holds the lock, 2 bad configuration.
    """
    from curation.nightly import execute

    config = project_config()
    result = execute(
        config,
        dry_run=dry_run,
        progress=show_progress(json_output),
        debug=STATE.debug,
        quiet=STATE.quiet,
    )
    exit_code = result.pop("exit_code")
    if json_output:
        emit_json(result)
    else:
        table = Table(
            title=f"curate run {result['run_id']}: {result['status']}"
            + (" (dry run)" if dry_run else "")
        )
        for column in ("stage", "status", "counts", "note"):
            table.add_column(column)
        for name, stage in result["stages"].items():
            counts = ", ".join(
                f"{k} {v}"
                for k, v in stage["counts"].items()
                if k != "seconds" and not isinstance(v, dict | list)
            )
            table.add_row(name, stage["status"], counts, stage["message"] or "")
        print_table(table)
        for warning in result["warnings"]:
            stdout.print(f"warning: {warning}")
        if result["report"]:
            stdout.print(f"report: {result['report']}")
    sys.exit(exit_code)
