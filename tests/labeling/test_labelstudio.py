"""Push and pull against a real Label Studio (session server from conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

import labeling.client
from curation.config import Config
from curation.store import Store
from labeling.client import LabelStudioClient, LabelStudioUnavailable
from labeling.interface import choice_result
from labeling.push import push
from tests.labeling.conftest import REPO, LabelStudioServer
from tests.labeling.helpers import TEXTS, add_round, build_store

pytestmark = pytest.mark.labelstudio

AR3 = "annotations_per_language = { ar = 3 }"
LABELS = ("negative", "neutral", "positive")


from tests.conftest import run_cli as run  # noqa: E402
from tests.conftest import run_cli_json as run_json  # noqa: E402


@pytest.fixture()
def server(
    labelstudio_server: LabelStudioServer, monkeypatch: pytest.MonkeyPatch
) -> LabelStudioServer:
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", labelstudio_server.token)
    return labelstudio_server


@pytest.fixture()
def make_project(tmp_path: Path, request: pytest.FixtureRequest, server: LabelStudioServer):  # noqa: ANN201
    """A test store with one round, and a project title of its own on the shared server."""

    def make(labelstudio: str = "", **kwargs) -> tuple[Config, int]:  # noqa: ANN003
        # Label Studio titles are at most 50 characters.
        title = f"curate {request.node.name}"[:50]
        return build_store(tmp_path, title=title, labelstudio=labelstudio, **kwargs)

    return make


def _task_ids(config: Config) -> dict[str, int]:
    with Store(config.store.path) as store:
        return dict(store.conn.execute("SELECT example_id, task_id FROM tasks"))


def _server_examples(client: LabelStudioClient, project_id: int) -> list[str]:
    return [task.example_id for task in client.list_tasks(project_id)]


def _status(config: Config, round_id: int) -> str:
    with Store(config.store.path) as store:
        row = store.conn.execute("SELECT status FROM selection_rounds WHERE id = ?", (round_id,))
        return row.fetchone()[0]


def _annotate(server: LabelStudioServer, task_id: int, annotator: str, label: str | None) -> int:
    """Post an annotation as `annotator` (a real Label Studio user); None = skipped."""
    sdk = server.client().sdk
    annotation = sdk.annotations.create(
        task_id,
        result=[] if label is None else choice_result(label),
        was_cancelled=label is None,
        completed_by=server.annotators[annotator],
        lead_time=3.5,
    )
    return int(annotation.id)


def test_push_twice_creates_no_duplicates_and_serves_our_order(
    make_project, server: LabelStudioServer, capsys
) -> None:
    config, round_id = make_project(f"{AR3}\ngold_share = 0.2\nimport_chunk_size = 7")
    first = run_json(capsys, "push")
    assert (first["pushed"], first["already_pushed"], first["gold"]) == (30, 0, 6)
    again = run_json(capsys, "push")
    assert (again["pushed"], again["already_pushed"]) == (0, 30)
    assert again["project_id"] == first["project_id"]
    client = server.client()
    project_id = first["project_id"]
    tasks = list(client.list_tasks(project_id))
    examples = [task.example_id for task in tasks]
    assert len(examples) == len(set(examples)) == 30
    for task in tasks:  # per-language overlap, per task
        assert task.overlap == (3 if task.data["language"] == "ar" else 1)
    project = client.get_project(project_id)
    assert project["sampling"] == "Uncertainty sampling"
    assert project["model_version"] == "proxy-v1"
    assert _status(config, round_id) == "pushed"
    # Label Studio's own queue serves the first task of ours first (lowest prediction score).
    first_in_queue = min(task.id for task in tasks)  # imported in queue order
    served = httpx.get(
        f"{server.url}/api/projects/{project_id}/next",
        headers={"Authorization": f"Token {server.token}"},
        timeout=60,
    ).json()
    assert served["id"] == first_in_queue


def test_killed_between_import_and_bookkeeping_then_push_again(
    make_project, server: LabelStudioServer, tmp_path: Path, capsys
) -> None:
    config, round_id = make_project("gold_share = 0.2\nimport_chunk_size = 10")
    env = {
        **os.environ,
        "CURATE_CONFIG": str(tmp_path / "curate.toml"),
        "CURATE_FAULT": "kill-after-import:2",
        # The repo first: an editable install made before labeling/ existed does not map it.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from curation.cli import main; main()",
        ]
        + ["push", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(_task_ids(config)) == 10  # the second chunk reached the server, not the store
    assert _status(config, round_id) == "pushing"
    result = run_json(capsys, "push")
    assert result["adopted"] == 10 and result["pushed"] == 10
    assert result["already_pushed"] == 20
    examples = _server_examples(server.client(), result["project_id"])
    assert len(examples) == len(set(examples)) == 30
    assert len(_task_ids(config)) == 30
    assert _status(config, round_id) == "pushed"


def test_server_stopped_mid_push_then_restarted(make_project, server: LabelStudioServer) -> None:
    config, round_id = make_project("import_chunk_size = 5\nmax_retries = 6")
    client = LabelStudioClient.from_config(config)
    restart: list[threading.Thread] = []

    def stop_after_second_import(number: int) -> None:
        if number == 2:
            server.stop()
            restart.append(threading.Thread(target=server.start))
            restart[0].start()

    with Store(config.store.path) as store:
        result = push(store, config, client, after_import=stop_after_second_import)
    restart[0].join()
    assert result["pushed"] + result["adopted"] == 24
    examples = _server_examples(client, result["project_id"])
    assert len(examples) == len(set(examples)) == 24
    assert _status(config, round_id) == "pushed"

    # A failure that outlasts the retries leaves the round partially pushed; the next push
    # (the server back) finishes it.
    impatient = config.model_copy(
        update={
            "labelstudio": config.labelstudio.model_copy(
                update={"max_retries": 1, "import_chunk_size": 3}
            )
        }
    )
    with Store(config.store.path) as store:
        second = add_round(
            store, [f"{language}-0{i}" for language in ("en", "de") for i in range(4)]
        )
    client = LabelStudioClient.from_config(impatient)

    def stop_after_first_import(number: int) -> None:
        if number == 1:
            server.stop()

    with Store(config.store.path) as store, pytest.raises(LabelStudioUnavailable):
        push(store, impatient, client, after_import=stop_after_first_import)
    assert _status(config, second) == "partially_pushed"
    server.start()
    with Store(config.store.path) as store:
        finished = push(store, impatient, client)
    assert [r["round_id"] for r in finished["rounds"]] == [second]
    assert finished["pushed"] == 5 and finished["already_pushed"] == 3
    examples = _server_examples(client, result["project_id"])
    assert len(examples) == len(set(examples)) == 32
    assert _status(config, second) == "pushed"


def test_pull_disagreement_tie_gold_and_later_edits(
    make_project, server: LabelStudioServer, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages so that listing and export really page.
    monkeypatch.setattr(labeling.client, "TASK_LIST_PAGE", 7)
    monkeypatch.setattr(labeling.client, "EXPORT_PAGE", 4)
    config, _ = make_project(f"{AR3}\ngold_share = 0.2")
    run_json(capsys, "push")
    tasks = _task_ids(config)
    with Store(config.store.path) as store:
        gold_example, truth = store.conn.execute(
            "SELECT t.example_id, l.label FROM tasks t JOIN labels l USING (example_id) "
            "JOIN examples e ON e.id = t.example_id WHERE t.is_gold = 1 AND e.language = 'ar' "
            "ORDER BY t.example_id"
        ).fetchone()
    wrong = next(label for label in LABELS if label != truth)
    ann1, ann2, ann3 = sorted(server.annotators)
    en_annotation = _annotate(server, tasks["en-04"], ann1, "positive")
    ar4 = [
        _annotate(server, tasks["ar-04"], ann1, "neutral"),
        _annotate(server, tasks["ar-04"], ann2, "neutral"),
        _annotate(server, tasks["ar-04"], ann3, "negative"),
    ]
    _annotate(server, tasks["ar-05"], ann1, "neutral")  # a tie once the skip is counted
    _annotate(server, tasks["ar-05"], ann2, "negative")
    _annotate(server, tasks["ar-05"], ann3, None)
    _annotate(server, tasks[gold_example], ann1, truth)
    _annotate(server, tasks[gold_example], ann2, wrong)
    _annotate(server, tasks[gold_example], ann3, truth)
    _annotate(server, tasks["ar-06"], ann1, "positive")  # 1 of 3: waits

    result = run_json(capsys, "pull")
    assert result["annotations"] == 11 and result["new"] == 11
    assert result["labels_resolved"] == 2 and result["needs_adjudication"] == 1
    assert result["pending"] == 1
    assert result["per_language"]["ar"]["labels"] == 1
    assert result["per_language"]["ar"]["agreement"] is not None
    assert result["gold_accuracy"][ann2]["ar"] == {"answered": 1, "correct": 0, "accuracy": 0.0}
    assert result["gold_accuracy"][ann1]["ar"]["accuracy"] == 1.0
    with Store(config.store.path) as store:
        labels = {r[0]: (r[1], r[2]) for r in store.conn.execute("SELECT * FROM labels")}
        queue = dict(store.conn.execute("SELECT example_id, reason FROM adjudication_queue"))
        raw = store.conn.execute(
            "SELECT annotator, choice, lead_time, created_at, was_cancelled FROM annotations "
            "WHERE annotation_id = ?",
            (ar4[2],),
        ).fetchone()
    assert labels["en-04"] == ("positive", "labelstudio")
    assert labels["ar-04"] == ("neutral", "labelstudio")
    assert labels[gold_example] == (truth, "import")  # gold measures, never relabels
    assert "ar-06" not in labels
    assert queue == {"ar-05": "tie"}
    assert (raw[0], raw[1], raw[2], raw[4]) == (ann3, "negative", 3.5, 0) and raw[3]
    adjudicate = run_json(capsys, "adjudicate")
    assert [row["example_id"] for row in adjudicate["rows"]] == ["ar-05"]

    # After the first pull: one annotator changes their mind, another annotation is deleted.
    sdk = server.client().sdk
    sdk.annotations.update(ar4[0], result=choice_result("negative"))
    sdk.annotations.delete(en_annotation)
    again = run_json(capsys, "pull")
    assert (again["new"], again["updated"], again["deleted"]) == (0, 1, 1)
    assert again["labels_resolved"] == 1 and again["labels_withdrawn"] == 1
    with Store(config.store.path) as store:
        labels = {r[0]: (r[1], r[2]) for r in store.conn.execute("SELECT * FROM labels")}
        kept = store.conn.execute(
            "SELECT deleted FROM annotations WHERE annotation_id = ?", (en_annotation,)
        ).fetchone()
    assert labels["ar-04"] == ("negative", "labelstudio")
    assert "en-04" not in labels and kept[0] == 1  # mirrored as deleted, the row kept
    code, out, _ = run(capsys, "pull")
    assert code == 0 and "agreement per language" in out and "annotators on gold" in out


def test_arabic_arrives_intact_and_right_to_left(make_project, server, capsys) -> None:
    config, _ = make_project(round_items=["ar-04", "ar-07", "en-04"])
    result = run_json(capsys, "push")
    client = server.client()
    tasks = _task_ids(config)
    exported = {
        task["data"]["example_id"]: task
        for task in client.export_tasks(result["project_id"], list(tasks.values()))
    }
    with Store(config.store.path) as store:
        stored = dict(store.conn.execute("SELECT id, text FROM examples"))
    for example in ("ar-04", "ar-07"):
        data = exported[example]["data"]
        assert data["text"] == stored[example] == TEXTS["ar"][int(example[-2:])]
        assert data["language"] == "ar"
        shown = ET.fromstring(data["html"])
        assert shown.get("dir") == "rtl" and shown.get("lang") == "ar"
        assert shown.text == stored[example]
    assert ET.fromstring(exported["en-04"]["data"]["html"]).get("dir") == "ltr"
    project = client.get_project(result["project_id"])
    assert 'value="$html"' in project["label_config"]


def test_personal_access_token_works_and_no_key_is_printed(
    make_project, server: LabelStudioServer, capsys, caplog, monkeypatch
) -> None:
    make_project()
    personal = server.client().sdk.tokens.create().token  # a JWT refresh token
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", personal)
    code, out, err = run(capsys, "--debug", "push", "--json")
    assert code == 0, err
    assert json.loads(out)["pushed"] == 24
    for text in (out, err, caplog.text):
        assert personal not in text and server.token not in text
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-a-valid-token-123")
    code, out, err = run(capsys, "pull")
    assert code == 2 and "refused the API key" in err and "not-a-valid-token-123" not in err
