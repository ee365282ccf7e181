"""`curate push`: a selection round into Label Studio, in order, exactly once.

One project per task (`[labelstudio] project_title`), created on first use with the labeling
config of labeling.interface, `maximum_annotations = annotations_per_task` and "Uncertainty
sampling"; reused (oldest project of that title) afterwards.

Order: Label Studio's uncertainty sampling serves, among the tasks whose prediction has the
project's `model_version`, the lowest prediction `score` first. Every task therefore gets a
prediction with the round's model version and `score = queue position / tasks in the round`, and
the project's model version is set to the round's (older rounds' leftovers are served after it).
That score is a queue position, not a confidence: Label Studio shows it as "prediction score",
and 0.0 is simply the first task to serve.

The proxy's label (`[labelstudio] pre_annotation`): "hint" (default) puts it in the task data as
text (`data.model_hint`, "model's guess: negative", shown under the choices) and leaves the
prediction's result empty, so nothing is chosen in advance; "preselect" makes it the prediction's
result, so Label Studio pre-selects it (annotators anchor on it and agreement is inflated);
"off" shows it nowhere. Rounds rank
language after language; the queue interleaves languages in proportion to their share of the
round, each in rank order (stop annotating at any point and every language got its share), and
spreads gold tasks evenly.

Per-language overlap: `maximum_annotations` is per project, but Label Studio keeps an `overlap`
per task (is the task finished? how many annotators may take it?), writable with
PATCH /api/tasks/{id}. Imported tasks get the project's value; tasks of a language with another
`annotations_per_language` are then patched. Label Studio rewrites task overlaps only when
someone changes the project's maximum annotations or overlap-cohort settings; the next push
patches them back.

Gold: `gold_share` of the pushed tasks are examples with an imported (known) label, chosen per
language in proportion to the round, never pushed to the project before, shown like any other
task (no pre-annotation) and recorded with `tasks.is_gold = 1` to measure annotators.

Exactly once: every imported task is recorded in `tasks` (project, example, task id) in the
transaction right after its import request returns. Before importing, push lists the project's
tasks and records any task whose `data.example_id` the store does not know yet: a run killed
between import and bookkeeping, or an import whose answer was lost to a timeout, leaves tasks that
the next attempt adopts instead of importing again. Import failures (network, 5xx) are retried
with backoff, each retry starting from that reconciliation (after a timeout, the wait is at least
`timeout_seconds`, so that an import still running on the server has finished before the listing
that decides what to import again); when retries run out the round is
marked `partially_pushed` (a killed run leaves `pushing`), and the next `curate push` finishes
such rounds first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from curation.config import Config, LabelStudioConfig
from curation.errors import InputError
from curation.languages import primary_subtag
from curation.store import Store, utc_now
from labeling.client import (
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnavailable,
    ServerTask,
    backoff_seconds,
)
from labeling.interface import HINT_FIELD, choice_result, hint_text, label_config, task_html
from labeling.sql import select_in

log = logging.getLogger("curate.labeling")

SAMPLING = "Uncertainty sampling"
# `tasks.project_id` of examples written to an import file by `push --to` (no server ids yet).
OFFLINE_PROJECT = 0
# Test hook: "kill-after-import" or "kill-after-import:N" SIGKILLs this process right after the
# N-th (default first) import request of a run returns, before its bookkeeping.
FAULT_ENV = "CURATE_FAULT"

UNFINISHED = ("pushing", "partially_pushed")
# Rounds still to push: never pushed ('selected') or cut short (UNFINISHED). A round written to an
# import file by `push --to` ('exported') is not among them: its tasks may already sit in a
# project imported by hand, so it is pushed to a server only when asked (`--round ID`), and every
# push says which such rounds it left.
WAITING = ("selected", *UNFINISHED)


@dataclass(frozen=True)
class _Task:
    """One task to push: a round item or a gold example."""

    example_id: str
    text: str
    language: str
    round_id: int
    rank: int | None  # the round rank; None for gold
    selection_score: float | None
    predicted_label: str | None
    is_gold: bool


def overlap_for(language: str, settings: LabelStudioConfig) -> int:
    """Annotators per task for a language: `annotations_per_language` (exact tag, then primary
    subtag), else `annotations_per_task`."""
    per_language = settings.annotations_per_language
    if language in per_language:
        return per_language[language]
    return per_language.get(primary_subtag(language), settings.annotations_per_task)


def label_names(store: Store, config: Config) -> list[str]:
    names = list(config.labels.names or store.label_names())
    if len(names) < 2:
        raise InputError(
            "no label set yet: set [labels] names in curate.toml or ingest labeled examples"
        )
    return names


def model_version_of(store: Store, round_id: int) -> str:
    """The round's proxy model version, else `curate-round-N` (tasks must carry some version)."""
    row = store.conn.execute(
        "SELECT proxy_model_version FROM selection_rounds WHERE id = ?", (round_id,)
    ).fetchone()
    return row[0] if row and row[0] else f"curate-round-{round_id}"


def unpushed_rounds(store: Store) -> list[int]:
    """Rounds still to push (status in WAITING), oldest first: what `curate push` and the
    nightly push stage send."""
    return [
        int(row[0])
        for row in store.conn.execute(
            f"SELECT id FROM selection_rounds WHERE status IN ({','.join('?' * len(WAITING))}) "
            "ORDER BY id",
            WAITING,
        )
    ]


def rounds_to_push(store: Store, round_id: int | None) -> list[int]:
    """`--round ID`; else every unpushed round, oldest first; else (all pushed) the latest round,
    so that pushing again fills in what is missing and reports what is there."""
    if round_id is not None:
        if not store.conn.execute(
            "SELECT 1 FROM selection_rounds WHERE id = ?", (round_id,)
        ).fetchone():
            raise InputError(f"no selection round {round_id}")
        return [round_id]
    latest = store.conn.execute("SELECT MAX(id) FROM selection_rounds").fetchone()[0]
    if latest is None:
        raise InputError("no selection round yet: run `curate select` first")
    return unpushed_rounds(store) or [int(latest)]


def rounds_left_out(store: Store, pushed: Sequence[int]) -> list[dict]:
    """Rounds written to an import file ('exported') that a push did not send, each with the
    command that would: `curate push` never sends them on its own (see WAITING)."""
    return [
        {
            "round_id": int(row[0]),
            "status": row[1],
            "reason": "written to a Label Studio import file by `curate push --to`; import that "
            f"file, or push the round here with `curate push --round {row[0]}`",
        }
        for row in store.conn.execute(
            "SELECT id, status FROM selection_rounds WHERE status = 'exported' ORDER BY id"
        )
        if int(row[0]) not in pushed
    ]


def _set_status(store: Store, round_id: int, status: str) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE selection_rounds SET status = ? WHERE id = ?", (status, round_id))


def _round_items(store: Store, round_id: int) -> list[_Task]:
    rows = store.conn.execute(
        "SELECT r.example_id, r.rank, r.score, r.predicted_label, e.text, e.language "
        "FROM round_items r JOIN examples e ON e.id = r.example_id "
        "WHERE r.round_id = ? ORDER BY r.rank, r.example_id",
        (round_id,),
    ).fetchall()
    return [
        _Task(
            example_id=row["example_id"],
            text=row["text"],
            language=row["language"],
            round_id=round_id,
            rank=row["rank"],
            selection_score=row["score"],
            predicted_label=row["predicted_label"],
            is_gold=False,
        )
        for row in rows
    ]


def _stored_tasks(store: Store, project_id: int) -> dict[str, dict]:
    return {
        row["example_id"]: dict(row)
        for row in store.conn.execute(
            "SELECT example_id, task_id, round_id, is_gold, overlap FROM tasks "
            "WHERE project_id = ?",
            (project_id,),
        )
    }


def _gold_tasks(store: Store, round_id: int, examples: Sequence[str]) -> list[_Task]:
    order = {example_id: i for i, example_id in enumerate(examples)}
    rows = select_in(
        store.conn, "SELECT id, text, language FROM examples WHERE id IN ({ids})", examples
    )
    tasks = [
        _Task(
            example_id=row["id"],
            text=row["text"],
            language=row["language"],
            round_id=round_id,
            rank=None,
            selection_score=None,
            predicted_label=None,
            is_gold=True,
        )
        for row in rows
    ]
    return sorted(tasks, key=lambda task: order[task.example_id])


def _stable_key(round_id: int, example_id: str) -> str:
    # A reproducible shuffle: the same round picks the same gold candidates on every run.
    return hashlib.sha256(f"{round_id}:{example_id}".encode()).hexdigest()


def _largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    weight_sum = sum(weights.values())
    if total <= 0 or weight_sum == 0:
        return dict.fromkeys(weights, 0)
    exact = {key: total * weight / weight_sum for key, weight in weights.items()}
    out = {key: int(value) for key, value in exact.items()}
    for key in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[: total - sum(out.values())]:
        out[key] += 1
    return out


def choose_gold(
    store: Store,
    *,
    round_id: int,
    items: Sequence[_Task],
    gold_share: float,
    stored: dict[str, dict],
) -> list[str]:
    """Gold example ids for a round: those already recorded for it, topped up to the target.

    Target: `gold_share` of all the round's tasks (items + gold), split over languages in
    proportion to the round; candidates have an `import` label, are not in the round and were
    never pushed to this project; a language short of candidates is topped up from the others.
    """
    have = [ex for ex, row in stored.items() if row["round_id"] == round_id and row["is_gold"]]
    if gold_share <= 0 or not items:
        return sorted(have)
    target = round(len(items) * gold_share / (1.0 - gold_share))
    per_language_items = Counter(task.language for task in items)
    targets = _largest_remainder(target, dict(per_language_items))
    have_languages = Counter(
        row[0]
        for row in select_in(store.conn, "SELECT language FROM examples WHERE id IN ({ids})", have)
    )
    in_round = {task.example_id for task in items}
    candidates: dict[str, list[str]] = defaultdict(list)
    for row in store.conn.execute(
        "SELECT e.id, e.language FROM labels l JOIN examples e ON e.id = l.example_id "
        "WHERE l.source = 'import'"
    ):
        if row["id"] not in in_round and row["id"] not in stored:
            candidates[row["language"]].append(row["id"])
    for ids in candidates.values():
        ids.sort(key=lambda example_id: _stable_key(round_id, example_id))
    chosen: list[str] = []
    for language in sorted(targets):
        need = max(0, targets[language] - have_languages.get(language, 0))
        chosen.extend(candidates[language][:need])
        del candidates[language][:need]
    shortfall = target - len(have) - len(chosen)
    if shortfall > 0:
        rest = sorted(
            (example_id for ids in candidates.values() for example_id in ids),
            key=lambda example_id: _stable_key(round_id, example_id),
        )
        chosen.extend(rest[:shortfall])
    return sorted(have) + chosen


def queue_order(items: Sequence[_Task], gold: Sequence[_Task]) -> list[_Task]:
    """The order annotators should see the round in (see module docstring)."""
    by_language: dict[str, list[_Task]] = defaultdict(list)
    for task in sorted(items, key=lambda t: (t.rank if t.rank is not None else 0, t.example_id)):
        by_language[task.language].append(task)
    keyed = []
    for tasks in by_language.values():
        for position, task in enumerate(tasks):
            keyed.append(((position + 0.5) / len(tasks), task.rank or 0, task.example_id, task))
    ordered = [entry[-1] for entry in sorted(keyed, key=lambda entry: entry[:3])]
    if not gold:
        return ordered
    out: list[_Task] = []
    # Gold i goes before item (i+1)*n/(g+1); several share a slot when gold outnumber the items.
    slots: dict[int, list[_Task]] = defaultdict(list)
    for index, task in enumerate(gold):
        slots[(index + 1) * len(ordered) // (len(gold) + 1)].append(task)
    for position in range(len(ordered) + 1):
        out.extend(slots.get(position, []))
        if position < len(ordered):
            out.append(ordered[position])
    return out


def task_payload(
    task: _Task,
    *,
    position: int,
    total: int,
    model_version: str,
    labels: Sequence[str],
    pre_annotation: str = "hint",
) -> dict:
    """One task in Label Studio's import format (data + one prediction); `pre_annotation`:
    how the proxy's label is shown (see the module docstring)."""
    guess = None
    if task.predicted_label is not None and task.predicted_label in labels and not task.is_gold:
        guess = task.predicted_label
    data = {
        "text": task.text,
        "html": task_html(task.text, task.language),
        "language": task.language,
        "example_id": task.example_id,
        "round_id": task.round_id,
        "selection_score": task.selection_score,
        "rank": task.rank,
    }
    if pre_annotation == "hint":
        # Every task has the field (empty without a guess): the config refers to it.
        data[HINT_FIELD] = hint_text(guess)
    return {
        "data": data,
        "predictions": [
            {
                "model_version": model_version,
                # Uncertainty sampling serves the lowest score first: the queue position, not a
                # confidence.
                "score": position / max(total, 1),
                "result": choice_result(guess)
                if guess is not None and pre_annotation == "preselect"
                else [],
            }
        ],
    }


def project_label_config(labels: Sequence[str], config: Config) -> str:
    """The labeling config for the project's settings (a hint line in "hint" mode)."""
    return label_config(labels, hint=config.labelstudio.pre_annotation == "hint")


def _fault_after_import(import_number: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec.startswith("kill-after-import"):
        return
    _, _, which = spec.partition(":")
    if import_number == (int(which) if which else 1):
        os.kill(os.getpid(), signal.SIGKILL)


# -- the server side ----------------------------------------------------------------------------


def ensure_project(
    client: LabelStudioClient, config: Config, labels: Sequence[str], model_version: str
) -> tuple[int, int]:
    """The project id for `[labelstudio] project_title` (created when missing), with its label
    config and model version brought up to date; and its maximum annotations."""
    settings = config.labelstudio
    xml = project_label_config(labels, config)
    found = client.find_projects(settings.project_title)
    if not found:
        project_id = client.create_project(
            title=settings.project_title,
            description="Managed by curate: tasks come from `curate push`, labels go back with "
            "`curate pull`.",
            label_config=xml,
            maximum_annotations=settings.annotations_per_task,
            sampling=SAMPLING,
            model_version=model_version,
            show_skip_button=True,
        )
        log.info("created Label Studio project %d (%s)", project_id, settings.project_title)
        return project_id, settings.annotations_per_task
    if len(found) > 1:
        log.warning(
            "%d projects are titled %r; using the oldest (%d)",
            len(found),
            settings.project_title,
            found[0]["id"],
        )
    project = client.get_project(found[0]["id"])
    updates: dict = {}
    if _squash(project["label_config"] or "") != _squash(xml):
        updates["label_config"] = xml
    if project["model_version"] != model_version:
        updates["model_version"] = model_version
    if updates:
        try:
            client.update_project(project["id"], **updates)
        except LabelStudioError as exc:
            if "label_config" in updates:
                raise LabelStudioError(
                    f"cannot update the labeling config of project {project['id']} to the label "
                    f"set {list(labels)} (existing annotations use other labels?): {exc}"
                ) from None
            raise
    return int(project["id"]), int(project["maximum_annotations"] or 1)


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _squash(xml: str) -> str:
    return " ".join(xml.split())


def reconcile(
    store: Store, client: LabelStudioClient, config: Config, project_id: int
) -> tuple[dict[str, ServerTask], set[str]]:
    """List the project's tasks; record those the store does not know (adopted, not re-imported).

    Returns the server's tasks by example id and the example ids adopted.
    """
    by_example: dict[str, ServerTask] = {}
    duplicates = 0
    for task in client.list_tasks(project_id):
        example_id = task.example_id
        if example_id is None:
            continue
        if example_id in by_example:
            duplicates += 1
            continue
        by_example[example_id] = task
    if duplicates:
        log.warning(
            "project %d holds %d duplicate tasks (made outside curate?)", project_id, duplicates
        )
    stored = _stored_tasks(store, project_id)
    missing = [ex for ex in by_example if ex not in stored]
    if not missing:
        return by_example, set()
    known = {
        row["id"]: row["language"]
        for row in select_in(
            store.conn, "SELECT id, language FROM examples WHERE id IN ({ids})", missing
        )
    }
    now = utc_now()
    rows = []
    for example_id in missing:
        if example_id not in known:
            continue  # a task about an example of another store
        task = by_example[example_id]
        round_id = _as_int(task.data.get("round_id"))
        in_round = (
            round_id is not None
            and store.conn.execute(
                "SELECT 1 FROM round_items WHERE round_id = ? AND example_id = ?",
                (round_id, example_id),
            ).fetchone()
        )
        if (
            round_id is not None
            and not store.conn.execute(
                "SELECT 1 FROM selection_rounds WHERE id = ?", (round_id,)
            ).fetchone()
        ):
            round_id = None
        rows.append(
            (
                example_id,
                project_id,
                task.id,
                round_id,
                int(round_id is not None and not in_round),
                now,
                overlap_for(known[example_id], config.labelstudio),
            )
        )
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO tasks (example_id, project_id, task_id, round_id, is_gold, pushed_at, "
            "overlap) VALUES (?,?,?,?,?,?,?)",
            rows,
        )
    if rows:
        log.warning(
            "adopted %d tasks already in project %d but not in the store (an interrupted push)",
            len(rows),
            project_id,
        )
    return by_example, {row[0] for row in rows}


@dataclass
class _RoundPush:
    pushed: int = 0
    already_pushed: int = 0
    adopted: int = 0
    gold: int = 0
    overlap_set: int = 0


def _push_one_round(
    store: Store,
    config: Config,
    client: LabelStudioClient,
    *,
    round_id: int,
    project_id: int,
    max_annotations: int,
    labels: Sequence[str],
    after_import: Callable[[int], None] | None,
    import_counter: list[int],
) -> _RoundPush:
    settings = config.labelstudio
    model_version = model_version_of(store, round_id)
    items = _round_items(store, round_id)
    result = _RoundPush()
    stored_at_start = _stored_tasks(store, project_id)
    adopted: set[str] = set()
    import_failures = 0
    while True:
        server, newly_adopted = reconcile(store, client, config, project_id)
        adopted |= newly_adopted
        stored = _stored_tasks(store, project_id)
        gold_ids = choose_gold(
            store, round_id=round_id, items=items, gold_share=settings.gold_share, stored=stored
        )
        gold = _gold_tasks(store, round_id, gold_ids)
        ordered = queue_order(items, gold)
        total = len(ordered)
        todo = [
            (position, task)
            for position, task in enumerate(ordered)
            if task.example_id not in stored
        ]
        try:
            for start in range(0, len(todo), settings.import_chunk_size):
                chunk = todo[start : start + settings.import_chunk_size]
                payloads = [
                    task_payload(
                        task,
                        position=position,
                        total=total,
                        model_version=model_version,
                        labels=labels,
                        pre_annotation=settings.pre_annotation,
                    )
                    for position, task in chunk
                ]
                task_ids = client.import_tasks(project_id, payloads)
                import_counter[0] += 1
                _fault_after_import(import_counter[0])
                now = utc_now()
                with store.transaction() as conn:
                    conn.executemany(
                        "INSERT INTO tasks (example_id, project_id, task_id, round_id, is_gold, "
                        "pushed_at, overlap) VALUES (?,?,?,?,?,?,?)",
                        [
                            (
                                task.example_id,
                                project_id,
                                task_id,
                                round_id,
                                int(task.is_gold),
                                now,
                                overlap_for(task.language, settings),
                            )
                            for (_, task), task_id in zip(chunk, task_ids, strict=True)
                        ],
                    )
                result.pushed += len(chunk)
                import_failures = 0
                # Label Studio gave the new tasks the project's maximum annotations.
                for (_, task), task_id in zip(chunk, task_ids, strict=True):
                    server[task.example_id] = ServerTask(task_id, {}, max_annotations)
                if after_import is not None:
                    after_import(import_counter[0])
        except LabelStudioUnavailable as exc:
            import_failures += 1
            if import_failures > settings.max_retries:
                raise
            delay = backoff_seconds(import_failures)
            if exc.timed_out:
                # The import may still be running on the server: give it as long again before
                # listing, or the listing could miss tasks that are about to appear.
                delay = max(delay, settings.timeout_seconds)
            log.warning("%s; reconciling and retrying in %.1f s", exc, delay)
            client.sleep(delay)
            continue
        break
    # Per-language overlap: patch every task of this round whose server overlap differs.
    wanted = {
        row["example_id"]: (row["task_id"], row["overlap"])
        for row in store.conn.execute(
            "SELECT example_id, task_id, overlap FROM tasks WHERE project_id = ? AND round_id = ?",
            (project_id, round_id),
        )
    }
    for example_id, (task_id, overlap) in sorted(wanted.items()):
        if overlap is None:
            continue
        current = server.get(example_id)
        if current is not None and current.overlap == overlap:
            continue
        client.set_overlap(task_id, overlap)
        result.overlap_set += 1
    result.gold = sum(1 for task in ordered if task.is_gold)
    in_round = {task.example_id for task in ordered}
    result.adopted = len(adopted)
    result.already_pushed = len(in_round & (set(stored_at_start) | adopted))
    return result


def push(
    store: Store,
    config: Config,
    client: LabelStudioClient,
    *,
    round_id: int | None = None,
    after_import: Callable[[int], None] | None = None,
) -> dict:
    """Push rounds (see `rounds_to_push`) to the project; returns the `curate push --json` object.

    `after_import(n)` is called after the n-th import request of this run has been recorded.
    """
    with _push_lock(store):
        return _push(store, config, client, round_id=round_id, after_import=after_import)


@contextmanager
def _push_lock(store: Store) -> Iterator[None]:
    """One push per store at a time: two would both miss each other's tasks when reconciling."""
    path = store.path / "push.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another `curate push` is running on this store ({path})") from None
        yield


def _push(
    store: Store,
    config: Config,
    client: LabelStudioClient,
    *,
    round_id: int | None,
    after_import: Callable[[int], None] | None,
) -> dict:
    labels = label_names(store, config)
    round_ids = rounds_to_push(store, round_id)
    client.whoami()  # fail early, and clearly, on a wrong URL or key
    project_id, max_annotations = ensure_project(
        client, config, labels, model_version_of(store, round_ids[-1])
    )
    totals = _RoundPush()
    rounds = []
    import_counter = [0]
    for rid in round_ids:
        _set_status(store, rid, "pushing")
        try:
            result = _push_one_round(
                store,
                config,
                client,
                round_id=rid,
                project_id=project_id,
                max_annotations=max_annotations,
                labels=labels,
                after_import=after_import,
                import_counter=import_counter,
            )
        except BaseException:
            _set_status(store, rid, "partially_pushed")
            raise
        _set_status(store, rid, "pushed")
        for key in ("pushed", "already_pushed", "adopted", "gold", "overlap_set"):
            setattr(totals, key, getattr(totals, key) + getattr(result, key))
        rounds.append({"round_id": rid, **result.__dict__})
    return {
        "pushed": totals.pushed,
        "already_pushed": totals.already_pushed,
        "project_id": project_id,
        "adopted": totals.adopted,
        "gold": totals.gold,
        "overlap_set": totals.overlap_set,
        "rounds": rounds,
        "url": f"{client.url}/projects/{project_id}/data",
        "model_version": model_version_of(store, round_ids[-1]),
        "not_pushed": rounds_left_out(store, round_ids),
    }


# -- offline: an import file --------------------------------------------------------------------


def write_import_file(
    store: Store, config: Config, path: str | Path, *, round_id: int | None = None
) -> dict:
    """`curate push --to FILE`: rounds in Label Studio's JSON import format, plus the labeling
    config beside it (FILE with `.label_config.xml`).

    Which rounds: `round_id`, else every unpushed round (`rounds_to_push`), oldest first, their
    tasks one after another in one file; when every round went somewhere already, the latest
    round again. The examples are recorded as pushed (`tasks.project_id = 0`, no task id yet) so
    selection does not pick them again, and the rounds become 'exported'; writing the same
    rounds again writes the same tasks."""
    with _push_lock(store):
        return _write_import_file(store, config, Path(path), round_id=round_id)


def _write_import_file(store: Store, config: Config, path: Path, *, round_id: int | None) -> dict:
    labels = label_names(store, config)
    round_ids = rounds_to_push(store, round_id)
    stored = _stored_tasks(store, OFFLINE_PROJECT)
    payloads: list[dict] = []
    new: list[_Task] = []
    in_file: set[str] = set()
    tasks = gold = 0
    for rid in round_ids:
        model_version = model_version_of(store, rid)
        items = _round_items(store, rid)
        gold_ids = choose_gold(
            store,
            round_id=rid,
            items=items,
            gold_share=config.labelstudio.gold_share,
            stored=stored,
        )
        ordered = queue_order(items, _gold_tasks(store, rid, gold_ids))
        # An example of two rounds (`select --reselect`) is one task, in its first round.
        ordered = [task for task in ordered if task.example_id not in in_file]
        in_file.update(task.example_id for task in ordered)
        payloads.extend(
            task_payload(
                task,
                position=position,
                total=len(ordered),
                model_version=model_version,
                labels=labels,
                pre_annotation=config.labelstudio.pre_annotation,
            )
            for position, task in enumerate(ordered)
        )
        fresh = [task for task in ordered if task.example_id not in stored]
        # A later round's gold must not pick what this round just took.
        stored.update(
            {task.example_id: {"round_id": rid, "is_gold": task.is_gold} for task in fresh}
        )
        new.extend(fresh)
        tasks += len(ordered)
        gold += sum(1 for task in ordered if task.is_gold)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payloads, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temporary, path)
    config_path = path.with_name(path.stem + ".label_config.xml")
    config_path.write_text(project_label_config(labels, config), encoding="utf-8")
    now = utc_now()
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO tasks (example_id, project_id, task_id, round_id, is_gold, pushed_at, "
            "overlap) VALUES (?,?,0,?,?,?,?)",
            [
                (
                    task.example_id,
                    OFFLINE_PROJECT,
                    task.round_id,
                    int(task.is_gold),
                    now,
                    overlap_for(task.language, config.labelstudio),
                )
                for task in new
            ],
        )
        conn.executemany(
            "UPDATE selection_rounds SET status = 'exported' WHERE id = ? AND status = 'selected'",
            [(rid,) for rid in round_ids],
        )
    return {
        "pushed": len(new),
        "already_pushed": tasks - len(new),
        "project_id": None,
        "file": str(path),
        "label_config": str(config_path),
        "tasks": tasks,
        "gold": gold,
        "round_id": round_ids[-1],
        "round_ids": round_ids,
        "model_version": model_version_of(store, round_ids[-1]),
    }
