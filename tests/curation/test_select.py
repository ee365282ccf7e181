"""`curate select`: proxy, per-language allocation, strategy, stored rounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curation.cli import main
from curation.config import load_config
from curation.embeddings import EmbeddingCache
from curation.ingest import ingest_files
from curation.store import Store
from tests.conftest import write_config

LANGS = ("en", "es", "hi")
LABELS = ("negative", "neutral", "positive")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """90 labeled + 300 unlabeled examples in 3 languages with label-clustered vectors."""
    write_config(
        tmp_path,
        '[store]\npath = "store"\n[labels]\nnames = ["negative", "neutral", "positive"]\n'
        "[languages]\ndetect = false\n[selection]\ncontrol_share = 0.0\nseed = 7\n",
    )
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)).astype(np.float32)
    rows, vectors = [], []
    for i in range(390):
        label = i % 3
        row = {"id": f"x{i:03d}", "text": f"example {i}", "language": LANGS[(i // 3) % 3]}
        if i < 90:
            row["label"] = LABELS[label]
        rows.append(row)
        vectors.append(centres[label] + 0.9 * rng.standard_normal(16).astype(np.float32))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_config(tmp_path / "curate.toml")
    with Store(config.store.path) as store:
        ingest_files(store, config, [pool], progress=False)
        matrix = np.asarray(vectors, dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        EmbeddingCache.for_config(store, config).add([r["id"] for r in rows], matrix)
    return tmp_path


def run_json(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as caught:
        main([*args, "--json"])
    out, err = capsys.readouterr()
    assert caught.value.code == 0, err
    return json.loads(out)


def test_select_stores_a_round_with_scores_reasons_and_allocation(project: Path, capsys) -> None:
    result = run_json(
        capsys, "select", "--budget", "30", "--allocation", "equal", "--output", "round.jsonl"
    )
    assert result["selected"] == 30
    assert result["per_language"] == {"en": 10, "es": 10, "hi": 10}
    assert result["strategy"] == "default" and result["allocation"] == "equal"
    assert result["proxy_model_version"]
    lines = [json.loads(line) for line in (project / "round.jsonl").read_text().splitlines()]
    assert [line["rank"] for line in lines] == list(range(1, 31))
    assert all(not line["id"] < "x090" for line in lines)  # only unlabeled candidates
    assert len({line["id"] for line in lines}) == 30
    assert all(line["reason"] and line["predicted_label"] in LABELS for line in lines)
    with Store(project / "store") as store:
        stored = store.conn.execute(
            "SELECT strategy, allocation, budget, allocation_decision, proxy_model_version "
            "FROM selection_rounds WHERE id = ?",
            (result["round_id"],),
        ).fetchone()
        assert tuple(stored)[:3] == ("default", "equal", 30)
        decision = json.loads(stored["allocation_decision"])
        assert decision["per_language"] == {"en": 10, "es": 10, "hi": 10}
        assert decision["explanations"]["hi"] == "hi: 10 of 30, equal share"
        count = store.conn.execute("SELECT COUNT(*) FROM round_items").fetchone()[0]
        assert count == 30


def test_never_selected_twice_unless_reselect(project: Path, capsys) -> None:
    first = run_json(capsys, "select", "--budget", "150", "--strategy", "margin")
    second = run_json(capsys, "select", "--budget", "200", "--strategy", "margin")
    assert first["selected"] == 150
    assert second["selected"] == 150 and second["shortfall"] == 50  # only 150 left
    with Store(project / "store") as store:
        ids = [row[0] for row in store.conn.execute("SELECT example_id FROM round_items")]
    assert len(ids) == len(set(ids)) == 300
    with pytest.raises(SystemExit) as caught:
        main(["select", "--budget", "5"])
    assert caught.value.code == 2
    assert "no candidates left" in capsys.readouterr().err
    again = run_json(capsys, "select", "--budget", "5", "--reselect", "--strategy", "random")
    assert again["selected"] == 5


def test_language_filter_and_need_allocation(project: Path, capsys) -> None:
    only_hi = run_json(capsys, "select", "--budget", "12", "-l", "hi", "--strategy", "entropy")
    assert only_hi["per_language"] == {"hi": 12}
    need = run_json(capsys, "select", "--budget", "30", "--allocation", "need")
    assert sum(need["per_language"].values()) == 30
    assert set(need["explanations"]) == {"en", "es", "hi"}
    assert all("F1" in text for text in need["explanations"].values())


def test_control_slice_is_random_and_flagged(project: Path, capsys) -> None:
    write_config(
        project,
        '[store]\npath = "store"\n[labels]\nnames = ["negative", "neutral", "positive"]\n'
        "[languages]\ndetect = false\n[selection]\ncontrol_share = 0.2\n",
    )
    result = run_json(capsys, "select", "--budget", "30", "--allocation", "equal")
    assert result["control"] == 6  # 20% of each language's 10
    with Store(project / "store") as store:
        rows = store.conn.execute(
            "SELECT reason, score FROM round_items WHERE is_control = 1"
        ).fetchall()
    assert len(rows) == 6 and all(r[0] == "random control" and r[1] is None for r in rows)


def test_unknown_strategy_is_bad_input(project: Path, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["select", "--strategy", "psychic"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "unknown selection strategy 'psychic'" in err and "margin" in err


def test_need_allocation_reuses_a_stored_evaluation_of_the_same_labels(
    project: Path, capsys, monkeypatch
) -> None:
    import curation.pipeline as pipeline
    import curation.quality as quality

    config = load_config(project / "curate.toml")
    with Store(config.store.path) as store:
        pool = pipeline.load_pool(store, config)
        evaluation = pipeline.evaluate_proxy(store, config, pool)
        assert evaluation["reused_evaluation"] is None and evaluation["labels"] == 90
        fingerprint = evaluation["fingerprint"]
        # Different seed or one changed label: a different labeled-set fingerprint.
        assert pipeline.labels_fingerprint(pool, config, 8) != fingerprint
        relabeled = pipeline.PoolArrays(**{**pool.__dict__, "labels": pool.labels.copy()})
        relabeled.labels[0] = "positive" if relabeled.labels[0] != "positive" else "neutral"
        assert pipeline.labels_fingerprint(relabeled, config, 7) != fingerprint
        # A stored evaluation with made-up figures: `need` must allocate from those, not CV.
        made_up = {"en": 0.9, "es": 0.8, "hi": 0.1}
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO evaluations (created_at, model, labels, per_language, fingerprint) "
                "VALUES ('2026-01-01', ?, 90, ?, ?)",
                (pipeline.PROXY_MODEL, json.dumps(made_up), fingerprint),
            )

        # Likewise a stored calibration of the same labels: select must not cross-validate.
        conn_payload = {"temperatures": {}, "global_temperature": 1.0, "report": {}}
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO proxy_calibrations (fingerprint, created_at, payload) "
                "VALUES (?, '2026-01-01', ?)",
                (fingerprint, json.dumps(conn_payload)),
            )

    def no_cross_validation(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("cross-validated although a stored evaluation matches")

    monkeypatch.setattr(pipeline, "labeled_out_of_fold", no_cross_validation)
    monkeypatch.setattr(quality, "labeled_out_of_fold", no_cross_validation)
    need = run_json(capsys, "select", "--budget", "30", "--allocation", "need")
    with Store(project / "store") as store:
        (decision,) = store.conn.execute(
            "SELECT allocation_decision FROM selection_rounds WHERE id = ?", (need["round_id"],)
        ).fetchone()
    assert json.loads(decision)["validation_f1"] == made_up
    # The weakest language (hi, 0.1) gets the largest share.
    assert max(need["per_language"], key=need["per_language"].get) == "hi"
