"""A small, fully populated store for the dashboard's tests and README screenshots.

Built through the project's own code where it exists: `curation.ingest.ingest_files` (the
shipped multilingual sample pool, with most labels held back, plus the bad-rows CSV and a row
whose text is HTML), synthetic vectors through `EmbeddingCache.add`, and two rounds from
`curation.pipeline.select_round`. Label Studio activity (tasks, annotations, resolved labels),
training runs, a nightly run and a simulation result are written as the labeling, training and
nightly steps record them (their writers are not all built yet), directly through
`Store.transaction()`.

`build_store(folder)` returns the expected numbers the tests compare against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from curation.config import load_config
from curation.embeddings import EmbeddingCache
from curation.ingest import ingest_files
from curation.pipeline import SelectionRequest, select_round
from curation.store import Store

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
LABELS = ("negative", "neutral", "positive")
LANGUAGES = ("ar", "de", "en", "es", "fr", "hi", "ru", "zh")
XSS_TEXT = "<script>alert('xss')</script> <b>bold</b> [click](javascript:alert(1))"
LABELED_PER_LANGUAGE = 12  # rows <lang>-0001 .. -0012 keep their label
NEAR_DUPLICATES = ("de-0020", "en-0020", "fr-0020")
PULLED_AT = "2026-11-02T10:00:00+00:00"

CONFIG = """
[store]
path = "store"

[embedding]
model = "sentence-transformers/all-MiniLM-L6-v2"

[languages]
allowed = ["ar", "de", "en", "es", "fr", "hi", "ru", "zh"]
detect = true
min_confidence = 0.5
detection_accuracy = "low"

[labels]
names = ["negative", "neutral", "positive"]

[selection]
control_share = 0.2
seed = 7

[labelstudio]
min_agreement = 0.6

[training.budget]
max_gpu_hours = 2
"""


def _pool_rows() -> tuple[list[dict], dict[str, str]]:
    """The sample pool with labels held back beyond the first 12 per language; truth by id."""
    rows, truth = [], {}
    for line in (SAMPLES / "pool.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        truth[row["id"]] = row["label"]
        if int(row["id"].rsplit("-", 1)[1]) > LABELED_PER_LANGUAGE:
            row.pop("label")
        rows.append(row)
    rows.append({"id": "xss-0001", "text": XSS_TEXT, "language": "en"})
    truth["xss-0001"] = "neutral"
    # Rejected (no such language), so the quarantine's raw row holds markup too.
    rows.append({"id": "xss-0002", "text": XSS_TEXT, "language": "xx-notalanguage"})
    return rows, truth


def _vectors(ids: list[str], languages: list[str], truth: dict[str, str]) -> np.ndarray:
    """Label-clustered vectors with a per-language offset (16-d, unit length, seeded)."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((len(LABELS), 16))
    offsets = {code: 0.5 * rng.standard_normal(16) for code in (*LANGUAGES, "und")}
    out = np.empty((len(ids), 16))
    for i, (example_id, language) in enumerate(zip(ids, languages, strict=True)):
        label = truth.get(example_id, "neutral")
        out[i] = (
            centres[LABELS.index(label)]
            + offsets.get(language, offsets["und"])
            + 1.1 * rng.standard_normal(16)
        )
    # Planted near-duplicates across languages (think translations): one cluster of three.
    position = {example_id: i for i, example_id in enumerate(ids)}
    planted = [position[i] for i in NEAR_DUPLICATES if i in position]
    out[planted] = out[planted[0]] + 0.01 * rng.standard_normal((len(planted), 16))
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def _label_studio(store: Store, truth: dict[str, str]) -> dict[str, Any]:
    """Round 1 pushed to project 1, three annotators (two per task, a third on some), four
    gold tasks, one skipped annotation; agreeing pairs resolve to a label."""
    conn = store.conn
    items = conn.execute(
        "SELECT r.example_id, e.language FROM round_items r JOIN examples e ON e.id = "
        "r.example_id WHERE r.round_id = 1 ORDER BY r.rank"
    ).fetchall()
    gold = conn.execute(
        "SELECT l.example_id, l.label FROM labels l JOIN examples e ON e.id = l.example_id "
        "WHERE e.language IN ('en', 'hi') ORDER BY l.example_id LIMIT 4"
    ).fetchall()
    other = {label: LABELS[(LABELS.index(label) + 1) % 3] for label in LABELS}
    annotation_id = 0
    resolved, queue = 0, 0
    queued: list[tuple[str, list[str]]] = []
    with store.transaction():
        for index, (example_id, _language) in enumerate(items):
            task_id = 1000 + index
            conn.execute(
                "INSERT INTO tasks (example_id, project_id, task_id, round_id, is_gold, "
                "pushed_at) VALUES (?, 1, ?, 1, 0, '2026-11-02T08:00:00+00:00')",
                (example_id, task_id),
            )
            if index % 5 == 2:
                continue  # not annotated yet
            true = truth.get(example_id, "neutral")
            choices = {"ana": true, "ben": other[true] if index % 4 == 1 else true}
            if index % 3 == 0:
                choices["chen"] = true if index % 9 else other[true]
            for k, (annotator, choice) in enumerate(choices.items()):
                annotation_id += 1
                conn.execute(
                    "INSERT INTO annotations (annotation_id, project_id, task_id, example_id, "
                    "annotator, choice, was_cancelled, lead_time, created_at, pulled_at) "
                    "VALUES (?, 1, ?, ?, ?, ?, 0, ?, '2026-11-02T09:00:00+00:00', "
                    "'2026-11-02T10:00:00+00:00')",
                    (annotation_id, task_id, example_id, annotator, choice, 10.0 + 2 * k + index),
                )
            values = list(choices.values())
            top = max(set(values), key=values.count)
            if values.count(top) / len(values) >= 0.6 and values.count(top) > 1:
                resolved += 1
                conn.execute(
                    "INSERT INTO labels (example_id, label, source, updated_at) "
                    "VALUES (?, ?, 'labelstudio', '2026-11-02T10:00:00+00:00')",
                    (example_id, top),
                )
            else:
                queue += 1
                queued.append((example_id, values))
        for index, (example_id, gold_label) in enumerate(gold):
            task_id = 2000 + index
            conn.execute(
                "INSERT INTO tasks (example_id, project_id, task_id, round_id, is_gold, "
                "pushed_at) VALUES (?, 1, ?, NULL, 1, '2026-11-02T08:00:00+00:00')",
                (example_id, task_id),
            )
            true = gold_label
            for annotator in ("ana", "ben"):
                annotation_id += 1
                choice = other[true] if (annotator == "ben" and index == 0) else true
                conn.execute(
                    "INSERT INTO annotations (annotation_id, project_id, task_id, example_id, "
                    "annotator, choice, was_cancelled, lead_time, created_at, pulled_at) "
                    "VALUES (?, 1, ?, ?, ?, ?, 0, 20.0, '2026-11-02T09:00:00+00:00', "
                    "'2026-11-02T10:00:00+00:00')",
                    (annotation_id, task_id, example_id, annotator, choice),
                )
        annotation_id += 1
        conn.execute(
            "INSERT INTO annotations (annotation_id, project_id, task_id, example_id, annotator, "
            "choice, was_cancelled, lead_time, pulled_at) VALUES (?, 1, 1000, ?, 'dee', NULL, "
            "1, 3.0, '2026-11-02T10:00:00+00:00')",
            (annotation_id, items[0][0]),
        )
    stored = _pull_tables(store, queued)
    return {
        "stored": stored,
        "tasks": len(items) + len(gold),
        "resolved": resolved,
        "queue": queue,
        "gold_tasks": len(gold),
    }


def _pull_tables(store: Store, queued: list[tuple[str, list[str]]]) -> bool:
    """What `curate pull` stores for the dashboard (schema v3), where the store has it:
    per-language agreement and per-annotator gold accuracy at two pulls (the dashboard shows
    the latest), and the adjudication queue."""
    have = {row[0] for row in store.conn.execute("SELECT name FROM sqlite_master")}
    if not {"agreement_stats", "annotator_gold", "adjudication_queue"} <= have:
        return False
    with store.transaction() as conn:
        for when, shift in (("2026-11-01T10:00:00+00:00", -0.2), (PULLED_AT, 0.0)):
            for i, code in enumerate(LANGUAGES):
                conn.execute(
                    "INSERT INTO agreement_stats (computed_at, language, examples, annotations, "
                    "annotators, units, krippendorff_alpha, fleiss_kappa, percent_agreement, "
                    "labels, needs_adjudication) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        when,
                        code,
                        5,
                        9,
                        3,
                        4,
                        0.4 + 0.05 * i + shift,
                        0.38 + 0.05 * i + shift,
                        0.7 + 0.02 * i + shift,
                        3,
                        1,
                    ),
                )
            for annotator, correct in (("ana", 2), ("ben", 1)):
                conn.execute(
                    "INSERT INTO annotator_gold (computed_at, annotator, language, answered, "
                    "correct, accuracy) VALUES (?, ?, 'en', 2, ?, ?)",
                    (when, annotator, correct, correct / 2),
                )
        for example_id, values in queued:
            counts = {label: values.count(label) for label in sorted(set(values))}
            conn.execute(
                "INSERT INTO adjudication_queue (example_id, reason, votes, agreement, "
                "updated_at) VALUES (?, 'tie', ?, 0.5, ?)",
                (example_id, json.dumps(counts), PULLED_AT),
            )
    return True


def _training_runs(store: Store) -> list[dict[str, Any]]:
    """Two finished adapter runs in the format training.runs writes."""
    runs = []
    for number, (train, base) in enumerate([(96, 0.52), (130, 0.61)], start=1):
        per_language = {
            code: round(base + 0.03 * i - (0.25 if code == "hi" else 0), 4)
            for i, code in enumerate(LANGUAGES)
        }
        worst = min(sorted(per_language), key=per_language.get)
        matrices = {
            code: [[5, 1, 0], [1, 4, 1], [0, 1, 5 + i % 2]] for i, code in enumerate(LANGUAGES)
        }
        metrics = {
            "trainable_params": 73_731 * number,
            "total_params": 22_786_051,
            "peak_memory_mb": 812.5 + 100 * number,
            "wall_seconds": 95.0 * number,
            "gpu_hours": 0.25 * number,
            "steps": 300 * number,
            "examples": {
                "train": {code: train // 8 for code in LANGUAGES},
                "validation": {code: 4 for code in LANGUAGES},
            },
            "best": {
                "step": 250,
                "per_language": per_language,
                "mean_macro_f1": round(float(np.mean(list(per_language.values()))), 6),
                "worst_language": worst,
                "worst_language_f1": per_language[worst],
                "confusion_matrices": matrices,
            },
            "evaluations": [
                {
                    "step": step,
                    "per_language": {c: round(v * step / 250, 4) for c, v in per_language.items()},
                }
                for step in (50, 150, 250)
            ],
        }
        run_id = f"2026110{number}T020000-00{number}a"
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO training_runs (id, started_at, finished_at, status, config, metrics, "
                "adapter_path, stopped_because) VALUES (?, ?, ?, 'finished', '{}', ?, ?, "
                "'patience')",
                (
                    run_id,
                    f"2026-11-0{number}T02:00:00+00:00",
                    f"2026-11-0{number}T02:30:00+00:00",
                    json.dumps(metrics),
                    f"runs/{run_id}/adapter",
                ),
            )
        runs.append({"id": run_id, "metrics": metrics})
    return runs


def _nightly(store: Store) -> dict[str, Any] | None:
    """A nightly `curate run` with its stages, when the store has schema v2's `runs` table."""
    have = {row[0] for row in store.conn.execute("SELECT name FROM sqlite_master")}
    if "runs" not in have:
        return None
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, started_at, finished_at, status, pid, dry_run, warnings) "
            "VALUES ('night-2026-11-02', '2026-11-02T01:00:00+00:00', "
            "'2026-11-02T01:42:00+00:00', 'finished', 4242, 0, ?)",
            (json.dumps(["hi: fewer than 10 validation labels"]),),
        )
        if "run_steps" in have:
            for stage, counts in (
                ("ingest", {"added": 0}),
                ("embed", {"embedded": 0}),
                ("select", {"selected": 40}),
            ):
                conn.execute(
                    "INSERT INTO run_steps (run_id, stage, started_at, finished_at, status, "
                    "counts) VALUES ('night-2026-11-02', ?, '2026-11-02T01:00:00+00:00', "
                    "'2026-11-02T01:10:00+00:00', 'finished', ?)",
                    (stage, json.dumps(counts)),
                )
    return {"status": "finished", "id": "night-2026-11-02"}


def _evaluations(store: Store) -> bool:
    """Per-language macro-F1 over time (`evaluations`, schema v2), where the store has it."""
    have = {row[0] for row in store.conn.execute("SELECT name FROM sqlite_master")}
    if "evaluations" not in have:
        return False
    with store.transaction() as conn:
        for k, labels in enumerate((96, 127, 160)):
            per_language = {
                c: round(0.45 + 0.08 * k + 0.02 * i, 4) for i, c in enumerate(LANGUAGES)
            }
            conn.execute(
                "INSERT INTO evaluations (created_at, run_id, model, labels, mean_macro_f1, "
                "worst_language_f1, per_language) VALUES (?, NULL, 'proxy', ?, ?, ?, ?)",
                (
                    f"2026-11-0{k + 1}T03:00:00+00:00",
                    labels,
                    float(np.mean(list(per_language.values()))),
                    min(per_language.values()),
                    json.dumps(per_language),
                ),
            )
    return True


def _simulation(store_path: Path) -> dict[str, Any]:
    """A `curate simulate` result: margin reaches random's final macro-F1 (0.70, at 300
    labels) with 200 labels: a third saved."""

    def curve(scores: list[float], worst: list[float]) -> list[dict[str, Any]]:
        return [
            {"labels": 100 + 50 * i, "macro_f1": s, "worst_language_f1": w, "per_language": {}}
            for i, (s, w) in enumerate(zip(scores, worst, strict=True))
        ]

    results = {
        "strategies": {
            "random": {
                "aulc_macro_f1": 0.6,
                "curves": [curve([0.5, 0.55, 0.6, 0.65, 0.7], [0.3, 0.35, 0.4, 0.45, 0.5])],
            },
            "margin": {
                "aulc_macro_f1": 0.7,
                "curves": [curve([0.5, 0.6, 0.7, 0.75, 0.78], [0.3, 0.4, 0.5, 0.55, 0.6])],
            },
        },
        "full_pool": {"macro_f1": 0.8, "per_language": {}},
    }
    folder = store_path / "simulations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "margin-vs-random.json").write_text(json.dumps(results), encoding="utf-8")
    return {"best_strategy": "margin", "macro_savings": 1 / 3}


def build_store(folder: Path, *, activity: bool = True) -> dict[str, Any]:
    """Write curate.toml + store/ under `folder`; returns the numbers the pages must show."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "curate.toml").write_text(CONFIG, encoding="utf-8")
    rows, truth = _pool_rows()
    pool = folder / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    config = load_config(folder / "curate.toml")
    expected: dict[str, Any] = {"config": folder / "curate.toml", "store": config.store.path}
    with Store(config.store.path) as store:
        ingest_files(store, config, [pool, SAMPLES / "pool_bad.csv"], progress=False)
        ids, languages = zip(
            *store.conn.execute("SELECT id, language FROM examples ORDER BY id").fetchall(),
            strict=True,
        )
        cache = EmbeddingCache.for_config(store, config)
        cache.add(list(ids), _vectors(list(ids), list(languages), truth))
        if activity:
            first = select_round(
                store,
                config,
                SelectionRequest(budget=40, strategy="margin", allocation="equal", seed=7),
            )
            second = select_round(
                store,
                config,
                SelectionRequest(budget=48, strategy="default", allocation="need", seed=7),
            )
            expected["rounds"] = [first, second]
            expected["labelstudio"] = _label_studio(store, truth)
            expected["training_runs"] = _training_runs(store)
            expected["nightly"] = _nightly(store)
            expected["evaluations"] = _evaluations(store)
            expected["simulation"] = _simulation(config.store.path)
        status = store.status()
        expected["pool"] = status["examples"]
        expected["labeled"] = status["labeled"]
        expected["quarantined"] = status["quarantined"]
        expected["detected"] = store.conn.execute(
            "SELECT COUNT(*) FROM examples WHERE language_source = 'detected'"
        ).fetchone()[0]
        expected["duplicates"] = status["duplicates"]
        expected["per_language"] = status["per_language"]
        # Tasks of a Label Studio project (project 0 holds those only written to an import file).
        expected["in_label_studio"] = store.conn.execute(
            "SELECT COUNT(DISTINCT t.example_id) FROM tasks t LEFT JOIN labels l "
            "ON l.example_id = t.example_id WHERE l.example_id IS NULL AND t.project_id != 0"
        ).fetchone()[0]
    return expected
