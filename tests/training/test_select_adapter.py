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
