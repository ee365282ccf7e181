"""`curate run --dry-run` says what the real run then does: the same select count."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.curation.test_nightly import curate_run, project  # noqa: F401 - the fixture


def _digest(folder: Path) -> dict[str, str]:
    """Every file's content, but SQLite's shared-memory index and an empty WAL (a reader of a
    WAL database makes both)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not path.name.endswith("-shm")
        and not (path.name.endswith("-wal") and path.stat().st_size == 0)
    }


@pytest.mark.slow
def test_dry_run_and_real_run_select_the_same(project: Path) -> None:  # noqa: F811
    # A fresh deployment: the dry run must count what ingest and embed will add (it said 0).
    _, dry, _ = curate_run(project, "--dry-run")
    assert not (project / "curation-data").exists()  # still writes nothing
    assert dry["stages"]["ingest"]["counts"]["added"] == 300
    assert dry["stages"]["embed"]["counts"]["would_embed"] == 300
    assert dry["stages"]["select"]["counts"]["selected"] == 30
    assert dry["stages"]["select"]["counts"]["per_language"] == {"en": 10, "es": 10, "fr": 10}
    assert dry["stages"]["select"]["message"] == (
        "would select 30 (planned by the allocator over the examples after ingest and embed; "
        "the near-duplicate guard and the stopping rule may take fewer)"
    )
    assert dry["stages"]["push"]["message"].startswith("would write round(s) the new one to")
    _, real, _ = curate_run(project)
    assert real["stages"]["select"]["counts"]["selected"] == 30
    assert real["stages"]["select"]["counts"]["per_language"] == {"en": 10, "es": 10, "fr": 10}

    # A later night: new files and a larger queue; 10 pending per language, targets 15 each.
    with open(project / "inbox" / "more.jsonl", "w") as handle:
        for i in range(9):
            row = {"id": f"m{i}", "text": f"more text {i}", "language": ("en", "es", "fr")[i % 3]}
            handle.write(json.dumps(row) + "\n")
    toml = project / "curate.toml"
    toml.write_text(toml.read_text().replace("queue_target = 30", "queue_target = 45"))
    store = project / "curation-data"
    before = _digest(store)
    _, dry, _ = curate_run(project, "--dry-run")
    assert _digest(store) == before  # the dry run ingested into a scratch copy only
    assert dry["stages"]["ingest"]["counts"]["added"] == 9
    assert dry["stages"]["embed"]["counts"]["would_embed"] == 9
    assert dry["stages"]["select"]["counts"]["selected"] == 15
    assert dry["stages"]["select"]["counts"]["per_language"] == {"en": 5, "es": 5, "fr": 5}
    _, real, _ = curate_run(project)
    assert real["stages"]["select"]["counts"]["selected"] == 15
    assert real["stages"]["select"]["counts"]["per_language"] == {"en": 5, "es": 5, "fr": 5}

    # The queue is full: both say 0.
    _, dry, _ = curate_run(project, "--dry-run")
    _, real, _ = curate_run(project)
    assert dry["stages"]["select"]["counts"]["selected"] == 0
    assert real["stages"]["select"]["counts"]["selected"] == 0

    # Every example has its vector: the dry run selects for real, on a scratch copy.
    toml.write_text(toml.read_text().replace("queue_target = 45", "queue_target = 60"))
    before = _digest(store)
    _, dry, _ = curate_run(project, "--dry-run")
    assert _digest(store) == before
    assert dry["stages"]["select"]["message"] == (
        "would select 15 (selected on a scratch copy of the store)"
    )
    assert dry["stages"]["select"]["counts"]["per_language"] == {"en": 5, "es": 5, "fr": 5}
    _, real, _ = curate_run(project)
    assert real["stages"]["select"]["counts"]["selected"] == 15
    assert real["stages"]["select"]["counts"]["per_language"] == {"en": 5, "es": 5, "fr": 5}


@pytest.mark.slow
def test_a_dry_run_with_the_ray_engine_writes_nothing_and_needs_no_cluster(
    project: Path,  # noqa: F811
) -> None:
    """The Ray engine writes the pool's Parquet shards into the store folder, which a dry run's
    scratch copy shares: a dry run runs on the local engine instead (here the configured head
    does not even answer)."""
    import socket

    code, _, err = curate_run(project)
    assert code in (0, 3), err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    toml = project / "curate.toml"
    toml.write_text(toml.read_text() + f'[engine]\nkind = "ray"\naddress = "127.0.0.1:{port}"\n')
    (project / "inbox" / "more.jsonl").write_text(
        "".join(
            json.dumps({"id": f"m{i}", "text": f"more {i}", "language": "en"}) + "\n"
            for i in range(4)
        )
    )
    store = project / "curation-data"
    before = _digest(store)
    code, dry, err = curate_run(project, "--dry-run")
    assert code in (0, 3), err
    assert _digest(store) == before
    assert not (store / "pool").exists()
    assert dry["stages"]["ingest"]["counts"]["added"] == 4
    assert dry["stages"]["embed"]["counts"]["would_embed"] == 4
