"""`[labelstudio] aggregation = "dawid_skene"` in a real pull: ties between a reliable and an
unreliable annotator resolve to the reliable one; per-annotator quality is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.store import Store
from tests.conftest import run_cli_json as run_json
from tests.labeling.helpers import LABELS, build_store, export_annotation, export_task


def _truth(example_id: str) -> str:
    return LABELS[int(example_id.split("-")[1]) % 3]


def _wrong(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % 3]


def _export(tasks: list[dict], tied: set[str]) -> list[dict]:
    """Annotators 1 and 2 answer the truth, 3 a wrong label; on `tied` tasks only 1 and 3
    answered (one vote each: a tie for majority vote)."""
    exported, annotation_id = [], 100
    for task_id, task in enumerate(tasks, start=1):
        example = task["data"]["example_id"]
        truth = _truth(example)
        answers = (
            [(1, truth), (3, _wrong(truth))]
            if example in tied
            else [(1, truth), (2, truth), (3, _wrong(truth))]
        )
        annotations = []
        for user, label in answers:
            annotation_id += 1
            annotations.append(export_annotation(annotation_id, user, label))
        exported.append(export_task(task_id, task["data"], annotations))
    return exported


@pytest.mark.parametrize("aggregation", ["majority", "dawid_skene"])
def test_ties_and_annotator_quality(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, aggregation: str
) -> None:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    build_store(
        tmp_path,
        labelstudio=f'annotations_per_task = 2\naggregation = "{aggregation}"\n'
        "label_issues_per_language = 0",
    )
    run_json(capsys, "push", "--to", "out/tasks.json")
    tasks = json.loads(Path("out/tasks.json").read_text(encoding="utf-8"))
    tied = {t["data"]["example_id"] for t in tasks[:6]}
    Path("export.json").write_text(json.dumps(_export(tasks, tied)), encoding="utf-8")
    pulled = run_json(capsys, "pull", "--from", "export.json")

    assert pulled["aggregation"] == aggregation
    quality = pulled["annotator_quality"]["annotators"]
    assert set(quality) == {"user:1", "user:2", "user:3"}
    assert quality["user:1"]["answers"] == len(tasks)
    assert quality["user:3"]["accuracy"] < 0.2 < 0.8 < quality["user:1"]["accuracy"]
    with Store(tmp_path / "store") as store:
        labels = dict(
            store.conn.execute("SELECT example_id, label FROM labels WHERE source='labelstudio'")
        )
        queued = dict(store.conn.execute("SELECT example_id, reason FROM adjudication_queue"))
        stored = store.conn.execute(
            "SELECT COUNT(*), MIN(method), MAX(method) FROM annotator_quality"
        ).fetchone()
    method = pulled["annotator_quality"]["method"]
    assert method == aggregation
    assert tuple(stored) == (3, method, method)
    untied = {t["data"]["example_id"] for t in tasks} - tied
    assert all(labels[e] == _truth(e) for e in untied)
    if aggregation == "majority":
        assert queued == {e: "tie" for e in tied}
        assert not tied & set(labels)
    else:
        assert queued == {}
        assert {e: labels[e] for e in tied} == {e: _truth(e) for e in tied}
