"""No credential of $LABEL_STUDIO_URL in any output of `curate run`: files, store, std streams."""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from curation.redact import RedactFilter, redact_data, redact_url
from tests.curation.test_nightly import project  # noqa: F401 - the fixture

CLI = [sys.executable, "-m", "curation.cli"]
SECRETS = ("s3cret", "tok123", "k3y-in-query")
URL = "http://alice:s3cret@127.0.0.1:9/?token=tok123&api_key=k3y-in-query"
SHOWN = "http://***@127.0.0.1:9/?token=***&api_key=***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET http://alice:s3cret@ls:8080/api?page=2&token=abc failed",
            "GET http://***@ls:8080/api?page=2&token=*** failed",
        ),
        (f"Label Studio at {URL} unavailable", f"Label Studio at {SHOWN} unavailable"),
        (
            "('https://h/p?apiKey=K;x=1#access_token=Z&state=s')",
            "('https://h/p?apiKey=***;x=1#access_token=***&state=s')",
        ),
        ("postgres://u:p@db:5432/x", "postgres://***@db:5432/x"),
        ("http://host:8080/path?page=2", "http://host:8080/path?page=2"),
        ("no url: user:pass@host", "no url: user:pass@host"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected
    assert redact_url(expected) == expected  # redacting twice changes nothing


def test_redact_data_and_the_log_filter() -> None:
    assert redact_data({"u": [URL, (URL, 1)], URL: None}) == {"u": [SHOWN, (SHOWN, 1)], SHOWN: None}
    record = logging.LogRecord("curate.run", logging.ERROR, __file__, 1, "at %s", (URL,), None)
    try:
        raise ConnectionError(f"cannot reach {URL}")
    except ConnectionError:
        record.exc_info = sys.exc_info()
    assert RedactFilter().filter(record)
    text = logging.Formatter("%(message)s").format(record)
    assert text.startswith(f"at {SHOWN}\nTraceback (most recent call last):\n")
    assert text.endswith(f"ConnectionError: cannot reach {SHOWN}")


def _everything_written(root: Path) -> str:
    """Every file under the project (bytes decoded leniently) and the database as SQL."""
    parts = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            parts.append(f"== {path}\n" + path.read_bytes().decode("utf-8", "replace"))
    conn = sqlite3.connect(root / "curation-data" / "curate.db")
    try:
        parts.append("\n".join(conn.iterdump()))
    finally:
        conn.close()
    return "\n".join(parts)


@pytest.mark.slow
def test_credentials_in_the_label_studio_url_are_nowhere(project: Path) -> None:  # noqa: F811
    with open(project / "curate.toml", "a") as handle:
        # One quick retry: the labeling wing logs a warning that names the failed call.
        handle.write("[labelstudio]\nmax_retries = 1\ntimeout_seconds = 2\n")
    env = {**os.environ, "LABEL_STUDIO_URL": URL, "LABEL_STUDIO_API_KEY": "an-api-key"}
    outputs = []
    for args in (["run", "--json"], ["--debug", "run"]):
        done = subprocess.run([*CLI, *args], cwd=project, capture_output=True, text=True, env=env)
        assert done.returncode == 3, done.stderr  # Label Studio unreachable: warnings
        outputs += [done.stdout, done.stderr]
    payload = json.loads(outputs[0])
    assert payload["stages"]["pull"]["status"] == "warning"
    assert f"Label Studio at {SHOWN} unavailable" in payload["stages"]["pull"]["message"]
    written = _everything_written(project)
    for secret in SECRETS:
        for output in outputs:
            assert secret not in output
        assert secret not in written
    # ... while the server is still named: in the run.log, the report, the store and stdout.
    (first_run,) = [
        p for p in (project / "curation-data" / "nightly").iterdir() if p.name == payload["run_id"]
    ]
    for path in ("run.log", "report.json", "report.md"):
        assert SHOWN in (first_run / path).read_text(encoding="utf-8"), path
    conn = sqlite3.connect(project / "curation-data" / "curate.db")
    warnings = conn.execute(
        "SELECT warnings FROM runs WHERE id = ?", (payload["run_id"],)
    ).fetchone()
    messages = conn.execute(
        "SELECT message FROM run_steps WHERE run_id = ? AND stage IN ('pull', 'push')",
        (payload["run_id"],),
    ).fetchall()
    conn.close()
    assert SHOWN in warnings[0]
    assert all(SHOWN in message for (message,) in messages) and len(messages) == 2
    assert SHOWN in outputs[0] and "127.0.0.1:9" in outputs[3]
    # The labeling wing's own retry warning reached run.log (curate.labeling's logger).
    assert re.search(
        r" WARNING [a-z ]+ failed \(ConnectError: \[Errno 111\] Connection refused\); retry 1 in ",
        (first_run / "run.log").read_text(encoding="utf-8"),
    )
