"""`[training]` validation: frozen configs with a kind, round trips and errors naming the key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from curation.config import load_config as load_project_config
from curation.errors import ConfigError
from tests.conftest import write_config
from training.config import (
    CONFIGS,
    AdamWConfig,
    BudgetConfig,
    DataConfig,
    EfficiencyConfig,
    EvaluationConfig,
    FullFineTuneConfig,
    LoraConfig,
    SafetyConfig,
    TrainingConfig,
    load_config,
    parse_training_config,
)

# A non-default instance of every registered config.
NON_DEFAULT = {
    "lora": LoraConfig(
        r=16, alpha=32, target_modules=("query", "value"), language_adapters=("hi",)
    ),
    "full": FullFineTuneConfig(freeze_embeddings=True),
    "adamw": AdamWConfig(lr=3e-4, layer_decay=0.8, schedule="cosine", max_grad_norm=None),
    "data": DataConfig(batch_size=4, effective_batch_size=10, languages=("de", "en")),
    "evaluation": EvaluationConfig(every=7, target="worst", patience=None),
    "budget": BudgetConfig(max_steps=3, max_minutes=1.5, max_gpu_hours=0.5, max_epochs=2),
    "efficiency": EfficiencyConfig(precision="bf16", gradient_checkpointing=True),
    "safety": SafetyConfig(max_consecutive_nonfinite=2, max_nonfinite_steps=9),
    "training": TrainingConfig(
        backbone="xlm-roberta-base",
        seed=7,
        adapter=FullFineTuneConfig(),
        budget=BudgetConfig(max_steps=5),
    ),
}


def test_every_registered_config_has_a_non_default_example() -> None:
    assert set(NON_DEFAULT) == set(CONFIGS)
    for kind, config in NON_DEFAULT.items():
        assert config.kind == kind
        assert type(config)() != config, kind


@pytest.mark.parametrize("kind", sorted(NON_DEFAULT))
def test_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    for config in (type(NON_DEFAULT[kind])(), NON_DEFAULT[kind]):
        path = config.save(tmp_path / f"{kind}.json")
        assert json.loads(path.read_text())["kind"] == kind
        loaded = load_config(path)
        assert type(loaded) is type(config)
        assert loaded == config
        assert type(config).load(path) == config
        assert type(config).from_dict(config.to_dict()) == config


def test_save_to_a_folder_and_wrong_class(tmp_path: Path) -> None:
    TrainingConfig().save(tmp_path)
    assert load_config(tmp_path) == TrainingConfig()
    with pytest.raises(ConfigError, match="not a LoraConfig"):
        LoraConfig.load(tmp_path)


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoraConfig().r = 3  # type: ignore[misc]


def test_repr_shows_only_what_differs() -> None:
    assert repr(TrainingConfig()) == "TrainingConfig()"
    assert repr(LoraConfig(r=4)) == "LoraConfig(r=4)"
    config = parse_training_config({"adapter": {"r": 4}, "budget": {"max_steps": 9}})
    assert repr(config) == (
        "TrainingConfig(adapter=LoraConfig(r=4), budget=BudgetConfig(max_steps=9))"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"adapter": {"rank": 4}}, r"\[training\] adapter\.rank: unknown key"),
        ({"epochs": 3}, r"\[training\] epochs: unknown key"),
        ({"data": {"batchsize": 3}}, r"\[training\] data\.batchsize: unknown key"),
        ({"budget": {"max_hours": 3}}, r"\[training\] budget\.max_hours: unknown key"),
        ({"evaluation": {"every": 0}}, r"\[training\] evaluation\.every: must be >= 1"),
        ({"adapter": {"kind": "qlora"}}, r"\[training\] adapter\.kind: unknown kind 'qlora'"),
        ({"adapter": {"kind": "full", "r": 8}}, r"\[training\] adapter\.r: unknown key"),
        ({"optimizer": {"kind": "sgd"}}, r"\[training\] optimizer\.kind: unknown kind"),
        ({"data": {"kind": "budget"}}, r"\[training\] data\.kind: unknown kind 'budget'"),
        ({"adapter": {"r": "8"}}, r"\[training\] adapter\.r: must be an integer"),
        ({"adapter": {"r": True}}, r"\[training\] adapter\.r: must be an integer"),
        ({"adapter": {"dropout": 1.0}}, r"\[training\] adapter\.dropout: must be < 1"),
        ({"adapter": {"target_modules": "attention"}}, r"adapter\.target_modules: must be"),
        ({"adapter": {"language_adapters": ["*", "hi"]}}, r"adapter\.language_adapters"),
        ({"evaluation": {"target": "median"}}, r"evaluation\.target: must be one of"),
        ({"efficiency": {"precision": "int8"}}, r"efficiency\.precision: must be one of"),
        ({"device": "gpu"}, r"\[training\] device: must be"),
        ({"data": {"sampling_alpha": 1.5}}, r"data\.sampling_alpha: must be <= 1"),
        (
            {"data": {"batch_size": 16, "effective_batch_size": 8}},
            r"data\.effective_batch_size: must be >= batch_size \(16\)",
        ),
        ({"budget": "fast"}, r"\[training\] budget: must be a table"),
        ({"optimizer": {"lr": float("nan")}}, r"optimizer\.lr: must be finite"),
    ],
)
def test_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_training_config(raw)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"adapter\.r: must be >= 1"):
        LoraConfig(r=0)
    with pytest.raises(ConfigError, match=r"\[training\] adapter: must be one of"):
        TrainingConfig(adapter=DataConfig())  # type: ignore[arg-type]


def test_from_curate_toml(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
[training]
backbone = "intfloat/multilingual-e5-base"
seed = 3

[training.adapter]
kind = "lora"
r = 16
target_modules = ["query", "value"]
language_adapters = ["*"]

[training.optimizer]
lr = 2e-4
layer_decay = 0.85

[training.data]
batch_size = 8
effective_batch_size = 64
sampling_alpha = 0.3

[training.evaluation]
target = "worst"

[training.budget]
max_steps = 500
max_minutes = 30
""",
    )
    config = parse_training_config(load_project_config(path).training)
    assert config.adapter == LoraConfig(
        r=16, target_modules=("query", "value"), language_adapters=("*",)
    )
    assert config.optimizer.lr == 2e-4 and config.optimizer.layer_decay == 0.85
    assert config.data.accumulation_steps == 8
    assert config.evaluation.target == "worst"
    assert config.budget.max_minutes == 30.0
    assert parse_training_config({}) == TrainingConfig()


def test_resolved_lr_and_budget_overrides() -> None:
    assert AdamWConfig().resolved_lr(LoraConfig()) == 1e-3
    assert AdamWConfig().resolved_lr(FullFineTuneConfig()) == 5e-5
    config = TrainingConfig().with_budget(max_steps=7, max_minutes=None)
    assert config.budget == BudgetConfig(max_steps=7)
    with pytest.raises(ConfigError, match="budget.max_steps: must be >= 1"):
        TrainingConfig().with_budget(max_steps=0)
    assert DataConfig(batch_size=8, effective_batch_size=20).accumulation_steps == 3


def test_training_imports_no_other_step_and_config_is_light() -> None:
    import ast
    import subprocess
    import sys

    package = Path(__file__).resolve().parents[2] / "training"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not {"labeling", "selection"} & set(roots), f"{path.name} imports {roots}"
    code = (
        "import sys, training, training.config; print(sorted({'torch', 'peft'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=package.parent,
    ).stdout.strip()
    assert out == "[]"  # validating `[training]` in the CLI loads no torch
