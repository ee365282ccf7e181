"""A real Label Studio for the `labelstudio` tests, started once per test session.

The server is started with scripts/labelstudio.sh (which installs label-studio into its own
virtualenv the first time). A fresh data dir spends about 80 s in migrations, so the first session
on a machine migrates a template data dir once (`$CURATE_LS_VENV/test-template`) and every session
starts on a copy of it (about 10 s).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "labelstudio.sh"
TOKEN = "curate-test-token-0123456789"  # legacy token of the test admin (6-40 characters)
ADMIN = "admin@curate.test"
ANNOTATORS = ("ann1@curate.test", "ann2@curate.test", "ann3@curate.test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _script(command: str, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/labelstudio.sh {command} failed ({done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


@dataclass
class LabelStudioServer:
    url: str
    token: str
    port: int
    data_dir: Path
    env: dict[str, str]
    annotators: dict[str, int] = field(default_factory=dict)  # email -> user id

    def stop(self) -> None:
        _script("stop", self.env, timeout=120)

    def start(self) -> None:
        _script("start", self.env, timeout=600)

    def client(self, **settings):  # noqa: ANN003, ANN201
        from labeling.client import LabelStudioClient

        return LabelStudioClient(self.url, self.token, **settings)


@pytest.fixture(scope="session")
def labelstudio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    venv = Path(os.environ.get("CURATE_LS_VENV") or REPO / ".venv-labelstudio")
    base_env = {
        **os.environ,
        "CURATE_LS_VENV": str(venv),
        "CURATE_LS_USERNAME": ADMIN,
        "CURATE_LS_PASSWORD": "curate-test-password",
        "CURATE_LS_TOKEN": TOKEN,
    }
    _script("install", base_env, timeout=1800)
    template = venv / "test-template"
    with open(venv / ".test-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions: one migrates, the others wait
        if not (template / ".ready").exists():
            shutil.rmtree(template, ignore_errors=True)
            port = str(free_port())
            env = {**base_env, "CURATE_LS_DATA_DIR": str(template), "CURATE_LS_PORT": port}
            _script("start", env, timeout=900)
            _script("stop", env, timeout=120)
            (template / ".ready").write_text("migrated\n")
    data_dir = tmp_path_factory.mktemp("labelstudio") / "data"
    shutil.copytree(template, data_dir, ignore=shutil.ignore_patterns("curate-server.*", ".ready"))
    port = free_port()
    env = {**base_env, "CURATE_LS_DATA_DIR": str(data_dir), "CURATE_LS_PORT": str(port)}
    server = LabelStudioServer(f"http://127.0.0.1:{port}", TOKEN, port, data_dir, env)
    server.start()
    try:
        sdk = server.client().sdk
        for email in ANNOTATORS:
            user = sdk.users.create(
                username=email.split("@")[0], email=email, password="annotator-password"
            )
            server.annotators[email] = int(user.id)
        yield server
    finally:
        server.stop()
