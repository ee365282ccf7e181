"""Fixtures of the training tests: a tiny random BERT backbone and small labeled stores."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

LABELS = ("negative", "neutral", "positive")
# A learnable signal: one cue word per label and language, among random filler words.
CUES = {
    "de": ("schrecklich", "normal", "wunderbar"),
    "en": ("terrible", "okay", "wonderful"),
    "es": ("horrible", "regular", "maravilloso"),
    "fr": ("affreux", "correct", "merveilleux"),
}
FILLER = ["the", "a", "of", "day", "time", "movie", "phone", "food", "service", "city"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models run far faster on one thread (no OpenMP hand-offs on a busy CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d random BERT (no head) with the real MiniLM WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from curation.embeddings import packaged_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def synthetic_rows(
    per_language: int = 30,
    languages: Sequence[str] = ("de", "en", "es", "fr"),
    seed: int = 0,
) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for code in languages:
        for i in range(per_language):
            label = i % 3
            words = rng.sample(FILLER, 3) + [CUES[code][label]] + rng.sample(FILLER, 2)
            rows.append(
                {
                    "id": f"{code}-{i}",
                    "text": " ".join(words) + f" n{i}",
                    "label": LABELS[label],
                    "language": code,
                }
            )
    return rows


def make_store(folder: Path, rows: list[dict[str, Any]] | None = None, *, source: str = "pool"):
    """A store under `folder/store` with `rows` ingested by the project's own ingest."""
    from curation.config import config_from_dict
    from curation.ingest import ingest_files
    from curation.store import Store

    rows = synthetic_rows() if rows is None else rows
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{source}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    config = config_from_dict(
        {
            "store": {"path": str(folder / "store")},
            "languages": {"detect": False},
            "labels": {"names": list(LABELS)},
        }
    )
    store = Store(config.store.path)
    ingest_files(store, config, [path], source=source, progress=False)
    return store


def tiny_config(backbone: Path, **sections: Any):
    """A fast TrainingConfig on the tiny backbone; keyword arguments override sections."""
    from training.config import parse_training_config

    raw: dict[str, Any] = {
        "backbone": str(backbone),
        "log_every": 2,
        "adapter": {"r": 4, "alpha": 8},
        "optimizer": {"lr": 0.02, "warmup_ratio": 0.0},
        "data": {"batch_size": 8, "effective_batch_size": 16, "max_length": 24},
        "evaluation": {"every": 4, "patience": 100},
        "budget": {"max_steps": 8},
    }
    for key, value in sections.items():
        replace_whole = key == "adapter" and isinstance(value, dict) and "kind" in value
        if isinstance(value, dict) and isinstance(raw.get(key), dict) and not replace_whole:
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_training_config(raw)


@pytest.fixture()
def store(tmp_path: Path):
    opened = make_store(tmp_path / "data")
    yield opened
    opened.close()
