"""The `curate` command line.

Exit codes: 0 success, 2 bad usage or bad input, 1 any other failure. Errors are one line on
stderr (`error: ...`), with a traceback only under `--debug`. Every reporting command takes
`--json` and then prints exactly one JSON object on stdout; logs and progress go to stderr.

Layout (imports go one way, down this list):
    curation.cli            the entry point `main`; imports every command module, so they register
    curation.cli.data       ingest, status, quarantine, embed, index, search, export
    curation.cli.select     select, simulate
    curation.cli.labeling   push, pull, adjudicate
    curation.cli.training   train and its reports
    curation.cli.run        the nightly job
    curation.cli.serve      dashboard (the Streamlit server)
    curation.cli.base       the Typer app, global options, shared helpers (imports no command)
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

import typer

# Importing a command module registers its commands on `app`.
from curation.cli import data, labeling, run, select, serve, training  # noqa: F401
from curation.cli.base import STATE, app
from curation.errors import CurateError
from curation.redact import redact_url

__all__ = ["STATE", "app", "main"]


def _is_click_error(exc: BaseException) -> bool:
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def _fail(message: str, exit_code: int, *, debug: bool) -> NoReturn:
    """The one error line (and, with --debug, the traceback), credentials in URLs redacted."""
    if debug:
        sys.stderr.write(redact_url(traceback.format_exc()))
    sys.stderr.write(redact_url(message) + "\n")
    sys.exit(exit_code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps errors to exit codes and one-line messages.

    Every error line goes through curation.redact: an error may quote a URL with credentials
    (`http://user:pass@host`, `?token=`), e.g. $LABEL_STUDIO_URL's.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("CURATE_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="curate", standalone_mode=False)
    except typer.Abort:
        _fail("error: aborted", 1, debug=False)
    except CurateError as exc:
        _fail(f"error: {exc}", exc.exit_code, debug=debug)
    except KeyboardInterrupt:
        _fail("error: interrupted", 130, debug=False)
    except Exception as exc:  # the last net: one line unless --debug
        if _is_click_error(exc):
            # Usage errors (typer vendors click, so match by interface, not by class).
            if type(exc).__name__ == "NoArgsIsHelpError":
                _fail(exc.format_message(), 2, debug=debug)
            command = getattr(getattr(exc, "ctx", None), "command_path", "curate")
            _fail(
                f"error: {exc.format_message()} (see: {command} --help)", exc.exit_code, debug=debug
            )
        _fail(f"error: {type(exc).__name__}: {exc}", 1, debug=debug)
    sys.exit(result if isinstance(result, int) else 0)
