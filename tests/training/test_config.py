"""`[training]` validation: frozen configs with a kind, round trips and errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

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
    with pytest.raises(ValidationError, match="Instance is frozen"):
        LoraConfig().r = 3  # type: ignore[misc]


def test_repr_shows_only_what_differs() -> None:
    assert repr(TrainingConfig()) == "TrainingConfig()"
    assert repr(LoraConfig(r=4)) == "LoraConfig(r=4)"
    config = parse_training_config({"adapter": {"r": 4}, "budget": {"max_steps": 9}})
    assert repr(config) == (
        "TrainingConfig(adapter=LoraConfig(r=4), budget=BudgetConfig(max_steps=9))"
    )


LORA_KEYS = (
    "r, alpha, dropout, target_modules, modules_to_save, bias, language_adapters, language_r, "
    "language_alpha"
)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"adapter": {"rank": 4}},
            f"[training] adapter.rank: unknown key (lora takes: {LORA_KEYS})",
        ),
        (
            {"epochs": 3},
            "[training] epochs: unknown key (training takes: backbone, seed, device, log_every, "
            "checkpoint_every, adapter, optimizer, data, evaluation, budget, efficiency, safety)",
        ),
        (
            {"data": {"batchsize": 3}},
            "[training] data.batchsize: unknown key (data takes: max_length, batch_size, "
            "effective_batch_size, eval_batch_size, sampling_alpha, group_by_length, "
            "validation_fraction, validation_source, languages, text_prefix)",
        ),
        (
            {"budget": {"max_hours": 3}},
            "[training] budget.max_hours: unknown key (budget takes: max_steps, max_epochs, "
            "max_minutes, max_gpu_hours)",
        ),
        (
            {"evaluation": {"every": 0}},
            "[training] evaluation.every: Input should be greater than or equal to 1",
        ),
        (
            {"adapter": {"kind": "qlora"}},
            "[training] adapter.kind: unknown kind 'qlora' (known: full, lora)",
        ),
        (
            {"adapter": {"kind": "full", "r": 8}},
            "[training] adapter.r: unknown key (full takes: freeze_embeddings)",
        ),
        (
            {"optimizer": {"kind": "sgd"}},
            "[training] optimizer.kind: unknown kind 'sgd' (known: adamw)",
        ),
        ({"data": {"kind": "budget"}}, "[training] data.kind: unknown kind 'budget' (known: data)"),
        ({"adapter": {"r": "8"}}, "[training] adapter.r: Input should be a valid integer"),
        ({"adapter": {"r": True}}, "[training] adapter.r: Input should be a valid integer"),
        ({"adapter": {"dropout": 1.0}}, "[training] adapter.dropout: Input should be less than 1"),
        (
            {"adapter": {"target_modules": "attention"}},
            "[training] adapter.target_modules: must be 'auto' or 'all-linear' or a list of module "
            "names, got 'attention'",
        ),
        (
            {"adapter": {"target_modules": ["query", "query"]}},
            "[training] adapter.target_modules: must not repeat a name",
        ),
        (
            {"adapter": {"language_adapters": ["*", "hi"]}},
            "[training] adapter.language_adapters: '*' means every language; list nothing else",
        ),
        (
            {"evaluation": {"target": "median"}},
            "[training] evaluation.target: Input should be 'mean' or 'worst'",
        ),
        (
            {"efficiency": {"precision": "int8"}},
            "[training] efficiency.precision: Input should be 'auto', 'fp32', 'bf16' or 'fp16'",
        ),
        (
            {"device": "gpu"},
            "[training] device: must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'",
        ),
        (
            {"data": {"sampling_alpha": 1.5}},
            "[training] data.sampling_alpha: Input should be less than or equal to 1",
        ),
        (
            {"data": {"batch_size": 16, "effective_batch_size": 8}},
            "[training] data.effective_batch_size: must be >= batch_size (16), got 8",
        ),
        ({"budget": "fast"}, "[training] budget: must be a table, got 'fast'"),
        (
            {"optimizer": {"lr": float("nan")}},
            "[training] optimizer.lr: Input should be a finite number",
        ),
        # Strict types, like curation.config: TOML has real integers and booleans (issue 16).
        (
            {"data": {"batch_size": "64"}},
            "[training] data.batch_size: Input should be a valid integer",
        ),
        (
            {"data": {"group_by_length": "yes"}},
            "[training] data.group_by_length: Input should be a valid boolean",
        ),
        (
            {"data": {"languages": ["de", " "]}},
            "[training] data.languages.1: must be a non-empty string",
        ),
    ],
)
def test_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_training_config(raw)
    assert str(caught.value) == message


def test_direct_construction_is_validated() -> None:
    # Constructed in code, a config is a plain pydantic model: ValidationError, key in `loc`.
    with pytest.raises(ValidationError) as caught:
        LoraConfig(r=0)
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("r",), "Input should be greater than or equal to 1")
    ]
    with pytest.raises(ValidationError) as caught:
        TrainingConfig(adapter=DataConfig())  # type: ignore[arg-type]
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [
        (("adapter",), "union_tag_invalid")
    ]
    # From a mapping (the file), the same problems are one ConfigError line naming the key.
    with pytest.raises(ConfigError) as caught_config:
        LoraConfig.from_dict({"r": 0})
    assert str(caught_config.value) == (
        "[training] adapter.r: Input should be greater than or equal to 1"
    )


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
    with pytest.raises(ConfigError) as caught:
        TrainingConfig().with_budget(max_steps=0)
    assert str(caught.value) == (
        "[training] budget.max_steps: Input should be greater than or equal to 1"
    )
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


@pytest.mark.parametrize("kind", sorted(NON_DEFAULT))
def test_model_dump_validate_round_trip(kind: str) -> None:
    # Every config model survives pydantic's own dump -> validate, in Python and JSON modes.
    model = type(NON_DEFAULT[kind])
    for config in (model(), NON_DEFAULT[kind]):
        assert model.model_validate(config.model_dump()) == config
        assert model.model_validate(config.model_dump(mode="json")) == config
        assert model.model_validate_json(config.model_dump_json()) == config
        assert config.model_dump()["kind"] == kind


@pytest.mark.parametrize("kind", sorted(NON_DEFAULT))
def test_unknown_key_is_refused_by_every_model(kind: str) -> None:
    model = type(NON_DEFAULT[kind])
    with pytest.raises(ValidationError) as raw_error:
        model.model_validate({"no_such_key": 1})
    assert [error["type"] for error in raw_error.value.errors()] == ["extra_forbidden"]
    with pytest.raises(ConfigError) as caught:
        model.from_dict({"no_such_key": 1})
    where = f"{model.section}no_such_key"
    assert str(caught.value) == (
        f"[training] {where}: unknown key ({kind} takes: {', '.join(model.keys())})"
    )
