"""`curate export`: the columns an unbiased evaluation needs, and stratified, seeded splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from curation.config import load_config
from curation.export import split_indices
from curation.pool import RoundItem, record_round
from curation.store import Store
from tests.conftest import SAMPLES, write_config
from tests.conftest import run_cli as run  # noqa: E402
from tests.conftest import run_cli_json as run_json  # noqa: E402


@pytest.fixture()
def project(tmp_path: Path, capsys) -> Path:
    """The labeled sample pool (316 imported labels) plus three examples labeled from rounds:
    en-u001 (round 1), en-u002 (round 1's random control pick, picked again in round 2) and
    de-u001 (round 2)."""
    write_config(
        tmp_path,
        '[store]\npath = "store"\n[labels]\nnames = ["negative", "neutral", "positive"]\n',
    )
    run_json(capsys, "ingest", str(SAMPLES / "pool.jsonl"), str(SAMPLES / "pool_unlabeled.jsonl"))
    config = load_config(tmp_path / "curate.toml")
    with Store(config.store.path) as store:
        for items in (
            [
                RoundItem("en-u001", 0, 0.9, "margin"),
                RoundItem("en-u002", 1, None, "control", is_control=True),
            ],
            [RoundItem("en-u002", 0, 0.5, "margin"), RoundItem("de-u001", 1, 0.4, "margin")],
        ):
            record_round(
                store,
                strategy="margin",
                allocation="equal",
                budget=2,
                decision={},
                proxy_model_version=None,
                items=items,
            )
    for example_id, label in (
        ("en-u001", "positive"),
        ("en-u002", "negative"),
        ("de-u001", "neutral"),
    ):
        run_json(capsys, "adjudicate", "--set", example_id, label)
    return tmp_path


def test_export_keeps_round_and_control_flag(project: Path, capsys) -> None:
    result = run_json(capsys, "export", "out.jsonl", "--format", "jsonl")
    assert result["rows"] == 319
    rows = {
        row["id"]: row
        for row in map(json.loads, Path("out.jsonl").read_text(encoding="utf-8").splitlines())
    }
    assert list(rows["en-0001"]) == [
        "id",
        "text",
        "label",
        "language",
        "label_source",
        "round",
        "is_control",
    ]
    picked = {
        example_id: (
            rows[example_id]["label_source"],
            rows[example_id]["round"],
            rows[example_id]["is_control"],
        )
        for example_id in ("en-0001", "en-u001", "en-u002", "de-u001")
    }
    assert picked == {
        "en-0001": ("import", None, False),
        "en-u001": ("adjudicated", 1, False),
        "en-u002": ("adjudicated", 1, True),  # its first round, where it was the control pick
        "de-u001": ("adjudicated", 2, False),
    }
    run_json(capsys, "export", "out-dataset")
    from datasets import load_from_disk

    dataset = load_from_disk("out-dataset")
    assert dataset.features["round"].dtype == "int64"
    assert dataset.features["is_control"].dtype == "bool"
    assert sum(dataset["is_control"]) == 1
    assert sorted(r for r in dataset["round"] if r is not None) == [1, 1, 2]


def test_split_is_stratified_by_language_and_label_exact_and_seeded(project: Path, capsys) -> None:
    result = run_json(
        capsys, "export", "splits", "--split", "train=0.8,validation=0.1,test=0.1", "--seed", "3"
    )
    # 319 rows: 255.2 / 31.9 / 31.9, largest remainders up.
    assert {name: part["rows"] for name, part in result["splits"].items()} == {
        "train": 255,
        "validation": 32,
        "test": 32,
    }
    assert (result["seed"], result["stratified_by"]) == (3, "language|label")
    from datasets import load_from_disk

    splits = load_from_disk("splits")
    assert list(splits) == ["train", "validation", "test"]
    assert {"round", "is_control"} <= set(splits["test"].column_names)
    label_name = splits["train"].features["label"].int2str
    counts = {
        name: Counter(
            f"{language}|{label_name(label)}"
            for language, label in zip(part["language"], part["label"], strict=True)
        )
        for name, part in splits.items()
    }
    total = counts["train"] + counts["validation"] + counts["test"]
    assert sum(total.values()) == 319
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    large = [stratum for stratum, n in total.items() if n >= 10]
    assert len(large) == 24  # 8 languages x 3 labels, 13 or 14 rows each
    for stratum in large:
        for name, fraction in fractions.items():
            assert counts[name][stratum] >= 1, (name, stratum)
            assert abs(counts[name][stratum] - total[stratum] * fraction) < 1, (name, stratum)
    ids = {name: set(part["id"]) for name, part in splits.items()}
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"])
    assert not ids["validation"] & ids["test"]
    # Seeded: the same seed gives the same rows, another seed other rows.
    run_json(
        capsys, "export", "again", "--split", "train=0.8,validation=0.1,test=0.1", "--seed", "3"
    )
    run_json(
        capsys, "export", "other", "--split", "train=0.8,validation=0.1,test=0.1", "--seed", "4"
    )
    assert set(load_from_disk("again")["test"]["id"]) == ids["test"]
    assert set(load_from_disk("other")["test"]["id"]) != ids["test"]


def test_split_as_one_file_per_split(project: Path, capsys) -> None:
    result = run_json(
        capsys, "export", "parts", "--format", "jsonl", "--split", "train=0.75,test=0.25"
    )
    assert {name: part["rows"] for name, part in result["splits"].items()} == {
        "train": 239,
        "test": 80,
    }
    assert sorted(path.name for path in Path("parts").iterdir()) == ["test.jsonl", "train.jsonl"]
    test_rows = [
        json.loads(line) for line in Path("parts/test.jsonl").read_text("utf-8").splitlines()
    ]
    assert len(test_rows) == 80 and {"round", "is_control"} <= set(test_rows[0])
    run_json(capsys, "export", "parquet-parts", "--format", "parquet", "--split", "a=0.5,b=0.5")
    assert sorted(path.name for path in Path("parquet-parts").iterdir()) == [
        "a.parquet",
        "b.parquet",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "train=0.8,test=0.1",
            "error: --split 'train=0.8,test=0.1': the fractions add up to 0.9, not 1",
        ),
        ("train=0.8", "error: --split 'train=0.8': name at least two splits"),
        (
            "train=0.5,train=0.5",
            "error: --split 'train=0.5,train=0.5': split 'train' is named twice",
        ),
        (
            "train:0.8,test=0.2",
            "error: --split 'train:0.8,test=0.2': 'train:0.8' is not NAME=FRACTION "
            "(e.g. train=0.8,validation=0.1,test=0.1)",
        ),
        ("train=x,test=0.2", "error: --split 'train=x,test=0.2': 'x' is not a number"),
        (
            "train=1.5,test=-0.5",
            "error: --split 'train=1.5,test=-0.5': train must be a fraction in (0, 1]",
        ),
    ],
)
def test_bad_split_specs_exit_2_naming_the_problem(
    project: Path, capsys, spec: str, message: str
) -> None:
    code, out, err = run(capsys, "export", "bad", "--split", spec)
    assert (code, out, err.strip()) == (2, "", message)
    assert not Path("bad").exists()


def test_a_stratum_too_small_for_every_split_goes_to_the_largest() -> None:
    strata = ["de|positive"] * 10 + ["hi|neutral"]
    train, validation, test = split_indices(strata, [0.8, 0.1, 0.1], seed=0)
    assert (len(train), len(validation), len(test)) == (9, 1, 1)
    assert 10 in train.tolist()
    # Two strata of two rows, two halves: one row of each stratum in each half.
    strata = ["x", "x", "y", "y"]
    halves = split_indices(strata, [0.5, 0.5], seed=1)
    assert [sorted(strata[i] for i in half) for half in halves] == [["x", "y"], ["x", "y"]]
