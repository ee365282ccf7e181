"""Backbone quirks met by the converted multilingual-e5-small, reproduced on tiny BERTs.

The converted e5 folder (curation.e5_convert) writes its pooler as zeros, has 512 positions, and
lives in a per-user cache that another user or machine does not have; each test builds a tiny
backbone with the same property instead of loading the 470 MB model.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from curation.errors import ConfigError
from tests.training.conftest import tiny_config
from training.model import META_FILE, backbone_max_length, load_tokenizer, placeholder_poolers
from training.predict import AdapterModel
from training.trainer import Trainer


def _zero_pooler_backbone(tiny_backbone: Path, folder: Path) -> Path:
    """The tiny BERT with its pooler written as zeros, as the e5 converter writes it."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(tiny_backbone))
    with torch.no_grad():
        model.pooler.dense.weight.zero_()
        model.pooler.dense.bias.zero_()
    model.save_pretrained(folder)
    load_tokenizer(str(tiny_backbone)).save_pretrained(folder)
    return folder


def _texts(store) -> list[str]:
    return [row[0] for row in store.conn.execute("SELECT text FROM examples ORDER BY rowid")]


def test_a_zero_pooler_starts_as_the_identity_trains_and_reloads(
    store, tiny_backbone: Path, tmp_path: Path
) -> None:
    import torch

    backbone = _zero_pooler_backbone(tiny_backbone, tmp_path / "zero-pooler")
    trainer = Trainer(store, tiny_config(backbone, budget={"max_steps": 4}))
    from transformers import BertModel

    assert placeholder_poolers(BertModel.from_pretrained(str(backbone))) == ["pooler"]
    trainer.prepare()
    pooler = trainer.model.base_model.model.bert.pooler
    copy = pooler.modules_to_save["task"].dense
    assert torch.equal(copy.weight, torch.eye(32)) and not copy.bias.any()
    # Only the copy saved with the adapter trains.
    assert not pooler.original_module.dense.weight.requires_grad
    assert trainer.built.newly_initialized == [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
        "classifier.bias",
        "classifier.weight",
    ]
    assert trainer.built.modules_to_save == ["pooler", "classifier"]
    result = trainer.train()
    assert not torch.equal(copy.weight, torch.eye(32))  # it trained
    assert result.metrics["resolved"]["newly_initialized"][0] == "bert.pooler.dense.bias"
    texts = _texts(store)
    np.testing.assert_allclose(
        AdapterModel.load(result.run_dir).predict_proba(texts),
        trainer.adapter_model().predict_proba(texts),
        atol=1e-6,
    )


def test_a_zero_pooler_left_out_of_modules_to_save_stays_zero(
    store, tiny_backbone: Path, tmp_path: Path
) -> None:
    # Frozen and not saved, a re-initialized pooler would be zeros again after reloading: the
    # reloaded model would predict differently from the trained one.
    backbone = _zero_pooler_backbone(tiny_backbone, tmp_path / "zero-pooler")
    config = tiny_config(backbone, adapter={"modules_to_save": ["classifier"]})
    trainer = Trainer(store, config)
    trainer.prepare()
    assert not trainer.model.base_model.model.bert.pooler.dense.weight.any()
    assert trainer.built.newly_initialized == ["classifier.bias", "classifier.weight"]


def test_full_fine_tuning_starts_a_zero_pooler_as_the_identity(
    store, tiny_backbone: Path, tmp_path: Path
) -> None:
    import torch

    backbone = _zero_pooler_backbone(tiny_backbone, tmp_path / "zero-pooler")
    trainer = Trainer(store, tiny_config(backbone, adapter={"kind": "full"}))
    trainer.prepare()
    assert torch.equal(trainer.model.bert.pooler.dense.weight, torch.eye(32))


def test_a_trained_pooler_is_left_as_it_is(store, tiny_backbone: Path) -> None:
    import torch
    from transformers import BertModel

    trainer = Trainer(store, tiny_config(tiny_backbone))
    trainer.prepare()
    original = BertModel.from_pretrained(str(tiny_backbone)).pooler.dense.weight
    copy = trainer.model.base_model.model.bert.pooler.modules_to_save["task"].dense.weight
    assert torch.equal(copy, original)
    assert trainer.built.newly_initialized == ["classifier.bias", "classifier.weight"]


def test_max_length_beyond_the_position_table_is_a_config_error(store, tiny_backbone: Path) -> None:
    # The tiny BERT has 128 positions (e5 has 512): longer inputs would fail in the embeddings.
    assert backbone_max_length(str(tiny_backbone), load_tokenizer(str(tiny_backbone))) == 128
    trainer = Trainer(store, tiny_config(tiny_backbone, data={"max_length": 129}))
    with pytest.raises(ConfigError) as caught:
        trainer.prepare()
    assert str(caught.value) == (
        f"[training] data.max_length: must be <= 128 for backbone {str(tiny_backbone)!r} "
        "(its position table), got 129"
    )
    # Refused before tokenizing the store, and before a run was created.
    assert not (store.path / "cache" / "training-tokens").exists()
    assert not (store.path / "runs").exists()
    Trainer(store, tiny_config(tiny_backbone, data={"max_length": 128})).prepare()


def test_roberta_positions_start_after_the_padding_index(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, XLMRobertaConfig

    from curation.embeddings import packaged_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()))
    XLMRobertaConfig(max_position_embeddings=130, pad_token_id=1).save_pretrained(tmp_path)
    # positions 0 and 1 are reserved (pad + 1): 128 tokens fit, as 512 of xlm-roberta's 514.
    assert backbone_max_length(str(tmp_path), tokenizer) == 128


def test_an_adapter_whose_backbone_folder_is_gone_resolves_the_name_again(
    store, tiny_backbone: Path, tmp_path: Path
) -> None:
    # The converted e5 sits in a per-user cache: a dashboard running as another user, another
    # machine or a cleared cache has no folder at the recorded path.
    backbone = tmp_path / "converted"
    shutil.copytree(tiny_backbone, backbone)
    manifest = {"converter_version": 3, "source": {"sha256": "a" * 64}}
    (backbone / "curate_conversion.json").write_text(json.dumps(manifest), "utf-8")
    trainer = Trainer(store, tiny_config(backbone))
    result = trainer.train()
    meta_path = result.run_dir / "adapter" / META_FILE
    meta = json.loads(meta_path.read_text("utf-8"))
    assert meta["backbone_source"] == str(backbone.resolve())
    assert meta["backbone_revision"] == "a" * 64
    texts = _texts(store)
    expected = trainer.adapter_model().predict_proba(texts)

    meta["backbone_source"] = str(tmp_path / "another-users-cache" / "converted")
    meta_path.write_text(json.dumps(meta), "utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same revision: no warning
        reloaded = AdapterModel.load(result.run_dir)
    np.testing.assert_allclose(reloaded.predict_proba(texts), expected, atol=1e-6)

    meta["backbone_revision"] = "b" * 64
    meta_path.write_text(json.dumps(meta), "utf-8")
    with pytest.warns(RuntimeWarning, match=r"bbbbbbbbbbbb, but .*\(revision aaaaaaaaaaaa\)"):
        AdapterModel.load(result.run_dir)


def test_int8_quantizes_the_word_embeddings_too(store, tiny_backbone: Path) -> None:
    import torch

    result = Trainer(store, tiny_config(tiny_backbone)).train()
    int8 = AdapterModel.load(result.run_dir, int8=True)
    embeddings = int8.model.bert.embeddings
    assert type(embeddings.word_embeddings) is torch.ao.nn.quantized.Embedding
    # position and token-type tables stay float (small, and looked up with strided ids)
    assert type(embeddings.position_embeddings) is torch.nn.Embedding
    assert type(int8.model.classifier) is torch.ao.nn.quantized.dynamic.Linear
    texts = _texts(store)
    fp32 = AdapterModel.load(result.run_dir).predict_proba(texts)
    np.testing.assert_allclose(int8.predict_proba(texts), fp32, atol=0.05)
