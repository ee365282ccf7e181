"""Where the dashboard's store is, and a fingerprint that changes whenever the store does.

Resolution, first match wins:

1. ``--store PATH`` after ``--`` on the command line (``streamlit run app.py -- --store PATH``);
2. ``$CURATE_STORE`` (the CLI honours it the same way: curation.config.load_config);
3. ``[store] path`` of the project file that the CLI would use (``--config PATH`` after ``--``,
   then ``$CURATE_CONFIG``, then ``./curate.toml``, else the default ``./curation-data``).

The project file is still read when the store is overridden: the dashboard takes the embedding
model (for the 2-D map), ``[labelstudio] min_agreement`` and ``[selection] max_similarity`` from it.

The fingerprint is the (mtime, size) of ``curate.db`` and ``curate.db-wal``: a committed write
appends to the WAL (or, after a checkpoint, rewrites the database file), so every cached query
keyed on it is recomputed after any commit, and never otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from curation.config import STORE_ENV, Config, load_config
from curation.errors import ConfigError, StoreError
from curation.store import DB_NAME, Store


@dataclass(frozen=True)
class Source:
    """The resolved store for this dashboard process, or why there is none."""

    store_path: Path
    config: Config
    origin: str  # how the store path was chosen, for the sidebar
    config_error: str | None = None

    @property
    def db_path(self) -> Path:
        return self.store_path / DB_NAME

    @property
    def exists(self) -> bool:
        return self.db_path.is_file()


DASHBOARD_SCRIPTS = ("app.py", "overview.py")


def _cli_arguments(argv: list[str] | None) -> argparse.Namespace:
    """`--store` / `--config` given after `--` to `streamlit run app.py`.

    Only read when this process was started as ``streamlit run <dashboard script>``: under
    pytest or another host, ``sys.argv`` belongs to that program.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store")
    parser.add_argument("--config")
    if argv is None:
        # `streamlit run app.py -- ARGS` sets sys.argv to [app.py, *ARGS] for every page
        # (and `streamlit run overview.py -- ARGS`, the page itself, to [overview.py, *ARGS]).
        is_dashboard = bool(sys.argv) and Path(sys.argv[0]).name in DASHBOARD_SCRIPTS
        argv = sys.argv[1:] if is_dashboard else []
    known, _ = parser.parse_known_args(argv)
    return known


def resolve_source(argv: list[str] | None = None) -> Source:
    """The store to show (see the module docstring for the order)."""
    args = _cli_arguments(argv)
    config_error = None
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        config, config_error = Config(), str(exc)
    if args.store:
        return Source(Path(args.store).expanduser().resolve(), config, "--store", config_error)
    env = os.environ.get(STORE_ENV)
    if env:
        return Source(Path(env).expanduser().resolve(), config, f"${STORE_ENV}", config_error)
    origin = (
        "config [store] path"
        if (args.config or os.environ.get("CURATE_CONFIG"))
        else ("./curate.toml" if Path("curate.toml").is_file() else "default ./curation-data")
    )
    return Source(config.store.path.expanduser().resolve(), config, origin, config_error)


def fingerprint(db_path: Path) -> tuple[int, ...]:
    """(mtime_ns, size) of the database and of its WAL; zeros for a file that is absent.

    An empty WAL counts as absent: the first reader after a writer closed creates one (SQLite
    does so even for a read-only connection), and that must not look like a change, or every
    page's first visit would read the store twice.
    """
    values: list[int] = []
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        try:
            stat = path.stat()
        except FileNotFoundError:
            values += [0, 0]
        else:
            empty_wal = path.name.endswith("-wal") and stat.st_size == 0
            values += [0, 0] if empty_wal else [stat.st_mtime_ns, stat.st_size]
    return tuple(values)


@contextmanager
def open_read_only(store_path: Path):
    """A read-only `Store` (SQLite `mode=ro`): never takes the writer lock, never migrates.

    A store folder the dashboard may not write (a snapshot, `chmod -R a-w`) is read too: the
    Store then opens it `immutable=1` (see curation.store), since a WAL reader would need to
    create `curate.db-shm` there.
    """
    store = Store(store_path, read_only=True)
    try:
        yield store
    finally:
        store.close()


__all__ = [
    "STORE_ENV",
    "Source",
    "StoreError",
    "fingerprint",
    "open_read_only",
    "resolve_source",
]
