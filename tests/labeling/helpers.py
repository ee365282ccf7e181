"""Test stores built with the project's own code, and a small in-memory Label Studio double."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from curation.config import Config, load_config
from curation.ingest import ingest_files
from curation.pool import RoundItem, record_round
from curation.store import Store
from labeling.client import LabelStudioNotFound, LabelStudioUnavailable, ServerTask

LABELS = ("negative", "neutral", "positive")

# Texts per language; the first LABELED of each language are ingested with a label (gold pool).
TEXTS = {
    "en": [
        f"English review number {i}: the delivery was {w}."
        for i, w in enumerate(
            ["fast", "slow", "late", "early", "fine", "odd", "lost", "broken", "perfect", "damaged"]
        )
    ],
    "de": [
        f"Deutsche Bewertung Nummer {i}: die Lieferung war {w}."
        for i, w in enumerate(
            [
                "schnell",
                "langsam",
                "spät",
                "früh",
                "gut",
                "seltsam",
                "weg",
                "kaputt",
                "toll",
                "nass",
            ]
        )
    ],
    "ar": [
        "الخدمة ممتازة والتوصيل سريع جدا",
        "المنتج وصل متأخرا ومكسورا",
        "لا أعرف إذا كان التحديث الجديد يغير الإعدادات",
        "تجربة رائعة وسأشتري مرة أخرى",
        "السعر مرتفع مقارنة بالجودة",
        "خدمة العملاء لم ترد على رسائلي",
        "البطارية تدوم يومين كاملين",
        "التطبيق يتوقف فجأة بعد التحديث",
        "الطلب وصل في الموعد المحدد",
        "هل يوجد ضمان على هذا الجهاز؟",
    ],
    "hi": [
        f"हिंदी समीक्षा संख्या {i}: डिलीवरी {w} थी।"
        for i, w in enumerate(
            ["तेज़", "धीमी", "देर से", "जल्दी", "ठीक", "अजीब", "गुम", "टूटी", "शानदार", "खराब"]
        )
    ],
}
LABELED = 4  # per language: examples 0..3 carry an imported label


def example_id(language: str, index: int) -> str:
    return f"{language}-{index:02d}"


def write_pool(path: Path, languages: Sequence[str] = ("en", "de", "ar", "hi")) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for language in languages:
            for index, text in enumerate(TEXTS[language]):
                row = {"id": example_id(language, index), "text": text, "language": language}
                if index < LABELED:
                    row["label"] = LABELS[index % 3]
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_project(
    folder: Path, *, title: str = "curate-test", labelstudio: str = "", extra: str = ""
) -> Path:
    """A curate.toml for a test store in `folder` (languages given: no detector needed)."""
    path = folder / "curate.toml"
    path.write_text(
        f"""
[store]
path = "store"

[languages]
detection_accuracy = "low"

[labels]
names = {json.dumps(list(LABELS))}

[labelstudio]
project_title = "{title}"
{labelstudio}
{extra}
""",
        encoding="utf-8",
    )
    return path


def build_store(
    folder: Path,
    *,
    round_items: Sequence[str] | None = None,
    proxy_model_version: str | None = "proxy-v1",
    **project: str,
) -> tuple[Config, int]:
    """Ingest the test pool and record one round (the unlabeled examples by default).

    Round items get ranks in the given order, a score, and a predicted label (`negative` for
    even ranks, none for odd ones). Returns the config and the round id.
    """
    config_path = write_project(folder, **project)
    config = load_config(config_path)
    pool = write_pool(folder / "pool.jsonl")
    with Store(config.store.path) as store:
        ingest_files(store, config, [pool], progress=False)
        if round_items is None:
            round_items = [
                example_id(language, index)
                for language in ("en", "de", "ar", "hi")
                for index in range(LABELED, len(TEXTS[language]))
            ]
        round_id = add_round(store, round_items, proxy_model_version=proxy_model_version)
    return config, round_id


def add_round(
    store: Store, example_ids: Sequence[str], *, proxy_model_version: str | None = "proxy-v1"
) -> int:
    items = [
        RoundItem(
            example_id=example,
            rank=rank,
            score=1.0 - rank / 100,
            reason="test",
            predicted_label="negative" if rank % 2 == 0 else None,
            predicted_score=0.4 if rank % 2 == 0 else None,
        )
        for rank, example in enumerate(example_ids, start=1)
    ]
    return record_round(
        store,
        strategy="test",
        allocation="equal",
        budget=len(items),
        decision={},
        proxy_model_version=proxy_model_version,
        items=items,
    )


def export_task(task_id: int, data: dict, annotations: Sequence[dict], project: int = 7) -> dict:
    """A task as Label Studio's JSON export writes it."""
    return {"id": task_id, "project": project, "data": data, "annotations": list(annotations)}


def export_annotation(
    annotation_id: int,
    user: int,
    label: str | None,
    *,
    cancelled: bool = False,
    updated_at: str = "2026-01-01T00:00:00Z",
    project: int = 7,
) -> dict:
    result = (
        []
        if label is None
        else [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ]
    )
    return {
        "id": annotation_id,
        "completed_by": user,
        "result": result,
        "was_cancelled": cancelled,
        "lead_time": 2.5,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": updated_at,
        "project": project,
    }


class FakeLabelStudio:
    """An in-memory stand-in for labeling.client.LabelStudioClient (same methods)."""

    url = "http://fake"

    def __init__(self) -> None:
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}  # task id -> {"project", "data", "overlap", ...}
        self.next_task = 1
        self.imports = 0
        self.overlap_patches = 0
        # Failure injection for import requests: "lost" = applied but the answer is lost,
        # "down" = not applied.
        self.import_faults: list[str] = []
        self.sleeps: list[float] = []
        self.exported: list[int] = []  # tasks per export call

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def whoami(self) -> dict:
        return {"id": 1, "email": "admin@example.org"}

    def find_projects(self, title: str) -> list[dict]:
        return [
            {"id": i, "title": p["title"]}
            for i, p in sorted(self.projects.items())
            if p["title"] == title
        ]

    def get_project(self, project_id: int) -> dict:
        if project_id not in self.projects:
            raise LabelStudioNotFound("no project")
        return {"id": project_id, **self.projects[project_id]}

    def create_project(self, **fields) -> int:  # noqa: ANN003
        project_id = len(self.projects) + 1
        self.projects[project_id] = dict(fields)
        return project_id

    def update_project(self, project_id: int, **fields) -> None:  # noqa: ANN003
        self.projects[project_id].update(fields)

    def list_tasks(self, project_id: int):  # noqa: ANN201
        for task_id, task in sorted(self.tasks.items()):
            if task["project"] == project_id:
                yield ServerTask(
                    task_id, dict(task["data"]), task["overlap"], len(task["annotations"])
                )

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        fault = self.import_faults.pop(0) if self.import_faults else None
        if fault == "down":
            raise LabelStudioUnavailable("fake: server down")
        ids = []
        for task in tasks:
            self.tasks[self.next_task] = {
                "project": project_id,
                "data": task["data"],
                "predictions": task["predictions"],
                "overlap": self.projects[project_id].get("maximum_annotations", 1),
                "annotations": [],
            }
            ids.append(self.next_task)
            self.next_task += 1
        self.imports += 1
        if fault == "lost":
            raise LabelStudioUnavailable("fake: read timeout after the import was applied")
        return ids

    def set_overlap(self, task_id: int, overlap: int) -> None:
        self.tasks[task_id]["overlap"] = overlap
        self.overlap_patches += 1

    def export_tasks(self, project_id: int, task_ids: Sequence[int]) -> list[dict]:
        self.exported.append(len(task_ids))
        return [
            {
                "id": task_id,
                "project": project_id,
                "data": self.tasks[task_id]["data"],
                "annotations": list(self.tasks[task_id]["annotations"]),
            }
            for task_id in task_ids
        ]

    def user_emails(self) -> dict[int, str]:
        return {1: "admin@example.org", 2: "ann2@example.org", 3: "ann3@example.org"}

    def task_of(self, example: str) -> int:
        (task_id,) = [i for i, t in self.tasks.items() if t["data"]["example_id"] == example]
        return task_id
