"""`curate run`: idempotent, resumable after SIGKILL at any stage, one at a time."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from curation.config import load_config
from curation.nightly import EXIT_LOCKED, EXIT_WARNINGS, STAGES, run_lock

CLI = [sys.executable, "-m", "curation.cli"]
LABELS = ("negative", "neutral", "positive")
LANGS = ("en", "es", "fr")


@pytest.fixture()
def project(tmp_path: Path, tiny_model_dir: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with open(inbox / "seed.jsonl", "w") as handle:
        for i in range(60):
            row = {
                "id": f"s{i}",
                "text": f"seed text {i} about {LANGS[i % 3]} things",
                "language": LANGS[i % 3],
                "label": LABELS[(i // 3) % 3],
            }
            handle.write(json.dumps(row) + "\n")
    with open(inbox / "pool.jsonl", "w") as handle:
        for i in range(240):
            row = {
                "id": f"p{i}",
                "text": f"pool text number {i} in {LANGS[i % 3]}",
                "language": LANGS[i % 3],
            }
            handle.write(json.dumps(row) + "\n")
    (tmp_path / "curate.toml").write_text(
        f"""
[embedding]
model = "{tiny_model_dir}"
[languages]
detect = false
[labels]
names = ["negative", "neutral", "positive"]
[selection]
allocation = "equal"
control_share = 0.0
# The tiny random model maps these look-alike texts to near-identical vectors: the guard off.
max_similarity = 1.0
[run]
inbox = ["inbox"]
queue_target = 30
"""
    )
    return tmp_path


def curate_run(cwd: Path, *args: str, env: dict | None = None) -> tuple[int, dict | None, str]:
    done = subprocess.run(
        [*CLI, "run", "--json", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    payload = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, payload, done.stderr


def state(cwd: Path) -> dict:
    conn = sqlite3.connect(cwd / "curation-data" / "curate.db")
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "examples": one("SELECT COUNT(*) FROM examples"),
            "labels": one("SELECT COUNT(*) FROM labels"),
            "embedded": one("SELECT COUNT(*) FROM embeddings"),
            "files": one("SELECT COUNT(*) FROM ingested_files"),
            "versions": one("SELECT COUNT(*) FROM dataset_versions"),
            "selected": one("SELECT COUNT(*) FROM round_items"),
            "distinct_selected": one("SELECT COUNT(DISTINCT example_id) FROM round_items"),
            "evaluations": one("SELECT COUNT(*) FROM evaluations"),
            "tasks": one("SELECT COUNT(*) FROM tasks"),
        }
    finally:
        conn.close()


EXPECTED = {
    "examples": 300,
    "labels": 60,
    "embedded": 300,
    "files": 2,
    "versions": 1,
    "selected": 30,
    "distinct_selected": 30,
    # One: later runs over the same labels reuse it (same fingerprint), never record it twice.
    "evaluations": 1,
    "tasks": 30,
}


@pytest.mark.slow
def test_two_runs_in_a_row_the_second_does_nothing(project: Path) -> None:
    code, first, _ = curate_run(project)
    assert code == EXIT_WARNINGS  # no Label Studio configured: success with warnings
    assert first["status"] == "warnings" and list(first["stages"]) == list(STAGES)
    stages = first["stages"]
    assert stages["ingest"]["counts"]["added"] == 300
    assert stages["embed"]["counts"]["embedded"] == 300
    assert stages["curate"]["counts"]["version"] == 1 and stages["curate"]["counts"]["written"]
    assert stages["select"]["counts"]["selected"] == 30
    assert stages["select"]["counts"]["per_language"] == {"en": 10, "es": 10, "fr": 10}
    assert len(stages["select"]["counts"]["proxy_model_version"]) == 16  # the proxy was fitted
    assert stages["evaluate"]["counts"]["labels"] == 60
    assert stages["evaluate"]["counts"]["reused_evaluation"] is None
    assert stages["pull"]["status"] == "skipped"  # no server: a warning
    # ... and push writes Label Studio's import file instead: written to file, not pushed.
    assert stages["push"]["status"] == "ok"
    assert stages["push"]["counts"]["pushed"] == 0
    assert stages["push"]["counts"]["written_to_file"] == 30
    assert stages["push"]["message"] == (
        "no Label Studio configured (LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY): 30 task(s) "
        "written to file, not pushed (import the file into Label Studio, or configure it)"
    )
    first_report = (
        project / "curation-data" / "nightly" / first["run_id"] / "report.md"
    ).read_text()
    assert "| push | ok | pushed 0, written_to_file 30, rounds 1," in first_report
    (import_file,) = stages["push"]["counts"]["files"]
    assert len(json.loads(Path(import_file).read_text())) == 30
    assert state(project) == EXPECTED
    code, second, _ = curate_run(project)
    assert code == EXIT_WARNINGS
    counts = {name: stage["counts"] for name, stage in second["stages"].items()}
    assert counts["ingest"]["files"] == 0
    assert counts["embed"]["embedded"] == 0
    assert counts["curate"]["written"] is False
    assert counts["select"]["selected"] == 0 and counts["select"]["pending_before"] == 30
    # The same labels: the stored evaluation is reused, and a full queue needs no proxy at all.
    assert counts["evaluate"]["reused_evaluation"] == 1
    assert (
        second["stages"]["evaluate"]["message"]
        == "labels unchanged since evaluation 1: not recomputed"
    )
    assert (
        counts["evaluate"]["per_language"] == first["stages"]["evaluate"]["counts"]["per_language"]
    )
    assert counts["select"]["proxy_model_version"] is None
    assert counts["push"]["pushed"] == 0 and counts["push"]["rounds"] == 0
    assert counts["push"]["written_to_file"] == 0
    assert state(project) == EXPECTED
    report = (project / "curation-data" / "nightly" / second["run_id"] / "report.md").read_text()
    assert "| select | ok |" in report and "## Warnings" in report
    log_lines = (project / "curation-data" / "nightly" / second["run_id"] / "run.log").read_text()
    assert "stage select: ok" in log_lines


@pytest.mark.slow
def test_dry_run_writes_nothing(project: Path) -> None:
    code, payload, _ = curate_run(project, "--dry-run")
    assert code == EXIT_WARNINGS and payload["dry_run"]
    assert payload["stages"]["ingest"]["counts"]["files"] == 2
    assert not (project / "curation-data").exists()
    curate_run(project)
    db = project / "curation-data" / "curate.db"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    runs = sorted((project / "curation-data" / "nightly").iterdir())
    (project / "inbox" / "more.jsonl").write_text(json.dumps({"text": "new", "language": "en"}))
    code, payload, _ = curate_run(project, "--dry-run")
    assert payload["stages"]["ingest"]["counts"]["files"] == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert sorted((project / "curation-data" / "nightly").iterdir()) == runs


@pytest.mark.slow
def test_corrupt_inbox_file_is_quarantined_and_the_run_continues(project: Path) -> None:
    (project / "inbox" / "broken.csv").write_bytes(b"id,body\n1,hello\n")
    code, payload, _ = curate_run(project)
    assert code == EXIT_WARNINGS
    assert payload["stages"]["ingest"]["counts"]["unreadable_files"] == 1
    assert payload["stages"]["select"]["counts"]["selected"] == 30
    assert any("broken.csv" in warning for warning in payload["warnings"])
    conn = sqlite3.connect(project / "curation-data" / "curate.db")
    rows = conn.execute("SELECT field, reason FROM quarantine").fetchall()
    conn.close()
    broken = project / "inbox" / "broken.csv"
    assert rows == [("file", f"{broken}: no 'text' column (columns: id, body)")]
    code, again, _ = curate_run(project)
    assert again["stages"]["ingest"]["counts"]["files"] == 0  # not retried every night


def test_a_second_run_while_one_holds_the_lock_exits_locked(project: Path) -> None:
    config = load_config(project / "curate.toml")
    with run_lock(config.store.path):
        code, payload, err = curate_run(project)
    assert code == EXIT_LOCKED and payload is None
    assert f"pid {os.getpid()}" in err and "another `curate run` holds" in err


def test_stale_lock_file_of_a_dead_process_does_not_block(project: Path) -> None:
    config = load_config(project / "curate.toml")
    config.store.path.mkdir(parents=True)
    (config.store.path / "run.lock").write_text("pid 999999 since yesterday")
    with run_lock(config.store.path):
        assert "pid" in (config.store.path / "run.lock").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES[:-1])
def test_sigkill_at_each_stage_boundary_then_rerun_completes_exactly(
    project: Path, stage: str
) -> None:
    code, _, _ = curate_run(project, env={"CURATE_KILL_AFTER_STAGE": stage})
    assert code == -9
    code, payload, _ = curate_run(project)
    assert code == EXIT_WARNINGS, payload
    assert state(project) == EXPECTED
    conn = sqlite3.connect(project / "curation-data" / "curate.db")
    statuses = [row[0] for row in conn.execute("SELECT status FROM runs ORDER BY started_at")]
    conn.close()
    assert statuses == ["interrupted", "warnings"]


@pytest.mark.slow
def test_a_killed_runs_running_step_is_marked_interrupted(project: Path) -> None:
    code, _, _ = curate_run(project)
    assert code == EXIT_WARNINGS
    # A run SIGKILLed inside its embed stage leaves these two rows behind.
    conn = sqlite3.connect(project / "curation-data" / "curate.db")
    with conn:
        conn.execute(
            "INSERT INTO runs (id, started_at, status, pid, dry_run) "
            "VALUES ('killed', '2026-11-28T02:30:00Z', 'running', 999999, 0)"
        )
        conn.execute(
            "INSERT INTO run_steps (run_id, stage, started_at, status) "
            "VALUES ('killed', 'embed', '2026-11-28T02:30:05Z', 'running')"
        )
    conn.close()
    code, _, _ = curate_run(project)
    assert code == EXIT_WARNINGS
    conn = sqlite3.connect(project / "curation-data" / "curate.db")
    run = conn.execute("SELECT status FROM runs WHERE id = 'killed'").fetchone()
    step = conn.execute("SELECT status FROM run_steps WHERE run_id = 'killed'").fetchall()
    running = conn.execute("SELECT COUNT(*) FROM run_steps WHERE status = 'running'").fetchone()
    conn.close()
    assert run == ("interrupted",) and step == [("interrupted",)] and running == (0,)


@pytest.mark.slow
def test_train_stage_runs_when_enough_new_labels_arrived(project: Path, tiny_model_dir: Path):
    backbone = tiny_model_dir.parent / "backbone"
    with open(project / "curate.toml", "a") as handle:
        handle.write(
            "train_after_new_labels = 50\n"
            f'[training]\nbackbone = "{backbone}"\n'
            "[training.data]\nbatch_size = 8\neffective_batch_size = 8\nmax_length = 16\n"
            "[training.evaluation]\nevery = 2\n[training.budget]\nmax_steps = 4\n"
        )
    code, first, err = curate_run(project)
    assert code == EXIT_WARNINGS, err
    train = first["stages"]["train"]
    assert train["status"] == "ok", train
    assert train["counts"]["new_labels"] == 60 and train["counts"]["run_id"]
    assert train["counts"]["stopped_because"].startswith("max_steps")
    code, second, _ = curate_run(project)
    assert second["stages"]["train"]["status"] == "skipped"
    assert second["stages"]["train"]["counts"]["new_labels"] == 0


@pytest.mark.slow
def test_train_stage_uses_the_setting_curate_tune_stored(project: Path, tiny_model_dir: Path):
    backbone = tiny_model_dir.parent / "backbone"
    with open(project / "curate.toml", "a") as handle:
        handle.write(
            "train_after_new_labels = 50\n"
            f'[training]\nbackbone = "{backbone}"\n'
            "[training.data]\nbatch_size = 8\neffective_batch_size = 8\nmax_length = 16\n"
            "[training.evaluation]\nevery = 2\n[training.budget]\nmax_steps = 2\n"
        )
    tuning = project / "curation-data" / "tuning"
    tuning.mkdir(parents=True)
    best = {
        "objective": "mean",
        "value": 0.5,
        "params": {"r": 16, "lr": 0.003, "layer_decay": 0.8, "sampling_alpha": 0.4},
        "trial": 4,
        "run_id": "earlier",
        "trials_complete": 5,
    }
    (tuning / "best.json").write_text(json.dumps(best), encoding="utf-8")
    code, first, err = curate_run(project)
    train = first["stages"]["train"]
    assert train["status"] == "ok", (train, err)
    assert train["counts"]["tuned_trial"] == 4
    saved = json.loads(
        (
            project / "curation-data" / "runs" / train["counts"]["run_id"] / "training_config.json"
        ).read_text("utf-8")
    )
    assert (saved["adapter"]["r"], saved["optimizer"]["lr"]) == (16, 0.003)
    assert (saved["optimizer"]["layer_decay"], saved["data"]["sampling_alpha"]) == (0.8, 0.4)
