"""`curate run` and its inbox: a file that cannot be read costs that file only, once."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import curation.ingest
import curation.nightly
from curation.config import load_config
from curation.nightly import EXIT_WARNINGS, execute
from curation.nightly_steps import NOT_CONFIGURED
from tests.curation.test_nightly import curate_run, project  # noqa: F401 - the fixture

KEEP = "(skipped, without a warning, until its content changes)"


def _quarantine(root: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(root / "curation-data" / "curate.db")
    try:
        return conn.execute("SELECT file, field, reason FROM quarantine ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.fixture()
def crashing_inbox(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """Two inbox files that fail the way real ones did: a reader crash that is not one of our
    errors (deeply nested JSON raised RecursionError), and a file that cannot be opened (a
    permission error; simulated, since the tests may run as root)."""
    (project / "inbox" / "deep.jsonl").write_text('{"text": [[[[]]]]}\n')
    (project / "inbox" / "locked.csv").write_text("text\nhello\n")
    read_rows = curation.ingest.read_rows

    def crashing_read_rows(path: Path, **kwargs: object) -> Iterator:
        if path.name == "deep.jsonl":
            raise RecursionError("maximum recursion depth exceeded")
        yield from read_rows(path, **kwargs)

    file_sha256 = curation.nightly.file_sha256

    def unopenable(path: str, **kwargs: object) -> str:
        if Path(path).name == "locked.csv":
            raise PermissionError(13, "Permission denied", path)
        return file_sha256(path, **kwargs)

    monkeypatch.setattr(curation.ingest, "read_rows", crashing_read_rows)
    monkeypatch.setattr(curation.nightly, "file_sha256", unopenable)
    return project


def test_unreadable_inbox_files_are_quarantined_once_and_the_run_goes_on(
    crashing_inbox: Path,
) -> None:
    root = crashing_inbox
    config = load_config(root / "curate.toml")
    deep, locked = root / "inbox" / "deep.jsonl", root / "inbox" / "locked.csv"
    first = execute(config)
    assert first["exit_code"] == EXIT_WARNINGS, first
    ingest = first["stages"]["ingest"]
    assert ingest["status"] == "ok"
    assert {k: v for k, v in ingest["counts"].items() if k != "seconds"} == {
        "files": 4,
        "read": 300,
        "added": 300,
        "duplicates": 0,
        "quarantined": 2,
        "unreadable_files": 2,
        "skipped_unreadable": 0,
    }
    assert first["stages"]["select"]["counts"]["selected"] == 30  # the later stages ran
    assert first["warnings"][:2] == [
        f"quarantined unreadable inbox file: {deep}: RecursionError: "
        f"maximum recursion depth exceeded {KEEP}",
        f"quarantined unreadable inbox file: {locked}: cannot be read: Permission denied {KEEP}",
    ]
    assert _quarantine(root) == [
        (str(deep), "file", f"{deep}: RecursionError: maximum recursion depth exceeded"),
        (str(locked), "file", f"{locked}: cannot be read: Permission denied"),
    ]

    # The next night: a new good file is ingested; the two bad ones are skipped, said so in the
    # report, and not warned about again.
    (root / "inbox" / "later.jsonl").write_text(
        "".join(json.dumps({"text": f"later {i}", "language": "en"}) + "\n" for i in range(3))
    )
    second = execute(config)
    ingest = second["stages"]["ingest"]
    assert ingest["counts"]["files"] == 1 and ingest["counts"]["added"] == 3
    assert ingest["counts"]["unreadable_files"] == 0
    assert ingest["counts"]["skipped_unreadable"] == 2
    message = (
        "2 inbox file(s) quarantined as unreadable by an earlier run skipped "
        "(warned once per file content; `curate quarantine` lists them)"
    )
    assert ingest["message"] == message
    assert not any("inbox file" in warning for warning in second["warnings"])
    report = Path(second["report"]).read_text(encoding="utf-8")
    assert "| ingest | ok | files 1, read 3, added 3," in report and message in report

    # Changed content is read again, and warned about again (once).
    deep.write_text('{"text": [[[[[[]]]]]]}\n')
    third = execute(config)
    assert third["stages"]["ingest"]["counts"]["unreadable_files"] == 1
    assert third["stages"]["ingest"]["counts"]["skipped_unreadable"] == 1
    assert [w for w in third["warnings"] if "inbox file" in w] == [
        f"quarantined unreadable inbox file: {deep}: RecursionError: "
        f"maximum recursion depth exceeded {KEEP}"
    ]


def test_a_fresh_deployment_with_an_empty_inbox_skips_select(project: Path) -> None:  # noqa: F811
    for path in (project / "inbox").iterdir():
        path.unlink()
    code, payload, err = curate_run(project)
    assert code == EXIT_WARNINGS, err  # only the warning that no Label Studio is configured
    assert payload["status"] == "warnings"
    select = payload["stages"]["select"]
    assert select["status"] == "skipped"
    assert select["message"] == "no embedded examples yet: nothing to select from"
    assert select["counts"]["selected"] == 0 and select["counts"]["pending_before"] == 0
    assert payload["stages"]["push"]["status"] == "ok"  # nothing skipped after it
    assert payload["warnings"] == [f"pull: {NOT_CONFIGURED}"]


def test_a_missing_inbox_folder_is_warned_about_by_name(project: Path) -> None:  # noqa: F811
    for path in (project / "inbox").iterdir():
        path.unlink()
    (project / "inbox").rmdir()
    code, payload, err = curate_run(project)
    assert code == EXIT_WARNINGS, err
    assert payload["warnings"][0] == (
        f"inbox {project / 'inbox'} does not exist: nothing read from it (see [run] inbox)"
    )
    assert payload["stages"]["ingest"]["counts"]["files"] == 0
