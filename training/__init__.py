"""training: LoRA adapters on a frozen multilingual backbone, trained on the curated labels.

The wing that turns the store's verified labels into a classifier, per language:

* :mod:`training.config` — the validated `[training]` section (frozen pydantic models with a `kind`,
  a registry, JSON save/load). Light: importing it loads no torch.
* :mod:`training.data` — splits (per-language validation, stratified), one cached
  tokenization, temperature-based language sampling and length-grouped batches.
* :mod:`training.model` — `AutoModelForSequenceClassification` + peft LoRA with per-architecture
  defaults, the head in `modules_to_save`, optional MAD-X style language adapters, layer-wise
  learning-rate decay groups, save/load.
* :mod:`training.trainer` — the loop: gradient accumulation, mixed precision on GPU, non-finite
  guards, per-language evaluation, early stopping with a rollback guard, hard budget caps,
  resumable checkpoints; records each run in `training_runs` and under `<store>/runs/<id>/`.
* :mod:`training.predict` — :class:`AdapterModel`: `classes_` and batched `predict_proba`
  for `curate select`.
* :mod:`training.deploy` — merge the adapter into the backbone; dynamic int8 with its accuracy
  change per language.

Reads and writes the store through `curation`; never imports `labeling` or `selection`.
"""

from __future__ import annotations

from typing import Any

from training.config import (
    ADAPTERS,
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

__all__ = [
    "ADAPTERS",
    "CONFIGS",
    "AdamWConfig",
    "AdapterModel",
    "BudgetConfig",
    "DataConfig",
    "EfficiencyConfig",
    "EvaluationConfig",
    "FullFineTuneConfig",
    "LoraConfig",
    "SafetyConfig",
    "TrainResult",
    "Trainer",
    "TrainingConfig",
    "load_config",
    "parse_training_config",
    "train",
]

_LAZY = {
    "AdapterModel": "training.predict",
    "Trainer": "training.trainer",
    "TrainResult": "training.trainer",
    "train": "training.trainer",
}


def __getattr__(name: str) -> Any:
    """Heavy names (torch, transformers, peft) load on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
