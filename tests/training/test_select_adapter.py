"""`curate select` with the trained adapter as the probability source ([selection] proxy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.config import load_config
from curation.embeddings import EmbeddingCache
from curation.store import Store
from tests.conftest import run_cli, run_cli_json, write_config
from tests.training.conftest import make_store, synthetic_rows


@pytest.fixture()
def project(tmp_path: Path, tiny_backbone: Path) -> Path:
    # A third of the rows unlabeled: the candidates.
    rows = [
        {k: v for k, v in row.items() if k != "label" or i % 3}
        for i, row in enumerate(synthetic_rows())
    ]
    make_store(tmp_path / "data", rows).close()
    write_config(
        tmp_path,
        f"""
[store]
path = "data/store"
[labels]
names = ["negative", "neutral", "positive"]
[selection]
proxy = "adapter"
control_share = 0.0
max_similarity = 1.0
allocation = "equal"
[training]
backbone = "{tiny_backbone}"
[training.data]
batch_size = 8
max_length = 24
[training.evaluation]
every = 2
""",
    )
    config = load_config(tmp_path / "curate.toml")
    with Store(config.store.path) as store:
        ids = [row[0] for row in store.conn.execute("SELECT id FROM examples ORDER BY rowid")]
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((len(ids), 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        EmbeddingCache.for_config(store, config).add(ids, vectors)
    return tmp_path


def test_select_uses_the_latest_finished_adapter(project: Path, capsys) -> None:
    code, _, err = run_cli(capsys, "select", "--budget", "4")
    assert code == 2 and "no finished `curate train` run" in err
    trained = run_cli_json(capsys, "train", "--max-steps", "2")
    result = run_cli_json(capsys, "select", "--budget", "8", "--strategy", "margin")
    assert result["proxy_model_version"] == f"adapter:{trained['run_id']}"
    assert result["selected"] == 8
    with Store(project / "data" / "store") as store:
        rows = store.conn.execute(
            "SELECT predicted_label, predicted_score, reason FROM round_items"
        ).fetchall()
    assert len(rows) == 8
    assert all(r[0] in {"negative", "neutral", "positive"} and 0 < r[1] <= 1 for r in rows)
    assert all(r[2].startswith("margin ") for r in rows)


@pytest.mark.slow
def test_select_with_the_adapter_on_ray_picks_what_the_local_engine_picks(
    project: Path, capsys, ray_cluster: str
) -> None:
    """The adapter's probabilities come from actors over the pool's Parquet shards; the picks,
    their scores and predicted labels equal the local engine's (the same store, copied)."""
    import shutil

    trained = run_cli_json(capsys, "train", "--max-steps", "2")
    shutil.copytree(project / "data", project / "data-ray")
    base = (project / "curate.toml").read_text()
    picks = {}
    for engine, store, extra in (
        ("local", "data/store", ""),
        ("ray", "data-ray/store", f'[engine]\nkind = "ray"\naddress = "{ray_cluster}"\n'),
    ):
        (project / "curate.toml").write_text(
            base.replace('path = "data/store"', f'path = "{store}"') + extra
        )
        result = run_cli_json(capsys, "select", "--budget", "8", "--strategy", "margin")
        assert result["engine"] == engine
        assert result["proxy_model_version"] == f"adapter:{trained['run_id']}"
        with Store(project / store) as db:
            picks[engine] = db.conn.execute(
                "SELECT example_id, rank, predicted_label, round(predicted_score, 6), reason "
                "FROM round_items ORDER BY rank"
            ).fetchall()
    assert len(picks["local"]) == 8
    assert picks["ray"] == picks["local"]
    # the actors read the pool's Parquet shards, which the Ray run wrote (the local one did not)
    from curation.pool_shards import pool_shards

    for engine, store in (("local", "data/store"), ("ray", "data-ray/store")):
        with Store(project / store) as db:
            rows = sum(shard.rows for shard in pool_shards(db))
            total = db.conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
        assert rows == (total if engine == "ray" else 0)
