"""What `curate run` prints on stderr and writes to run.log (a real `python -m curation.cli`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from curation.nightly_steps import NOT_CONFIGURED
from tests.curation.test_nightly import project  # noqa: F401 - the fixture

CLI = [sys.executable, "-m", "curation.cli"]
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def _curate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True)


def _messages(stderr: str) -> list[str]:
    """stderr's log lines without their time stamps; any other line as it is."""
    return [re.sub(f"^{STAMP} ", "", line) for line in stderr.splitlines()]


def _break_the_snapshot_folder(root: Path) -> Path:
    """A file where the curate stage writes its dataset versions: that stage fails."""
    root.joinpath("curation-data").mkdir()
    datasets = root / "curation-data" / "datasets"
    datasets.write_text("not a folder\n")
    return datasets


@pytest.mark.slow
def test_quiet_run_prints_only_warnings_and_no_progress_bars(project: Path) -> None:  # noqa: F811
    done = _curate(project, "--quiet", "run")
    assert done.returncode == 3, done.stderr
    # The curate stage wrote a dataset version (the datasets library draws bars for that).
    assert (project / "curation-data" / "datasets" / "v0001" / "data.parquet").is_file()
    assert _messages(done.stderr) == [f"WARNING pull: {NOT_CONFIGURED}"]


@pytest.mark.slow
def test_a_failing_stage_is_one_line_on_stderr_and_its_traceback_is_in_run_log(
    project: Path,  # noqa: F811
) -> None:
    datasets = _break_the_snapshot_folder(project)
    failure = f"stage curate failed: FileExistsError: [Errno 17] File exists: '{datasets}'"
    done = _curate(project, "--quiet", "run")
    assert done.returncode == 1
    assert _messages(done.stderr) == [f"WARNING pull: {NOT_CONFIGURED}", f"ERROR {failure}"]
    (run_dir,) = (project / "curation-data" / "nightly").iterdir()
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert f"ERROR {failure}\nTraceback (most recent call last):\n" in log
    # --debug shows the traceback on stderr too.
    done = _curate(project, "--debug", "run")
    assert done.returncode == 1
    assert f"ERROR {failure}\nTraceback (most recent call last):\n" in done.stderr
