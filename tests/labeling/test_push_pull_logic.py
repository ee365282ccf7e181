"""Push and pull logic against an in-memory Label Studio double (fast, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.store import Store
from labeling.client import LabelStudioUnavailable
from labeling.pull import pull
from labeling.push import push, queue_order
from tests.labeling.helpers import FakeLabelStudio, build_store, export_annotation

AR3 = "annotations_per_language = { ar = 3 }"


def _tasks_rows(config) -> list[dict]:  # noqa: ANN001
    with Store(config.store.path) as store:
        return [dict(r) for r in store.conn.execute("SELECT * FROM tasks ORDER BY task_id")]


def _status(config, round_id: int) -> str:  # noqa: ANN001
    with Store(config.store.path) as store:
        return store.conn.execute(
            "SELECT status FROM selection_rounds WHERE id = ?", (round_id,)
        ).fetchone()[0]


def test_push_creates_project_orders_tasks_and_sets_overlap(tmp_path: Path) -> None:
    config, round_id = build_store(tmp_path, labelstudio=f"{AR3}\ngold_share = 0.2")
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        result = push(store, config, fake)
    assert result["pushed"] == 30 and result["already_pushed"] == 0  # 24 items + 6 gold
    assert result["gold"] == 6
    project = fake.projects[result["project_id"]]
    assert project["sampling"] == "Uncertainty sampling"
    assert project["model_version"] == "proxy-v1" and project["maximum_annotations"] == 1
    tasks = [fake.tasks[i] for i in sorted(fake.tasks)]
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert all(t["predictions"][0]["model_version"] == "proxy-v1" for t in tasks)
    # Languages interleave: the first four tasks served cover four languages.
    first = [t["data"]["language"] for t in tasks if t["data"]["rank"] is not None][:4]
    assert sorted(first) == ["ar", "de", "en", "hi"]
    # The proxy's label as a hint (default pre_annotation): nothing pre-selected; the hint only
    # where the proxy predicted, never on gold.
    for task in tasks:
        assert task["predictions"][0]["result"] == []
        rank = task["data"]["rank"]
        guess = "" if rank is None or rank % 2 else "model's guess: negative"
        assert task["data"]["model_hint"] == guess
    # Arabic tasks are patched to three annotators, the rest keep the project's one.
    for task in tasks:
        assert task["overlap"] == (3 if task["data"]["language"] == "ar" else 1)
    rows = _tasks_rows(config)
    assert sum(r["is_gold"] for r in rows) == 6
    gold = [r["example_id"] for r in rows if r["is_gold"]]
    assert all(int(ex.split("-")[1]) < 4 for ex in gold)  # imported-label examples only
    assert _status(config, round_id) == "pushed"


def test_push_twice_creates_nothing_new(tmp_path: Path) -> None:
    config, _ = build_store(tmp_path, labelstudio="gold_share = 0.1")
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        first = push(store, config, fake)
        again = push(store, config, fake)
    assert again["pushed"] == 0 and again["already_pushed"] == first["pushed"]
    assert len(fake.tasks) == first["pushed"] and again["project_id"] == first["project_id"]


def test_lost_import_answer_is_reconciled_not_duplicated(tmp_path: Path) -> None:
    config, round_id = build_store(tmp_path, labelstudio="import_chunk_size = 5")
    fake = FakeLabelStudio()
    fake.import_faults = [None, "lost", "down"]  # 2nd import applied but unanswered, 3rd refused
    with Store(config.store.path) as store:
        result = push(store, config, fake)
    examples = [t["data"]["example_id"] for t in fake.tasks.values()]
    assert len(examples) == len(set(examples)) == 24
    assert result["pushed"] + result["adopted"] == 24 and result["adopted"] == 5
    assert len(fake.sleeps) == 2  # backed off twice
    assert len(_tasks_rows(config)) == 24
    assert _status(config, round_id) == "pushed"


def test_permanent_failure_marks_round_partially_pushed_and_next_push_finishes(
    tmp_path: Path,
) -> None:
    config, round_id = build_store(tmp_path, labelstudio="import_chunk_size = 10\nmax_retries = 2")
    fake = FakeLabelStudio()
    fake.import_faults = [None, "down", "down", "down"]
    with Store(config.store.path) as store, pytest.raises(LabelStudioUnavailable):
        push(store, config, fake)
    assert _status(config, round_id) == "partially_pushed"
    assert len(_tasks_rows(config)) == 10
    with Store(config.store.path) as store:
        from tests.labeling.helpers import add_round

        newer = add_round(store, ["en-00"])  # a newer round does not strand the partial one
        result = push(store, config, fake)
    assert [r["round_id"] for r in result["rounds"]] == [round_id, newer]
    assert _status(config, round_id) == "pushed" and _status(config, newer) == "pushed"
    examples = [t["data"]["example_id"] for t in fake.tasks.values()]
    assert len(examples) == len(set(examples)) == 25


def test_queue_order_spreads_gold_evenly() -> None:
    from labeling.push import _Task

    def task(example: str, language: str, rank: int | None, gold: bool = False) -> _Task:
        return _Task(example, "t", language, 1, rank, None, None, gold)

    items = [task(f"en{i}", "en", i) for i in range(1, 7)] + [task("ar1", "ar", 7)]
    gold = [task("g1", "en", None, True), task("g2", "ar", None, True)]
    order = [t.example_id for t in queue_order(items, gold)]
    # Languages interleave in proportion to their share of the round (ar's one item halfway),
    # each in its own rank order; gold every (n + g) / (g + 1) tasks.
    assert order == ["en1", "en2", "g1", "en3", "ar1", "g2", "en4", "en5", "en6"]


def _annotate(fake: FakeLabelStudio, example: str, *votes: tuple[int, str | None]) -> None:
    task = fake.tasks[fake.task_of(example)]
    for user, label in votes:
        annotation_id = 1000 + sum(len(t["annotations"]) for t in fake.tasks.values())
        task["annotations"].append(
            export_annotation(annotation_id, user, label, cancelled=label is None)
        )


def test_pull_resolves_queues_measures_and_follows_edits(tmp_path: Path) -> None:
    config, _ = build_store(tmp_path, labelstudio=f"{AR3}\ngold_share = 0.2")
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        push(store, config, fake)
        gold_ar = store.conn.execute(
            "SELECT t.example_id, l.label FROM tasks t JOIN labels l USING (example_id) "
            "JOIN examples e ON e.id = t.example_id WHERE t.is_gold = 1 AND e.language = 'ar'"
        ).fetchone()
    _annotate(fake, "en-04", (2, "positive"))  # overlap 1: resolved
    _annotate(fake, "ar-04", (1, "neutral"), (2, "neutral"), (3, "negative"))  # 2 of 3
    _annotate(fake, "ar-05", (1, "neutral"), (2, "negative"), (3, None))  # tie (one skipped)
    _annotate(fake, "ar-06", (1, "neutral"))  # 1 of 3: pending
    wrong = next(label for label in ("negative", "neutral", "positive") if label != gold_ar[1])
    _annotate(fake, gold_ar[0], (1, gold_ar[1]), (2, wrong), (3, gold_ar[1]))
    with Store(config.store.path) as store:
        result = pull(store, config, fake)
        labels = dict(store.conn.execute("SELECT example_id, label FROM labels"))
        sources = dict(store.conn.execute("SELECT example_id, source FROM labels"))
        queue = {r[0]: r[1] for r in store.conn.execute("SELECT * FROM adjudication_queue")}
        stats = store.conn.execute("SELECT COUNT(*) FROM agreement_stats").fetchone()[0]
    assert result["annotations"] == 11 and result["new"] == 11
    assert fake.exported == [5]  # only the annotated tasks are exported
    assert labels["en-04"] == "positive" and sources["en-04"] == "labelstudio"
    assert labels["ar-04"] == "neutral"
    assert "ar-06" not in labels and result["pending"] == 1
    assert queue == {"ar-05": "tie"}
    assert sources[gold_ar[0]] == "import" and labels[gold_ar[0]] == gold_ar[1]  # gold untouched
    accuracy = result["gold_accuracy"]
    assert accuracy["ann2@example.org"]["ar"] == {"answered": 1, "correct": 0, "accuracy": 0.0}
    assert accuracy["admin@example.org"]["ar"]["accuracy"] == 1.0
    assert result["per_language"]["ar"]["labels"] == 1
    assert result["per_language"]["ar"]["agreement"] is not None
    assert stats == 2  # en and ar
    # An edit after the first pull: ar-04's dissenter and one more change their minds.
    task = fake.tasks[fake.task_of("ar-04")]
    task["annotations"][0]["result"][0]["value"]["choices"] = ["negative"]
    task["annotations"][0]["updated_at"] = "2026-02-01T00:00:00Z"
    # And en-04's only annotation is deleted in Label Studio.
    fake.tasks[fake.task_of("en-04")]["annotations"].clear()
    with Store(config.store.path) as store:
        again = pull(store, config, fake)
        labels = dict(store.conn.execute("SELECT example_id, label FROM labels"))
        deleted = store.conn.execute(
            "SELECT COUNT(*) FROM annotations WHERE deleted = 1"
        ).fetchone()[0]
    assert again["updated"] == 1 and again["deleted"] == 1 and again["new"] == 0
    assert fake.exported[-1] == 5  # en-04 has none left, but held annotations: exported
    assert labels["ar-04"] == "negative"
    assert "en-04" not in labels and deleted == 1
    assert again["labels_resolved"] == 1 and again["labels_withdrawn"] == 1


def test_crowd_never_overwrites_an_imported_label(tmp_path: Path) -> None:
    config, _ = build_store(tmp_path, round_items=["en-00", "en-04"])  # en-00 has an import label
    fake = FakeLabelStudio()
    with Store(config.store.path) as store:
        push(store, config, fake)
        imported = store.conn.execute("SELECT label FROM labels WHERE example_id = 'en-00'")
        imported = imported.fetchone()[0]
    other = next(label for label in ("negative", "neutral", "positive") if label != imported)
    _annotate(fake, "en-00", (2, other))
    with Store(config.store.path) as store:
        result = pull(store, config, fake)
        row = store.conn.execute(
            "SELECT label, source FROM labels WHERE example_id = 'en-00'"
        ).fetchone()
        reason = store.conn.execute("SELECT reason, votes FROM adjudication_queue").fetchone()
    assert tuple(row) == (imported, "import")
    assert reason[0] == "conflicts_with_import" and json.loads(reason[1]) == {other: 1}
    assert result["needs_adjudication"] == 1


def test_one_push_at_a_time(tmp_path: Path) -> None:
    from curation.errors import InputError
    from labeling.push import _push_lock

    config, _ = build_store(tmp_path)
    with (
        Store(config.store.path) as store,
        _push_lock(store),
        Store(config.store.path) as other,
        pytest.raises(InputError, match="another"),
    ):
        push(other, config, FakeLabelStudio())
