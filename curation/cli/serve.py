"""`curate dashboard`: the Streamlit dashboard of an installed `curate`, from any folder.

Runs `streamlit run <package>/dashboard/web/app.py` with the dashboard's settings as flags (the
same as the checkout's .streamlit/config.toml, which an installed package does not have: local
only, headless, no usage statistics, the app's own sidebar links, no magic) and the store to
show after `--`. The process becomes Streamlit's (exec), so signals and the exit code are the
server's own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from curation.cli.base import STATE, app, project_config

# The checkout's .streamlit/config.toml as `streamlit run` flags (a test keeps them equal).
STREAMLIT_FLAGS: dict[str, str] = {
    "server.headless": "true",
    "server.runOnSave": "false",
    "browser.gatherUsageStats": "false",
    "client.showSidebarNavigation": "false",
    "client.toolbarMode": "minimal",
    "runner.magicEnabled": "false",
}


def dashboard_command(*, store: Path, host: str, port: int, config: str | None) -> list[str]:
    """The `streamlit run` command line `curate dashboard` executes."""
    from dashboard.web import WEB

    command = [sys.executable, "-m", "streamlit", "run", str(WEB / "app.py")]
    for key, value in {**STREAMLIT_FLAGS, "server.address": host, "server.port": str(port)}.items():
        command += [f"--{key}", value]
    command += ["--", "--store", str(store)]
    if config is not None:
        command += ["--config", config]
    return command


@app.command("dashboard")
def dashboard(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on (default: this machine only; serving others needs auth "
            "in front).",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8501,
) -> None:
    """Serve the dashboard (Overview, Selection, Labeling, Model, Quality) for the store."""
    config = project_config()
    command = dashboard_command(
        store=config.store.path.expanduser().resolve(),
        host=host,
        port=port,
        config=STATE.config_path,
    )
    sys.stderr.write(f"dashboard on http://{host}:{port} (store {config.store.path})\n")
    sys.stderr.flush()
    sys.stdout.flush()
    # Replaced by Streamlit, not its parent: a signal to this process (Ctrl-C, a service
    # manager's stop) reaches the server, and no orphan keeps the port.
    os.execv(command[0], command)
