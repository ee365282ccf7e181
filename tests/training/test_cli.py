"""`curate train`: JSON contract, report, resume, export and config errors (exit codes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli as run  # noqa: E402
from tests.conftest import run_cli_json as run_json  # noqa: E402
from tests.conftest import write_config
from tests.training.conftest import make_store


@pytest.fixture()
def project(tmp_path: Path, tiny_backbone: Path) -> Path:
    make_store(tmp_path / "data").close()
    write_config(
        tmp_path,
        f"""
[store]
path = "data/store"

[training]
backbone = "{tiny_backbone}"
log_every = 2

[training.adapter]
r = 4

[training.optimizer]
lr = 0.02

[training.data]
batch_size = 8
max_length = 24

[training.evaluation]
every = 2

[training.budget]
max_steps = 100
""",
    )
    return tmp_path


def test_train_json_report_resume(project: Path, capsys) -> None:
    payload = run_json(capsys, "train", "--max-steps", "4")
    assert set(payload) >= {
        "run_id", "trainable_params", "total_params", "peak_memory_mb", "wall_seconds",
        "stopped_because", "best",
    }  # fmt: skip
    assert payload["stopped_because"] == "max_steps: reached 4 steps"
    assert payload["steps"] == 4
    assert 0 < payload["trainable_params"] < payload["total_params"]
    assert set(payload["best"]["per_language"]) == {"de", "en", "es", "fr"}
    assert payload["best"]["worst_language_f1"] == min(payload["best"]["per_language"].values())
    run_dir = project / "data" / "store" / "runs" / payload["run_id"]
    assert (run_dir / "adapter" / "task" / "adapter_config.json").is_file()

    report = run_json(capsys, "train", "--report")
    assert report["run_id"] == payload["run_id"]
    assert [row["language"] for row in report["languages"]] == ["de", "en", "es", "fr"]
    code, out, _ = run(capsys, "train", "--report", "--run", payload["run_id"])
    assert code == 0
    assert "stopped because: max_steps" in out and "mean" in out

    resumed = run_json(capsys, "train", "--resume", "--max-steps", "6")
    assert resumed["run_id"] == payload["run_id"] and resumed["steps"] == 6


def test_train_text_output_and_export(project: Path, capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "train", "--max-steps", "2")
    assert code == 0, err
    assert "de" in out and "stopped because: max_steps" in out
    exported = run_json(capsys, "train", "--export", str(tmp_path / "merged"), "--int8")
    assert Path(exported["path"]).is_dir()
    assert set(exported["int8"]["per_language"]) == {"de", "en", "es", "fr"}
    code, _, err = run(capsys, "train", "--export", str(tmp_path / "merged"))
    assert code == 2 and "already exists" in err


def test_config_errors_and_usage(project: Path, capsys) -> None:
    config = (project / "curate.toml").read_text()
    (project / "curate.toml").write_text(config.replace("r = 4", "rank = 4"))
    code, out, err = run(capsys, "train", "--json")
    assert code == 2 and out == ""
    assert "[training] adapter.rank: unknown key" in err
    (project / "curate.toml").write_text(config)
    code, _, err = run(capsys, "train", "--int8")
    assert code == 2 and "--int8 goes with --export" in err
    code, _, err = run(capsys, "train", "--report")
    assert code == 2 and "no training runs yet" in err
    code, _, err = run(capsys, "train", "--resume")
    assert code == 2 and "no run to resume" in err
    code, _, err = run(capsys, "train", "--max-steps", "0")
    assert code == 2


def test_no_store(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "train")
    assert code == 2 and "no store" in err
