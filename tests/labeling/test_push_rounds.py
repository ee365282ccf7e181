"""`curate push` sends every round not pushed yet, oldest first, and names the rounds it leaves
(issue 16: it pushed only the latest round and skipped an older one silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

import labeling.client
from curation.store import Store
from labeling.push import push, write_import_file
from tests.conftest import run_cli as run  # noqa: E402
from tests.labeling.helpers import FakeLabelStudio, add_round, build_store


def _statuses(store: Store) -> dict[int, str]:
    return dict(store.conn.execute("SELECT id, status FROM selection_rounds"))


def test_push_sends_every_unpushed_round_oldest_first(tmp_path: Path) -> None:
    config, first = build_store(tmp_path, round_items=["en-04", "de-04"])
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        second = add_round(store, ["ar-04", "hi-04", "en-05"])
        result = push(store, config, fake)
        statuses = _statuses(store)
    assert [(r["round_id"], r["pushed"]) for r in result["rounds"]] == [(first, 2), (second, 3)]
    assert result["pushed"] == 5 and result["not_pushed"] == []
    assert statuses == {first: "pushed", second: "pushed"}
    served = [fake.tasks[i]["data"]["example_id"] for i in sorted(fake.tasks)]
    assert served == ["en-04", "de-04", "ar-04", "hi-04", "en-05"]
    with Store(config.store.path) as store:  # all pushed: the latest again, nothing new
        again = push(store, config, fake)
    assert [(r["round_id"], r["pushed"]) for r in again["rounds"]] == [(second, 0)]


def test_a_round_written_to_a_file_is_named_with_the_command_that_pushes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, first = build_store(tmp_path, round_items=["en-04", "de-04"])
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        write_import_file(store, config, tmp_path / "round1.json")
        second = add_round(store, ["ar-04"])
    monkeypatch.setattr(
        labeling.client.LabelStudioClient, "from_config", classmethod(lambda cls, config: fake)
    )
    code, out, err = run(capsys, "push")
    assert code == 0, err
    assert (
        f"round {first} not pushed: written to a Label Studio import file by `curate push --to`; "
        f"import that file, or push the round here with `curate push --round {first}`"
    ) in out
    assert [t["data"]["example_id"] for t in fake.tasks.values()] == ["ar-04"]
    code, out, _ = run(capsys, "push", "--round", str(first))
    assert code == 0 and "not pushed" not in out
    assert sorted(t["data"]["round_id"] for t in fake.tasks.values()) == [first, first, second]
    with Store(config.store.path) as store:
        assert push(store, config, fake)["not_pushed"] == []


def test_the_project_config_follows_the_pre_annotation_mode(tmp_path: Path) -> None:
    config, _ = build_store(tmp_path, round_items=["en-04", "de-04"])
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        project_id = push(store, config, fake)["project_id"]
        assert "$model_hint" in fake.projects[project_id]["label_config"]
        tasks = [fake.tasks[i] for i in sorted(fake.tasks)]
        assert [t["data"]["model_hint"] for t in tasks] == ["", "model's guess: negative"]
        assert [t["predictions"][0]["result"] for t in tasks] == [[], []]
        preselect = config.model_copy(
            update={
                "labelstudio": config.labelstudio.model_copy(update={"pre_annotation": "preselect"})
            }
        )
        push(store, preselect, fake)
    assert "$model_hint" not in fake.projects[project_id]["label_config"]
