"""run.log holds the records of every wing during a run, as JSON lines with tracebacks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import curation.nightly_steps
import labeling.push
import training.data
from curation.config import load_config
from curation.nightly import EXIT_FAILED, execute
from curation.run_context import RunContext, StageResult
from tests.curation.test_nightly import project  # noqa: F401 - the fixture


def test_run_log_has_every_wings_records_as_json_with_tracebacks(
    project: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with open(project / "curate.toml", "a") as handle:
        handle.write('log_format = "json"\n')  # the file ends in its [run] section

    def train(ctx: RunContext) -> StageResult:
        # The loggers of the wings' own modules, as a real stage would reach them.
        training.data.log.warning("a warning from the training wing: %d rows dropped", 3)
        labeling.push.log.warning("a warning from the labeling wing")
        logging.getLogger("selection.hybrid").warning("a warning from selection")
        logging.getLogger("curation.pipeline").info("an info record from curation")
        raise RuntimeError("the adapter ran out of patience")

    monkeypatch.setattr(curation.nightly_steps, "stage_train", train)
    result = execute(load_config(project / "curate.toml"))
    assert result["exit_code"] == EXIT_FAILED
    run_log = project / "curation-data" / "nightly" / result["run_id"] / "run.log"
    records = [json.loads(line) for line in run_log.read_text(encoding="utf-8").splitlines()]
    assert all(record["run_id"] == result["run_id"] and record["time"] for record in records)
    seen = [(record["level"], record["name"], record["message"]) for record in records]
    for expected in [
        ("WARNING", "curate.training", "a warning from the training wing: 3 rows dropped"),
        ("WARNING", "curate.labeling", "a warning from the labeling wing"),
        ("WARNING", "selection.hybrid", "a warning from selection"),
        ("INFO", "curation.pipeline", "an info record from curation"),
    ]:
        assert expected in seen
    (failure,) = [record for record in records if record["level"] == "ERROR"]
    assert failure["name"] == "curate.run" and failure["stage"] == "train"
    assert failure["message"] == "stage train failed: RuntimeError: the adapter ran out of patience"
    assert failure["exc_info"].startswith("Traceback (most recent call last):\n")
    assert failure["exc_info"].endswith("RuntimeError: the adapter ran out of patience")
    assert "in train\n" in failure["exc_info"]  # the frame that raised
    # Logging is as it was after the run.
    assert logging.getLogger("curate").handlers == []
    assert logging.getLogger("labeling").propagate
