"""`curate pull`: every annotation back from Label Studio, a final label per example, agreement.

Fetching: for each project the store has pushed to, the task list (paged, 1000 a page: only id,
data, overlap and annotation counts) and then Label Studio's JSON export of the tasks that have
annotations (or had, when last pulled), 500 task ids a request: a fully annotated project of 20k
tasks is 20 list pages and 40 export pages. Offline, `curate pull --from FILE` reads such an
export file instead.

Mirroring, in one transaction per project: every annotation is upserted by (project, annotation
id) into `annotations` -- annotator (e-mail, else `user:<id>`), choice, skipped/cancelled, lead
time, created/updated times. An annotation that disappeared from a fetched task, or whose task
disappeared from the project, is marked `deleted = 1` (the row is kept); one that comes back is
undeleted. From a file only the tasks in the file are compared. A task the store does not know
(a push killed before its bookkeeping) is recorded in `tasks` on the way.

Resolving (labeling.resolve), over every example with live annotations, in one transaction: each
annotator's latest annotation is their vote; the label is resolved once as many annotators have
answered as the task's overlap asked for. Crowd labels are written with source `labelstudio` and
follow later edits (an updated or deleted annotation can change or withdraw one); `import` and
`adjudicated` labels are never overwritten -- a crowd majority against an `import` label goes to
the adjudication queue (`conflicts_with_import`). Gold tasks (`tasks.is_gold`) never write labels:
they measure annotators. The adjudication queue is rebuilt from scratch at every pull.

Measuring, per language (all examples with >= 2 votes, gold included): Krippendorff's alpha,
Fleiss' kappa and percent agreement (labeling.agreement), stored in `agreement_stats`; each
annotator's accuracy on gold tasks per language in `annotator_gold`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from curation.config import Config
from curation.errors import InputError
from curation.store import Store, utc_now
from labeling.aggregate import Aggregated, dawid_skene, majority_vote
from labeling.agreement import agreement_summary
from labeling.client import LabelStudioClient, LabelStudioNotFound
from labeling.interface import choice_of
from labeling.push import OFFLINE_PROJECT, label_names, overlap_for
from labeling.resolve import Resolution, resolve_votes
from labeling.sql import select_in

log = logging.getLogger("curate.labeling")


@dataclass
class MirrorCounts:
    """What one pull did to the `annotations` table."""

    seen: int = 0  # live annotations in what was fetched
    new: int = 0
    updated: int = 0
    deleted: int = 0
    unknown_tasks: int = 0  # tasks without a known example id (not ours)
    adopted_tasks: int = 0  # tasks recorded on the way (pushed, bookkeeping lost)

    def add(self, other: MirrorCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _annotator(completed_by: object, emails: dict[int, str]) -> str:
    if isinstance(completed_by, dict):
        if completed_by.get("email"):
            return str(completed_by["email"])
        completed_by = completed_by.get("id")
    if completed_by is None:
        return "unknown"
    try:
        user_id = int(completed_by)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(completed_by)
    return emails.get(user_id, f"user:{user_id}")


def _as_int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def mirror_annotations(
    store: Store,
    config: Config,
    *,
    project_id: int,
    tasks: Sequence[dict],
    emails: dict[int, str],
    listed_task_ids: set[int] | None = None,
    overlaps: dict[int, int | None] | None = None,
) -> MirrorCounts:
    """Upsert the annotations of exported `tasks` of one project (see module docstring).

    `listed_task_ids`: every task id the project has now (online); stored annotations of tasks
    missing from it are marked deleted. `overlaps`: the server's overlap per task id.
    """
    counts = MirrorCounts()
    example_ids = {
        str(task["data"]["example_id"])
        for task in tasks
        if isinstance(task.get("data"), dict) and task["data"].get("example_id") is not None
    }
    examples = {
        row["id"]: row["language"]
        for row in select_in(
            store.conn, "SELECT id, language FROM examples WHERE id IN ({ids})", list(example_ids)
        )
    }
    now = utc_now()
    with store.transaction() as conn:
        existing = {
            row["annotation_id"]: dict(row)
            for row in conn.execute(
                "SELECT annotation_id, task_id, example_id, annotator, choice, was_cancelled, "
                "lead_time, created_at, updated_at, deleted FROM annotations WHERE project_id = ?",
                (project_id,),
            )
        }
        stored_tasks = {
            row["example_id"]: row["task_id"]
            for row in conn.execute(
                "SELECT example_id, task_id FROM tasks WHERE project_id = ?", (project_id,)
            )
        }
        fetched_task_ids: set[int] = set()
        seen: set[int] = set()
        for task in tasks:
            data = task.get("data") if isinstance(task.get("data"), dict) else {}
            example_id = data.get("example_id")
            task_id = _as_int(task.get("id"))
            if example_id is None or str(example_id) not in examples or task_id is None:
                counts.unknown_tasks += 1
                continue
            example_id = str(example_id)
            fetched_task_ids.add(task_id)
            if project_id != OFFLINE_PROJECT and example_id not in stored_tasks:
                _adopt_task(conn, config, project_id, task_id, example_id, data, examples, now)
                stored_tasks[example_id] = task_id
                counts.adopted_tasks += 1
            if overlaps and overlaps.get(task_id) is not None:
                conn.execute(
                    "UPDATE tasks SET overlap = ? WHERE project_id = ? AND example_id = ? "
                    "AND overlap IS NOT ?",
                    (overlaps[task_id], project_id, example_id, overlaps[task_id]),
                )
            for annotation in task.get("annotations") or []:
                annotation_id = _as_int(annotation.get("id"))
                if annotation_id is None:
                    continue
                seen.add(annotation_id)
                counts.seen += 1
                row = {
                    "task_id": task_id,
                    "example_id": example_id,
                    "annotator": _annotator(annotation.get("completed_by"), emails),
                    "choice": choice_of(annotation.get("result")),
                    "was_cancelled": int(bool(annotation.get("was_cancelled"))),
                    "lead_time": annotation.get("lead_time"),
                    "created_at": annotation.get("created_at"),
                    "updated_at": annotation.get("updated_at"),
                    "deleted": 0,
                }
                before = existing.get(annotation_id)
                if before is None:
                    conn.execute(
                        "INSERT INTO annotations (annotation_id, project_id, task_id, example_id, "
                        "annotator, choice, was_cancelled, lead_time, created_at, updated_at, "
                        "deleted, pulled_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (annotation_id, project_id, *row.values(), now),
                    )
                    counts.new += 1
                elif any(before[key] != value for key, value in row.items()):
                    conn.execute(
                        "UPDATE annotations SET task_id = ?, example_id = ?, annotator = ?, "
                        "choice = ?, was_cancelled = ?, lead_time = ?, created_at = ?, "
                        "updated_at = ?, deleted = ?, pulled_at = ? "
                        "WHERE project_id = ? AND annotation_id = ?",
                        (*row.values(), now, project_id, annotation_id),
                    )
                    counts.updated += 1
        for annotation_id, before in existing.items():
            if before["deleted"] or annotation_id in seen:
                continue
            task_gone = listed_task_ids is not None and before["task_id"] not in listed_task_ids
            if before["task_id"] in fetched_task_ids or task_gone:
                conn.execute(
                    "UPDATE annotations SET deleted = 1, pulled_at = ? "
                    "WHERE project_id = ? AND annotation_id = ?",
                    (now, project_id, annotation_id),
                )
                counts.deleted += 1
    return counts


def _adopt_task(conn, config, project_id, task_id, example_id, data, examples, now) -> None:  # noqa: ANN001
    round_id = _as_int(data.get("round_id"))
    if (
        round_id is not None
        and not conn.execute("SELECT 1 FROM selection_rounds WHERE id = ?", (round_id,)).fetchone()
    ):
        round_id = None
    in_round = (
        round_id is not None
        and conn.execute(
            "SELECT 1 FROM round_items WHERE round_id = ? AND example_id = ?",
            (round_id, example_id),
        ).fetchone()
    )
    conn.execute(
        "INSERT OR IGNORE INTO tasks (example_id, project_id, task_id, round_id, is_gold, "
        "pushed_at, overlap) VALUES (?,?,?,?,?,?,?)",
        (
            example_id,
            project_id,
            task_id,
            round_id,
            int(round_id is not None and not in_round),
            now,
            overlap_for(examples[example_id], config.labelstudio),
        ),
    )


# -- resolving and measuring --------------------------------------------------------------------


@dataclass
class _ExampleVotes:
    language: str
    votes: dict[str, str] = field(default_factory=dict)  # annotator -> label
    skips: set[str] = field(default_factory=set)  # annotators who skipped (latest answer)
    annotations: int = 0


def _collect_votes(store: Store, labels: Sequence[str]) -> tuple[dict[str, _ExampleVotes], int]:
    """Each annotator's latest live annotation per example; and how many chose unknown labels."""
    known = set(labels)
    latest: dict[tuple[str, str], tuple] = {}
    per_example: dict[str, _ExampleVotes] = {}
    for row in store.conn.execute(
        "SELECT a.example_id, a.annotator, a.choice, a.was_cancelled, a.updated_at, "
        "a.created_at, a.annotation_id, e.language FROM annotations a "
        "JOIN examples e ON e.id = a.example_id WHERE a.deleted = 0"
    ):
        entry = per_example.setdefault(row["example_id"], _ExampleVotes(row["language"]))
        entry.annotations += 1
        key = (row["example_id"], row["annotator"])
        order = (row["updated_at"] or row["created_at"] or "", row["annotation_id"])
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, row["choice"], row["was_cancelled"])
    unknown = 0
    for (example_id, annotator), (_, choice, cancelled) in latest.items():
        entry = per_example[example_id]
        if cancelled or choice is None:
            entry.skips.add(annotator)
        elif choice not in known:
            unknown += 1
            entry.skips.add(annotator)
        else:
            entry.votes[annotator] = choice
    return per_example, unknown


def resolve_and_measure(store: Store, config: Config) -> dict:
    """Resolve labels, rebuild the adjudication queue, store and return agreement (module doc)."""
    settings = config.labelstudio
    labels = label_names(store, config)
    per_example, unknown_choices = _collect_votes(store, labels)
    required = {
        row[0]: row[1]
        for row in store.conn.execute(
            "SELECT example_id, MAX(overlap) FROM tasks WHERE overlap IS NOT NULL "
            "GROUP BY example_id"
        )
    }
    gold = {row[0] for row in store.conn.execute("SELECT example_id FROM tasks WHERE is_gold = 1")}
    current = {
        row["example_id"]: (row["label"], row["source"])
        for row in select_in(
            store.conn,
            "SELECT example_id, label, source FROM labels WHERE example_id IN ({ids})",
            list(per_example),
        )
    }
    now = utc_now()
    written: Counter = Counter()  # language -> crowd labels written or changed
    removed = 0
    pending = 0
    queue: list[tuple] = []
    queued_languages: Counter = Counter()
    gold_answers: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    model = None
    if settings.aggregation == "dawid_skene":
        model = _dawid_skene(per_example, gold, current)
    with store.transaction() as conn:
        for example_id, entry in sorted(per_example.items()):
            existing = current.get(example_id)
            if example_id in gold:
                truth = existing[0] if existing and existing[1] != "labelstudio" else None
                if truth is not None:
                    for annotator, vote in entry.votes.items():
                        tally = gold_answers[(annotator, entry.language)]
                        tally[0] += 1
                        tally[1] += int(vote == truth)
                continue
            need = required.get(example_id) or overlap_for(entry.language, settings)
            resolution = resolve_votes(
                list(entry.votes.values()),
                min_agreement=settings.min_agreement,
                required=need,
                skips=len(entry.skips - set(entry.votes)),
            )
            if model is not None and resolution.status in ("resolved", "tie", "low_agreement"):
                resolution = _with_posterior(resolution, model, example_id, settings.min_agreement)
            source = existing[1] if existing else None
            if resolution.status == "resolved":
                label = resolution.label
                if existing is None or (source == "labelstudio" and existing[0] != label):
                    conn.execute(
                        "INSERT INTO labels (example_id, label, source, updated_at) "
                        "VALUES (?, ?, 'labelstudio', ?) ON CONFLICT (example_id) DO UPDATE SET "
                        "label = excluded.label, source = excluded.source, "
                        "updated_at = excluded.updated_at",
                        (example_id, label, now),
                    )
                    written[entry.language] += 1
                elif source == "import" and existing[0] != label:
                    reason = "conflicts_with_import"
                    queue.append((example_id, reason, resolution.votes, resolution.agreement))
                    queued_languages[entry.language] += 1
                continue
            if source == "labelstudio":
                # The answers no longer support the crowd label (an edit, a deletion).
                conn.execute("DELETE FROM labels WHERE example_id = ?", (example_id,))
                removed += 1
                source = None
            if resolution.status == "pending":
                pending += 1
            elif source is None:
                queue.append(
                    (example_id, resolution.status, resolution.votes, resolution.agreement)
                )
                queued_languages[entry.language] += 1
        # Crowd labels whose every annotation was deleted in Label Studio.
        orphaned = [
            row[0]
            for row in conn.execute("SELECT example_id FROM labels WHERE source = 'labelstudio'")
            if row[0] not in per_example
        ]
        for example_id in orphaned:
            conn.execute("DELETE FROM labels WHERE example_id = ?", (example_id,))
        removed += len(orphaned)
        conn.execute("DELETE FROM adjudication_queue")
        conn.executemany(
            "INSERT INTO adjudication_queue (example_id, reason, votes, agreement, updated_at) "
            "VALUES (?,?,?,?,?)",
            [
                (example_id, reason, json.dumps(votes, ensure_ascii=False), agreement, now)
                for example_id, reason, votes, agreement in queue
            ],
        )
        per_language = _measure(conn, per_example, written, queued_languages, now)
        accuracy = {}
        for (annotator, language), (answered, correct) in sorted(gold_answers.items()):
            conn.execute(
                "INSERT OR REPLACE INTO annotator_gold (computed_at, annotator, language, "
                "answered, correct, accuracy) VALUES (?,?,?,?,?,?)",
                (now, annotator, language, answered, correct, correct / answered),
            )
            accuracy.setdefault(annotator, {})[language] = {
                "answered": answered,
                "correct": correct,
                "accuracy": correct / answered,
            }
        quality = _annotator_quality(conn, model, per_example, gold, now)
    return {
        "aggregation": settings.aggregation,
        "annotator_quality": quality,
        "labels_resolved": sum(written.values()),
        "labels_withdrawn": removed,
        "needs_adjudication": len(queue),
        "pending": pending,
        "unknown_choices": unknown_choices,
        "per_language": per_language,
        "gold_accuracy": accuracy,
        "computed_at": now,
    }


def _dawid_skene(
    per_example: dict[str, _ExampleVotes], gold: set[str], current: dict[str, tuple]
) -> Aggregated:
    """Dawid-Skene over every example's votes; gold examples with a known (non-crowd) label
    anchor the annotators' confusion matrices."""
    votes = {example_id: dict(entry.votes) for example_id, entry in per_example.items()}
    truths = {
        example_id: current[example_id][0]
        for example_id in gold
        if example_id in current and current[example_id][1] != "labelstudio"
    }
    return dawid_skene({k: v for k, v in votes.items() if v}, gold=truths)


def _with_posterior(
    resolution: Resolution, model: Aggregated, example_id: str, min_agreement: float
) -> Resolution:
    """A majority resolution re-decided by the Dawid-Skene posterior: its label when the
    posterior reaches `min_agreement` (a tie usually does), else `low_agreement`."""
    label = model.labels.get(example_id)
    posterior = model.confidence.get(example_id)
    if label is None or posterior is None:
        return resolution
    if posterior >= min_agreement:
        return replace(resolution, status="resolved", label=label, agreement=posterior)
    return replace(resolution, status="low_agreement", label=None, agreement=posterior)


def _annotator_quality(conn, model, per_example, gold, now) -> dict:  # noqa: ANN001
    """Per annotator: answers and estimated accuracy (Dawid-Skene), or agreement with the
    majority label (majority vote); stored for the Labeling page."""
    if model is None:
        votes = {
            example_id: dict(entry.votes)
            for example_id, entry in per_example.items()
            if example_id not in gold and entry.votes
        }
        model = majority_vote(votes)
    answers = Counter(a for entry in per_example.values() for a in entry.votes)
    out = {}
    for annotator, accuracy in sorted(model.annotator_accuracy.items()):
        out[annotator] = {"answers": answers.get(annotator, 0), "accuracy": round(accuracy, 4)}
        conn.execute(
            "INSERT OR REPLACE INTO annotator_quality (computed_at, annotator, method, answers, "
            "accuracy) VALUES (?,?,?,?,?)",
            (now, annotator, model.method, answers.get(annotator, 0), accuracy),
        )
    return {"method": model.method, "annotators": out}


def _measure(conn, per_example, written, queued_languages, now) -> dict:  # noqa: ANN001
    by_language: dict[str, list[_ExampleVotes]] = defaultdict(list)
    for entry in per_example.values():
        by_language[entry.language].append(entry)
    crowd_labels = Counter(
        row[0]
        for row in conn.execute(
            "SELECT e.language FROM labels l JOIN examples e ON e.id = l.example_id "
            "WHERE l.source IN ('labelstudio', 'adjudicated')"
        )
    )
    out = {}
    for language in sorted(by_language):
        entries = by_language[language]
        summary = agreement_summary([list(entry.votes.values()) for entry in entries])
        annotators = {a for entry in entries for a in (*entry.votes, *entry.skips)}
        row = {
            "labels": written.get(language, 0),
            "agreement": summary.krippendorff_alpha,
            "percent_agreement": summary.percent_agreement,
            "fleiss_kappa": summary.fleiss_kappa,
            "units": summary.units,
            "examples": len(entries),
            "annotations": sum(entry.annotations for entry in entries),
            "annotators": len(annotators),
            "needs_adjudication": queued_languages.get(language, 0),
            "crowd_labels": crowd_labels.get(language, 0),
        }
        conn.execute(
            "INSERT OR REPLACE INTO agreement_stats (computed_at, language, examples, annotations, "
            "annotators, units, krippendorff_alpha, fleiss_kappa, percent_agreement, labels, "
            "needs_adjudication) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                now,
                language,
                row["examples"],
                row["annotations"],
                row["annotators"],
                row["units"],
                row["agreement"],
                row["fleiss_kappa"],
                row["percent_agreement"],
                row["labels"],
                row["needs_adjudication"],
            ),
        )
        out[language] = row
    return out


# -- entry points -------------------------------------------------------------------------------


def _summary(counts: MirrorCounts, resolved: dict, projects: Iterable[int]) -> dict:
    return {
        "annotations": counts.seen,
        "new": counts.new,
        "updated": counts.updated,
        "deleted": counts.deleted,
        **resolved,
        "projects": sorted(projects),
        "adopted_tasks": counts.adopted_tasks,
        "unknown_tasks": counts.unknown_tasks,
    }


def pull(store: Store, config: Config, client: LabelStudioClient) -> dict:
    """Pull every project the store pushed to (and the configured one); the `--json` object."""
    projects = {
        row[0]
        for row in store.conn.execute(
            "SELECT DISTINCT project_id FROM tasks WHERE project_id != ?", (OFFLINE_PROJECT,)
        )
    }
    projects.update(p["id"] for p in client.find_projects(config.labelstudio.project_title))
    emails = client.user_emails() if projects else {}
    counts = MirrorCounts()
    pulled = []
    for project_id in sorted(projects):
        try:
            client.get_project(project_id)  # a missing project must not read as "no tasks"
            listed = list(client.list_tasks(project_id))
        except LabelStudioNotFound:
            log.warning("project %d is gone from Label Studio; annotations kept", project_id)
            continue
        # Export only tasks with annotations, and those we hold live annotations of (to see
        # deletions): a 20k-task project with little done costs a few export pages, not 40.
        held = {
            row[0]
            for row in store.conn.execute(
                "SELECT DISTINCT task_id FROM annotations WHERE project_id = ? AND deleted = 0",
                (project_id,),
            )
        }
        wanted = [
            task.id
            for task in listed
            if task.annotations is None or task.annotations > 0 or task.id in held
        ]
        exported = client.export_tasks(project_id, wanted)
        counts.add(
            mirror_annotations(
                store,
                config,
                project_id=project_id,
                tasks=exported,
                emails=emails,
                listed_task_ids={task.id for task in listed},
                overlaps={task.id: task.overlap for task in listed},
            )
        )
        pulled.append(project_id)
    return _summary(counts, resolve_and_measure(store, config), pulled)


def read_export(path: str | Path) -> list[dict]:
    """A Label Studio JSON export (a list of tasks with `data` and `annotations`)."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a Label Studio JSON export ({exc})") from None
    if not isinstance(tasks, list) or not all(
        isinstance(task, dict) and "id" in task and isinstance(task.get("data"), dict)
        for task in tasks
    ):
        raise InputError(
            f"{path}: not a Label Studio JSON export (expected a list of tasks with id and data; "
            "export with format JSON)"
        )
    return tasks


def pull_from_file(store: Store, config: Config, path: str | Path) -> dict:
    """`curate pull --from FILE`: mirror a JSON export, then resolve and measure."""
    tasks = read_export(path)
    by_project: dict[int, list[dict]] = defaultdict(list)
    for task in tasks:
        project = _as_int(task.get("project"))
        if project is None:
            project = next(
                (
                    _as_int(a.get("project"))
                    for a in task.get("annotations") or []
                    if _as_int(a.get("project")) is not None
                ),
                OFFLINE_PROJECT,
            )
        by_project[project].append(task)
    counts = MirrorCounts()
    for project_id, project_tasks in sorted(by_project.items()):
        counts.add(
            mirror_annotations(store, config, project_id=project_id, tasks=project_tasks, emails={})
        )
    return _summary(counts, resolve_and_measure(store, config), by_project)
