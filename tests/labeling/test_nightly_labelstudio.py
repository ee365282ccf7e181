"""`curate run` against a real Label Studio: the server down then up, and SIGKILL mid-push."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.labeling.conftest import LabelStudioServer

pytestmark = pytest.mark.labelstudio

CLI = [sys.executable, "-m", "curation.cli"]
LANGS = ("en", "es", "ar")
LABELS = ("negative", "neutral", "positive")


def _project(root: Path, model_dir: Path, title: str, chunk: int) -> Path:
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    with open(inbox / "pool.jsonl", "w", encoding="utf-8") as handle:
        for i in range(150):
            row = {
                "id": f"{title}-{i}",
                "text": f"text {i} for {title} in {LANGS[i % 3]}",
                "language": LANGS[i % 3],
            }
            if i < 45:
                row["label"] = LABELS[(i // 3) % 3]
            handle.write(json.dumps(row) + "\n")
    (root / "curate.toml").write_text(
        f'[embedding]\nmodel = "{model_dir}"\n[languages]\ndetect = false\n'
        '[labels]\nnames = ["negative", "neutral", "positive"]\n'
        '[selection]\nallocation = "equal"\ncontrol_share = 0.0\nmax_similarity = 1.0\n'
        '[run]\ninbox = ["inbox"]\nqueue_target = 30\n'
        f'[labelstudio]\nproject_title = "{title}"\nimport_chunk_size = {chunk}\nmax_retries = 1\n'
        "timeout_seconds = 5\n"
    )
    return root


def _run(root: Path, server: LabelStudioServer, **env: str) -> tuple[int, dict | None]:
    done = subprocess.run(
        [*CLI, "run", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "LABEL_STUDIO_URL": server.url,
            "LABEL_STUDIO_API_KEY": server.token,
            **env,
        },
    )
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else None)


def _server_examples(server: LabelStudioServer, root: Path) -> list[str]:
    conn = sqlite3.connect(root / "curation-data" / "curate.db")
    (project_id,) = conn.execute("SELECT DISTINCT project_id FROM tasks").fetchone()
    conn.close()
    return [task.example_id for task in server.client().list_tasks(project_id)]


def test_label_studio_down_then_up(
    tmp_path: Path, tiny_model_dir: Path, labelstudio_server: LabelStudioServer
) -> None:
    root = _project(tmp_path / "p", tiny_model_dir, "nightly-down-up", chunk=1000)
    labelstudio_server.stop()
    try:
        code, down = _run(root, labelstudio_server)
    finally:
        labelstudio_server.start()
    assert code == 3, down  # success with warnings
    assert down["stages"]["pull"]["status"] == down["stages"]["push"]["status"] == "warning"
    assert down["stages"]["select"]["counts"]["selected"] == 30  # the run went on
    assert any("unreachable" in warning for warning in down["warnings"])
    code, up = _run(root, labelstudio_server)
    assert code == 0, up
    assert up["stages"]["push"]["status"] == "ok" and up["stages"]["push"]["counts"]["pushed"] == 30
    assert up["stages"]["push"]["counts"]["written_to_file"] == 0
    assert up["stages"]["select"]["counts"]["selected"] == 0
    examples = _server_examples(labelstudio_server, root)
    assert len(examples) == len(set(examples)) == 30


def test_sigkill_in_the_middle_of_push_then_rerun(
    tmp_path: Path, tiny_model_dir: Path, labelstudio_server: LabelStudioServer
) -> None:
    root = _project(tmp_path / "p", tiny_model_dir, "nightly-kill-push", chunk=10)
    code, _ = _run(root, labelstudio_server, CURATE_FAULT="kill-after-import:2")
    assert code == -9
    conn = sqlite3.connect(root / "curation-data" / "curate.db")
    recorded = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    conn.close()
    assert recorded == 10  # the second chunk reached the server but not the store
    code, rerun = _run(root, labelstudio_server)
    assert code == 0, rerun
    assert rerun["stages"]["select"]["counts"]["selected"] == 0
    examples = _server_examples(labelstudio_server, root)
    assert len(examples) == len(set(examples)) == 30
    conn = sqlite3.connect(root / "curation-data" / "curate.db")
    assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 30
    conn.close()
