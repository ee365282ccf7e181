"""The `curate` app itself: the Typer object, global options and the helpers every command uses.

Command modules import from here; nothing here imports a command module, so the import
direction is one way: curation.cli (entry point) -> command modules -> curation.cli.base.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from curation.cli.progress import install as install_progress_lines
from curation.config import Config, load_config, resolve_config_path
from curation.errors import ConfigError
from curation.store import Store

app = typer.Typer(
    name="curate",
    help="Multilingual active learning and data curation: ingest, embed, select, label, train.",
    no_args_is_help=True,
    # `curate --install-completion` / `--show-completion [bash|zsh|fish]` (Typer's own).
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

log = logging.getLogger("curate")
# Data (tweets, file names) may hold "[...]" or ":name:": never interpret it as markup.
stdout = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
# Off a terminal nothing wraps a line: rich's fallback of 80 columns would cut paths and texts
# in a pipe, a file or a CI log. A width rich never reaches, not infinity (it needs an int).
UNBOUNDED_WIDTH = 1_000_000


def fit_output_width() -> None:
    """The stdout console's width: the terminal's on a terminal (rich measures it, COLUMNS
    overrides), else $COLUMNS when set, else unbounded."""
    try:
        terminal = sys.stdout.isatty()
    except (AttributeError, ValueError):
        terminal = False
    columns = os.environ.get("COLUMNS", "")
    if terminal:
        stdout.width = None  # type: ignore[assignment]  # rich measures the terminal again
    elif columns.isdigit() and int(columns) > 0:
        stdout.width = int(columns)
    else:
        stdout.width = UNBOUNDED_WIDTH


def print_table(table: Table) -> None:
    """Print a table whose cells are never cut: a cell too wide for the terminal folds onto
    more lines instead of ending in "…" (rich's default), so a path or a text stays whole."""
    for column in table.columns:
        column.overflow = "fold"
    stdout.print(table)


class _State:
    config_path: str | None = None
    debug: bool = False
    quiet: bool = False


STATE = _State()

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON object on stdout.")
]


def project_config() -> Config:
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


def open_store(config: Config, *, read_only: bool = False) -> Store:
    return Store(config.store.path, read_only=read_only)


def show_progress(json_output: bool) -> bool:
    """Whether commands draw progress bars: always on stderr, so also under `--json` (stdout
    holds only the JSON object); off with `--quiet`. Off a terminal the bars become plain lines
    every few seconds (curation.cli.progress), so a piped or logged long command is not silent."""
    return not STATE.quiet


def emit_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"curate {version('multilingual-curate')}\n")
        raise typer.Exit(0)


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
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    STATE.config_path = config
    STATE.debug = debug
    STATE.quiet = quiet
    install_progress_lines(quiet=quiet)
    fit_output_width()
    if quiet or not sys.stderr.isatty():
        # transformers and huggingface_hub read this when first imported: no "Loading weights"
        # bars in cron logs or under --quiet.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from curation.redact import RedactFilter

    # Every command, not only `run`: --debug logs carry request URLs (httpx), which may hold
    # credentials of LABEL_STUDIO_URL.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
