"""Training data from the curated labels: splits, one cached tokenization, language-aware batches.

* Examples come from :func:`curation.export.to_dataset` (labeled examples, ClassLabel labels in
  the store's label order).
* Validation: the examples ingested with ``--source <data.validation_source>`` when that is set;
  otherwise a share of each language is carved out, stratified by label, with a seeded generator.
  The ids of both splits are written with the run, so a resumed run trains on the same split.
* Tokenization happens once per (tokenizer, max length, prefix, texts) and is cached as a
  Hugging Face dataset under ``<store>/cache/training-tokens/<key>/``.
* :class:`LanguageBatchSampler` draws each epoch with temperature-based language sampling
  (``p_language ~ n_language ** alpha``) and groups texts of similar length into batches. The
  plan of an epoch is a pure function of (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import InputError
from curation.store import Store
from training.config import DataConfig

log = logging.getLogger("curate.training")

TOKEN_CACHE_DIR = Path("cache") / "training-tokens"
MEGA_BATCH_FACTOR = 50  # length grouping sorts windows of 50 batches (as HF's LengthGroupedSampler)


@dataclass
class Split:
    """One split, tokenized: aligned per-example arrays."""

    ids: list[str]
    input_ids: list[np.ndarray]
    labels: np.ndarray  # int64 label index (store label order)
    languages: np.ndarray  # object array of language codes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))

    def subset(self, index: np.ndarray) -> Split:
        return Split(
            ids=[self.ids[i] for i in index],
            input_ids=[self.input_ids[i] for i in index],
            labels=self.labels[index],
            languages=self.languages[index],
        )

    def by_language(self) -> dict[str, Split]:
        return {
            code: self.subset(np.flatnonzero(self.languages == code))
            for code in sorted(set(self.languages.tolist()))
        }


@dataclass
class TrainingData:
    """The labeled data of a run: label order, both splits and counts per language."""

    labels: tuple[str, ...]
    train: Split
    validation: Split
    warnings: list[str] = field(default_factory=list)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.train.languages.tolist())))

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name, split in (("train", self.train), ("validation", self.validation)):
            codes, counts = np.unique(split.languages.astype(str), return_counts=True)
            out[name] = {str(c): int(n) for c, n in zip(codes, counts, strict=True)}
        return out

    def split_ids(self) -> dict[str, list[str]]:
        return {"train": list(self.train.ids), "validation": list(self.validation.ids)}


# -- splits -------------------------------------------------------------------------------------


def carve_validation(
    languages: Sequence[str], labels: Sequence[int], fraction: float, seed: int
) -> np.ndarray:
    """A boolean mask of validation rows: `fraction` of each (language, label) group, rounded,
    at least one per group of two or more, never a whole language (seeded, order-independent of
    anything but the inputs)."""
    languages = np.asarray(languages, dtype=object)
    labels = np.asarray(labels)
    mask = np.zeros(len(languages), dtype=bool)
    rng = np.random.default_rng(seed)
    for code in sorted(set(languages.tolist())):
        in_language = np.flatnonzero(languages == code)
        if len(in_language) < 2:
            continue
        chosen: list[int] = []
        for label in sorted(set(labels[in_language].tolist())):
            group = in_language[labels[in_language] == label]
            if len(group) < 2:
                continue
            take = max(1, int(round(fraction * len(group))))
            take = min(take, len(group) - 1)
            chosen.extend(rng.permutation(group)[:take].tolist())
        if not chosen:  # every label is a singleton: carve one example at random
            chosen = [int(rng.choice(in_language))]
        if len(chosen) >= len(in_language):
            chosen = chosen[: len(in_language) - 1]
        mask[chosen] = True
    return mask


def load_labeled(store: Store, data: DataConfig) -> tuple[Any, tuple[str, ...]]:
    """The labeled examples as a `datasets.Dataset` plus the label order (store order)."""
    from curation.export import to_dataset

    labels = tuple(store.label_names())
    if len(labels) < 2:
        raise InputError(
            "training needs a label set of at least 2 labels (ingest labeled data or set "
            "[labels] names)"
        )
    dataset = to_dataset(store, languages=list(data.languages) if data.languages else None)
    if len(dataset) == 0:
        raise InputError("no labeled examples in the store: nothing to train on")
    return dataset, labels


def _sources(store: Store, ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    ids = list(ids)
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        sql = f"SELECT id, source FROM examples WHERE id IN ({','.join('?' * len(chunk))})"
        out.update(dict(store.conn.execute(sql, chunk).fetchall()))
    return out


def assign_splits(
    store: Store,
    dataset: Any,
    data: DataConfig,
    seed: int,
    *,
    given: dict[str, list[str]] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Row indices of train and validation, and warnings.

    `given` (a resumed run's recorded split ids) wins; else `validation_source`; else carving.
    """
    ids = list(dataset["id"])
    languages = np.asarray(list(dataset["language"]), dtype=object)
    labels = np.asarray(list(dataset["label"]), dtype=np.int64)
    warnings: list[str] = []
    if given is not None:
        position = {example_id: i for i, example_id in enumerate(ids)}
        missing = [i for i in given["train"] + given["validation"] if i not in position]
        if missing:
            warnings.append(
                f"{len(missing)} examples of the recorded split are no longer labeled; "
                "continuing without them"
            )
        train = np.asarray([position[i] for i in given["train"] if i in position], dtype=np.int64)
        validation = np.asarray(
            [position[i] for i in given["validation"] if i in position], dtype=np.int64
        )
        return train, validation, warnings
    if data.validation_source is not None:
        sources = _sources(store, ids)
        is_validation = np.asarray(
            [sources.get(i) == data.validation_source for i in ids], dtype=bool
        )
        if not is_validation.any():
            raise InputError(
                f"[training] data.validation_source: no labeled examples were ingested with "
                f"--source {data.validation_source!r}"
            )
    else:
        is_validation = carve_validation(languages, labels, data.validation_fraction, seed)
    train = np.flatnonzero(~is_validation)
    validation = np.flatnonzero(is_validation)
    train_languages = set(languages[train].tolist())
    validation_languages = set(languages[validation].tolist())
    for code in sorted(train_languages - validation_languages):
        warnings.append(f"language {code!r} has no validation examples: it is not evaluated")
    for code in sorted(validation_languages - train_languages):
        warnings.append(f"language {code!r} has validation but no training examples")
    if len(train) == 0:
        raise InputError("no training examples left after the validation split")
    if len(validation) == 0:
        raise InputError("no validation examples: label more examples per language")
    return train, validation, warnings


# -- tokenization -------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """No `datasets` progress bars inside (restores the previous setting)."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def _token_cache_key(tokenizer: Any, max_length: int, prefix: str, dataset: Any) -> str:
    digest = hashlib.sha256()
    identity = [
        type(tokenizer).__name__,
        str(getattr(tokenizer, "name_or_path", "")),
        len(tokenizer),
        max_length,
        prefix,
    ]
    digest.update(json.dumps(identity).encode())
    for example_id, text in zip(dataset["id"], dataset["text"], strict=True):
        digest.update(example_id.encode())
        digest.update(b"\x00")
        digest.update(text.encode())
        digest.update(b"\x01")
    return digest.hexdigest()[:24]


def tokenize_cached(
    dataset: Any,
    tokenizer: Any,
    *,
    max_length: int,
    prefix: str = "",
    cache_root: Path | None = None,
) -> tuple[list[np.ndarray], bool]:
    """Token ids per row of `dataset` (truncated to `max_length`); cached on disk when
    `cache_root` is given. Returns the ids and whether they came from the cache."""
    import datasets

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [prefix + text for text in batch["text"]]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        return {"input_ids": encoded["input_ids"]}

    cached = None
    if cache_root is not None:
        key = _token_cache_key(tokenizer, max_length, prefix, dataset)
        cached = cache_root / key
        if (cached / "dataset_info.json").is_file():
            try:
                tokens = datasets.load_from_disk(str(cached))
                ids = list(tokens["input_ids"])
                if len(ids) == len(dataset):
                    return [np.asarray(x, dtype=np.int64) for x in ids], True
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                log.warning("token cache %s unreadable (%s); rebuilding", cached, exc)
    with quiet_datasets():
        tokens = dataset.select_columns(["id", "text"]).map(
            encode, batched=True, batch_size=1000, remove_columns=["text"]
        )
        if cached is not None:
            temporary = cached.with_name(cached.name + ".tmp")
            shutil.rmtree(temporary, ignore_errors=True)
            cached.parent.mkdir(parents=True, exist_ok=True)
            tokens.save_to_disk(str(temporary))
            shutil.rmtree(cached, ignore_errors=True)
            temporary.rename(cached)
    return [np.asarray(x, dtype=np.int64) for x in tokens["input_ids"]], False


def build_training_data(
    store: Store,
    data: DataConfig,
    tokenizer: Any,
    *,
    seed: int,
    prefix: str = "",
    given_splits: dict[str, list[str]] | None = None,
    cache: bool = True,
) -> TrainingData:
    """Load the curated labels, split them and tokenize once (cached under the store)."""
    dataset, labels = load_labeled(store, data)
    train_index, validation_index, warnings = assign_splits(
        store, dataset, data, seed, given=given_splits
    )
    cache_root = store.path / TOKEN_CACHE_DIR if cache else None
    input_ids, from_cache = tokenize_cached(
        dataset, tokenizer, max_length=data.max_length, prefix=prefix, cache_root=cache_root
    )
    log.info("tokenized %d examples (%s)", len(input_ids), "cache" if from_cache else "new")
    everything = Split(
        ids=list(dataset["id"]),
        input_ids=input_ids,
        labels=np.asarray(list(dataset["label"]), dtype=np.int64),
        languages=np.asarray(list(dataset["language"]), dtype=object),
    )
    return TrainingData(
        labels=labels,
        train=everything.subset(train_index),
        validation=everything.subset(validation_index),
        warnings=warnings,
    )


# -- batching -----------------------------------------------------------------------------------


def language_probabilities(counts: dict[str, int], alpha: float) -> dict[str, float]:
    """Temperature sampling: p_l = n_l**alpha / sum_k n_k**alpha (alpha 1: proportional)."""
    weights = {code: float(n) ** alpha for code, n in counts.items() if n > 0}
    total = sum(weights.values())
    return {code: weight / total for code, weight in sorted(weights.items())}


class LanguageBatchSampler:
    """Batches of row indices for one epoch at a time.

    Each epoch draws as many examples as the split holds, split across languages by
    :func:`language_probabilities` (a language drawn more often than it has rows cycles through
    fresh permutations of its rows; one drawn less gets a random subset). With `group_by_length`
    rows are sorted by length inside windows of 50 batches and the batches shuffled, the
    longest batch first (an out-of-memory shows at once, not an hour in). With
    `per_language_batches` (language adapters) every batch holds one language only.
    """

    def __init__(
        self,
        languages: np.ndarray,
        lengths: np.ndarray,
        *,
        batch_size: int,
        alpha: float = 1.0,
        group_by_length: bool = True,
        per_language_batches: bool = False,
        seed: int = 0,
    ) -> None:
        self.languages = np.asarray(languages, dtype=object)
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.alpha = alpha
        self.group_by_length = group_by_length
        self.per_language_batches = per_language_batches
        self.seed = seed
        self.codes = sorted(set(self.languages.tolist()))
        self.rows = {code: np.flatnonzero(self.languages == code) for code in self.codes}
        self.probabilities = language_probabilities(
            {code: len(rows) for code, rows in self.rows.items()}, alpha
        )
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def __repr__(self) -> str:
        return (
            f"LanguageBatchSampler(n={len(self.languages)}, batch_size={self.batch_size}, "
            f"alpha={self.alpha}, group_by_length={self.group_by_length}, "
            f"per_language_batches={self.per_language_batches}, seed={self.seed})"
        )

    def draws_per_language(self) -> dict[str, int]:
        """How many rows each language contributes per epoch (largest-remainder rounding)."""
        total = len(self.languages)
        exact = {code: p * total for code, p in self.probabilities.items()}
        counts = {code: int(math.floor(value)) for code, value in exact.items()}
        short = total - sum(counts.values())
        by_remainder = sorted(exact, key=lambda c: (-(exact[c] - counts[c]), c))
        for code in by_remainder[:short]:
            counts[code] += 1
        return counts

    def _draw(self, rng: np.random.Generator, code: str, count: int) -> np.ndarray:
        rows = self.rows[code]
        parts = []
        while count > 0:
            take = min(count, len(rows))
            parts.append(rng.permutation(rows)[:take])
            count -= take
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _batches(self, rng: np.random.Generator, rows: np.ndarray) -> list[np.ndarray]:
        rows = rng.permutation(rows)
        size = self.batch_size
        if not self.group_by_length:
            return [rows[i : i + size] for i in range(0, len(rows), size)]
        window = size * MEGA_BATCH_FACTOR
        batches = []
        for start in range(0, len(rows), window):
            part = rows[start : start + window]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches.extend(part[i : i + size] for i in range(0, len(part), size))
        return batches

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of `epoch` (deterministic in seed and epoch)."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        draws = {
            code: self._draw(rng, code, count) for code, count in self.draws_per_language().items()
        }
        if self.per_language_batches:
            batches = [b for code in self.codes for b in self._batches(rng, draws[code])]
        else:
            batches = self._batches(rng, np.concatenate(list(draws.values())))
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        if self.group_by_length and batches:
            longest = max(range(len(batches)), key=lambda i: int(self.lengths[batches[i]].max()))
            batches.insert(0, batches.pop(longest))
        self._cache = (epoch, batches)
        return batches

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.epoch(0))


def collate(
    split: Split, index: np.ndarray, pad_id: int, *, pad_to_multiple_of: int | None = None
) -> dict[str, Any]:
    """Tensors for rows `index` of `split`, padded to the longest row of the batch."""
    import torch

    sequences = [split.input_ids[i] for i in index]
    width = max(len(s) for s in sequences)
    if pad_to_multiple_of:
        width = int(math.ceil(width / pad_to_multiple_of) * pad_to_multiple_of)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = sequence
        attention[row, : len(sequence)] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "labels": torch.from_numpy(split.labels[index].astype(np.int64)),
        "languages": split.languages[index],
    }
