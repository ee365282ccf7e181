"""`curate push --to` / `curate pull --from` / `curate adjudicate`: the offline round trip."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from curation.store import Store
from tests.conftest import run_cli as run  # noqa: E402
from tests.conftest import run_cli_json as run_json  # noqa: E402
from tests.labeling.helpers import TEXTS, build_store, export_annotation, export_task


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    build_store(tmp_path, labelstudio="annotations_per_language = { ar = 3 }\ngold_share = 0.2")
    return tmp_path


def _as_label_studio_export(tasks: list[dict], votes: dict[str, list]) -> list[dict]:
    """What Label Studio would export after importing `tasks` and collecting `votes`."""
    exported, annotation_id = [], 100
    for task_id, task in enumerate(tasks, start=1):
        annotations = []
        for user, label in votes.get(task["data"]["example_id"], []):
            annotation_id += 1
            annotations.append(export_annotation(annotation_id, user, label, cancelled=not label))
        exported.append(export_task(task_id, task["data"], annotations))
    return exported


def test_offline_round_trip(offline: Path, capsys: pytest.CaptureFixture) -> None:
    result = run_json(capsys, "push", "--to", "out/tasks.json")
    assert {"pushed", "already_pushed", "project_id"} <= result.keys()
    assert result["pushed"] == 30 and result["already_pushed"] == 0 and result["gold"] == 6
    tasks = json.loads(Path("out/tasks.json").read_text(encoding="utf-8"))
    assert len(tasks) == 30
    assert all(set(t) == {"data", "predictions"} for t in tasks)
    config = ET.fromstring(Path(result["label_config"]).read_text(encoding="utf-8"))
    assert [c.get("value") for c in config.iter("Choice")] == ["negative", "neutral", "positive"]
    arabic = next(t for t in tasks if t["data"]["example_id"] == "ar-04")
    assert arabic["data"]["text"] == TEXTS["ar"][4] and arabic["data"]["language"] == "ar"
    assert 'dir="rtl"' in arabic["data"]["html"] and 'lang="ar"' in arabic["data"]["html"]
    # Writing again writes the same tasks and records nothing new.
    again = run_json(capsys, "push", "--to", "out/tasks.json")
    assert again["pushed"] == 0 and again["already_pushed"] == 30
    assert json.loads(Path("out/tasks.json").read_text(encoding="utf-8")) == tasks

    votes = {
        "en-04": [(2, "positive")],
        "ar-04": [(1, "neutral"), (2, "neutral"), (3, "negative")],
        "ar-05": [(1, "neutral"), (2, "negative")],  # 2 of 3 answers: pending
        "de-04": [(2, None)],  # skipped by its only annotator
        "hi-04": [(2, "neutral")],
    }
    export = Path("export.json")
    export.write_text(json.dumps(_as_label_studio_export(tasks, votes)), encoding="utf-8")
    pulled = run_json(capsys, "pull", "--from", str(export))
    assert {"annotations", "labels_resolved", "needs_adjudication", "per_language"} <= pulled.keys()
    assert pulled["annotations"] == 8
    assert pulled["labels_resolved"] == 3  # en-04, ar-04, hi-04
    assert pulled["needs_adjudication"] == 1  # de-04: everyone skipped
    assert pulled["per_language"]["ar"]["labels"] == 1
    assert set(pulled["per_language"]["ar"]) >= {"labels", "agreement"}

    queue = run_json(capsys, "adjudicate")
    assert [row["example_id"] for row in queue["rows"]] == ["de-04"]
    assert queue["rows"][0]["reason"] == "skipped"
    settled = run_json(capsys, "adjudicate", "--set", "de-04", "neutral")
    assert settled["label"] == "neutral" and settled["was_queued"]
    assert run_json(capsys, "adjudicate")["rows"] == []
    # Pulling the same export again changes nothing and keeps the adjudicated label.
    same = run_json(capsys, "pull", "--from", str(export))
    assert same["new"] == same["updated"] == same["deleted"] == same["labels_resolved"] == 0
    with Store(offline / "store") as store:
        row = store.conn.execute("SELECT label, source FROM labels WHERE example_id = 'de-04'")
        assert tuple(row.fetchone()) == ("neutral", "adjudicated")
        projects = {r[0] for r in store.conn.execute("SELECT DISTINCT project_id FROM tasks")}
    assert projects == {0, 7}  # the file, then the project the export came from

    code, out, _ = run(capsys, "pull", "--from", str(export))  # the human-readable tables
    assert code == 0 and "agreement per language" in out


def test_adjudicate_rejects_unknown_labels_and_examples(offline: Path, capsys) -> None:
    code, _, err = run(capsys, "adjudicate", "--set", "en-04", "maybe")
    assert code == 2 and "unknown label" in err
    code, _, err = run(capsys, "adjudicate", "--set", "nope", "neutral")
    assert code == 2 and "no example" in err


def test_push_without_a_server_says_how_to_configure_one(offline: Path, capsys) -> None:
    code, _, err = run(capsys, "push")
    assert code == 2 and "LABEL_STUDIO_URL" in err and "--to" in err


def test_pull_rejects_a_file_that_is_not_an_export(offline: Path, capsys) -> None:
    Path("bad.json").write_text('{"not": "a list"}', encoding="utf-8")
    code, _, err = run(capsys, "pull", "--from", "bad.json")
    assert code == 2 and "not a Label Studio JSON export" in err
    code, _, err = run(capsys, "pull", "--from", "missing.json")
    assert code == 2


def test_offline_push_writes_every_unpushed_round_oldest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`push --to` without --round: every round not pushed yet, not only the latest (issue 16)."""
    from tests.labeling.helpers import add_round

    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    build_store(tmp_path, round_items=["en-04", "de-04", "ar-04"])
    with Store(tmp_path / "store") as store:
        second = add_round(store, ["en-05", "hi-04"])
    result = run_json(capsys, "push", "--to", "both.json")
    assert (result["round_ids"], result["tasks"], result["pushed"]) == ([1, second], 5, 5)
    tasks = json.loads(Path("both.json").read_text(encoding="utf-8"))
    assert [(t["data"]["round_id"], t["data"]["example_id"]) for t in tasks] == [
        (1, "en-04"),
        (1, "de-04"),
        (1, "ar-04"),
        (2, "en-05"),
        (2, "hi-04"),
    ]
    with Store(tmp_path / "store") as store:
        statuses = dict(store.conn.execute("SELECT id, status FROM selection_rounds"))
        third = add_round(store, ["de-05", "en-04"])  # en-04 again: its task exists already
    assert statuses == {1: "exported", 2: "exported"}
    code, out, _ = run(capsys, "push", "--to", "third.json")
    assert code == 0
    assert out.startswith(
        "wrote 2 tasks of round 3 to third.json (1 new, 1 written before, 0 gold)"
    )
    # Everything written: the latest round again, nothing new.
    again = run_json(capsys, "push", "--to", "again.json")
    assert (again["round_ids"], again["pushed"], again["already_pushed"]) == ([third], 0, 2)
    code, out, _ = run(capsys, "push", "--to", "first-again.json", "--round", "1")
    assert code == 0 and "of round 1 to first-again.json (0 new, 3 written before" in out


PRESELECTED_NEGATIVE = [
    {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["negative"]}}
]


@pytest.mark.parametrize(
    ("mode", "hints", "results"),
    [
        ("hint", ["", "model's guess: negative"], [[], []]),
        ("preselect", None, [[], PRESELECTED_NEGATIVE]),
        ("off", None, [[], []]),
    ],
)
def test_pre_annotation_modes_give_these_tasks(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    hints: list[str] | None,
    results: list[list],
) -> None:
    """The proxy guessed `negative` for de-04 and nothing for en-04 (rank 1, odd)."""
    from labeling.interface import task_html

    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    build_store(tmp_path, round_items=["en-04", "de-04"], labelstudio=f'pre_annotation = "{mode}"')
    run_json(capsys, "push", "--to", "tasks.json")
    expected = []
    for position, (language, rank) in enumerate((("en", 1), ("de", 2))):
        text = TEXTS[language][4]
        data = {
            "text": text,
            "html": task_html(text, language),
            "language": language,
            "example_id": f"{language}-04",
            "round_id": 1,
            "selection_score": 1.0 - rank / 100,
            "rank": rank,
        }
        if hints is not None:
            data["model_hint"] = hints[position]
        expected.append(
            {
                "data": data,
                "predictions": [
                    {
                        "model_version": "proxy-v1",
                        "score": position / 2,
                        "result": results[position],
                    }
                ],
            }
        )
    assert json.loads(Path("tasks.json").read_text(encoding="utf-8")) == expected
    xml = Path("tasks.label_config.xml").read_text(encoding="utf-8")
    assert ("$model_hint" in xml) == (mode == "hint")
