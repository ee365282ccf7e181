"""Per-architecture LoRA defaults on tiny random models of each family (no hub needed).

xlm-roberta-base and multilingual-e5 are XLM-R models, mdeberta-v3-base is DeBERTa-v2: the same
code paths as these tiny stand-ins, with LoRA on the attention projections and the family's
head (plus any module the checkpoint lacks) saved in full with the adapter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import tiny_config
from training.config import TrainingConfig
from training.model import ARCHITECTURES, text_prefix_for
from training.predict import AdapterModel
from training.trainer import Trainer

SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 130,
}


def _save_tiny(model_type: str, folder: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from curation.embeddings import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()))
    extra = {}
    if model_type == "distilbert":
        extra = {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
    elif model_type == "deberta-v2":
        extra = {"relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"]}
    config = AutoConfig.for_model(
        model_type, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
        **SMALL, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ["xlm-roberta", "deberta-v2", "distilbert"])
def test_family_defaults_train_save_and_reload(model_type: str, store, tmp_path: Path) -> None:
    backbone = _save_tiny(model_type, tmp_path / model_type)
    config = tiny_config(backbone, budget={"max_steps": 2}, evaluation={"every": 2})
    trainer = Trainer(store, config)
    result = trainer.train()
    resolved = result.metrics["resolved"]
    defaults = ARCHITECTURES[model_type]
    assert resolved["model_type"] == model_type
    assert resolved["target_modules"] == list(defaults.target_modules)
    for head in defaults.head_modules:
        assert head in resolved["modules_to_save"]
    names = [name for name, _ in trainer.trainable]
    assert any("lora_A" in name for name in names)
    for head in defaults.head_modules:
        assert any(f"{head}.modules_to_save.task" in name for name in names), head
    rows = store.conn.execute("SELECT text FROM examples ORDER BY rowid LIMIT 30").fetchall()
    texts = [row[0] for row in rows]
    np.testing.assert_allclose(
        AdapterModel.load(result.run_dir).predict_proba(texts),
        trainer.adapter_model().predict_proba(texts),
        atol=1e-6,
    )


def test_e5_backbones_get_the_query_prefix() -> None:
    assert text_prefix_for(TrainingConfig(backbone="intfloat/multilingual-e5-base")) == "query: "
    assert text_prefix_for(TrainingConfig(backbone="xlm-roberta-base")) == ""
    from training.config import DataConfig

    custom = TrainingConfig(
        backbone="intfloat/multilingual-e5-base", data=DataConfig(text_prefix="")
    )
    assert text_prefix_for(custom) == ""
