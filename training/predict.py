"""Batched probabilities from a trained run, for `curate select` and for deployment checks.

    from training.predict import AdapterModel

    model = AdapterModel.load("curation-data/runs/<run_id>")     # or its adapter/ folder
    model.classes_                    # ('negative', 'neutral', 'positive'): the store's order
    probs = model.predict_proba(texts, languages=codes)          # (n, n_labels) float64

`languages` matters only for runs with language adapters (a text uses the shared adapter plus
its language's adapter); without it every text goes through the shared adapter alone.
Texts are tokenized once per call, sorted by length and run in batches; rows come back in the
input order. `int8=True` merges the adapter into the backbone and applies dynamic int8
quantization of the linear layers and weight-only int8 of the word embeddings (CPU inference).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.model import CALIBRATION_FILE, META_FILE, load_saved

log = logging.getLogger("curate.training")


def _adapter_dir(path: str | Path) -> Path:
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    if (path / "adapter" / META_FILE).is_file():
        return path / "adapter"
    raise FileNotFoundError(f"{path}: neither a run folder nor a saved model ({META_FILE} missing)")


class AdapterModel:
    """A trained classifier with a scikit-learn-like `classes_` / `predict_proba` interface."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        meta: dict[str, Any],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        source: Path | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta
        self.device = device
        self.batch_size = batch_size
        self.source = source
        self.quantized = False
        # Per-language temperatures from training's validation split (None: uncalibrated).
        self.calibration: dict[str, Any] | None = None
        if source is not None and (Path(source) / CALIBRATION_FILE).is_file():
            self.calibration = json.loads((Path(source) / CALIBRATION_FILE).read_text("utf-8"))

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        int8: bool = False,
    ) -> AdapterModel:
        """Load a run folder (its best checkpoint) or a saved/merged model folder."""
        directory = _adapter_dir(path)
        model, tokenizer, meta = load_saved(directory, device=device)
        loaded = cls(model, tokenizer, meta, device=device, batch_size=batch_size, source=directory)
        if int8:
            loaded = loaded.to_int8()
        return loaded

    def __repr__(self) -> str:
        where = f", source={str(self.source)!r}" if self.source else ""
        return (
            f"AdapterModel(method={self.meta['method']!r}, backbone={self.meta['backbone']!r}, "
            f"classes_={self.classes_!r}{', int8=True' if self.quantized else ''}{where})"
        )

    @property
    def classes_(self) -> tuple[str, ...]:
        return tuple(self.meta["labels"])

    @property
    def language_adapters(self) -> dict[str, str]:
        return dict(self.meta.get("language_adapters") or {})

    # -- inference ----------------------------------------------------------------------------
    def _activate(self, language: str | None) -> None:
        adapters = self.language_adapters
        if not adapters or self.meta["method"] != "lora":
            return
        names = ["task"]
        if language in adapters:
            names.append(adapters[language])
        self.model.base_model.set_adapter(names)

    def logits(
        self,
        texts: Sequence[str],
        languages: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Raw scores (n, n_labels) in `classes_` order."""
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), len(self.classes_)), dtype=np.float32)
        if not texts:
            return out
        if languages is not None and len(languages) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
        prefix = self.meta.get("text_prefix") or ""
        encoded = self.tokenizer(
            [prefix + text for text in texts],
            truncation=True,
            max_length=int(self.meta["max_length"]),
        )["input_ids"]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        size = batch_size or self.batch_size
        groups: dict[str | None, list[int]] = {}
        if languages is not None and self.language_adapters:
            for i, code in enumerate(languages):
                key = code if code in self.language_adapters else None
                groups.setdefault(key, []).append(i)
        else:
            groups[None] = list(range(len(texts)))
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for language, rows in groups.items():
                self._activate(language)
                rows_sorted = sorted(rows, key=lambda i: len(encoded[i]))
                for start in range(0, len(rows_sorted), size):
                    chunk = rows_sorted[start : start + size]
                    width = max(len(encoded[i]) for i in chunk)
                    ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
                    mask = np.zeros((len(chunk), width), dtype=np.int64)
                    for row, i in enumerate(chunk):
                        ids[row, : len(encoded[i])] = encoded[i]
                        mask[row, : len(encoded[i])] = 1
                    result = self.model(
                        input_ids=torch.from_numpy(ids).to(self.device),
                        attention_mask=torch.from_numpy(mask).to(self.device),
                    )
                    out[chunk] = result.logits.float().cpu().numpy()
        self._activate(None)
        if was_training:
            self.model.train()
        return out

    def predict_proba(
        self,
        texts: Sequence[str],
        languages: Sequence[str] | None = None,
        *,
        batch_size: int | None = None,
        calibrated: bool = True,
    ) -> np.ndarray:
        """Class probabilities (n, n_labels), float64, columns in `classes_` order.

        ``calibrated``: scaled by the temperature training fitted for each text's language on
        its validation split (the global one without `languages` or for a language it did not
        see); the argmax never changes.
        """
        logits = self.logits(texts, languages, batch_size=batch_size).astype(np.float64)
        if len(logits) == 0:
            return logits
        if calibrated and self.calibration is not None:
            from curation.calibration import PerLanguageTemperature

            calibrator = PerLanguageTemperature.from_payload(self.calibration)
            if languages is None:
                logits /= calibrator.global_temperature_
            else:
                logits /= np.array([calibrator.temperature_for(code) for code in languages])[
                    :, None
                ]
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities

    def predict(self, texts: Sequence[str], languages: Sequence[str] | None = None) -> np.ndarray:
        """The most probable label name per text."""
        classes = np.asarray(self.classes_, dtype=object)
        return classes[self.logits(texts, languages).argmax(axis=1)]

    # -- deployment -----------------------------------------------------------------------------
    def merged(self) -> AdapterModel:
        """The adapter merged into the backbone (a plain transformers model; LoRA only)."""
        if self.meta["method"] != "lora":
            return self
        if self.language_adapters:
            raise ValueError(
                "a run with language adapters cannot merge into one model; merge per language"
            )
        merged = copy.deepcopy(self.model).merge_and_unload()
        meta = {**self.meta, "method": "merged", "merged_from": self.meta["method"]}
        out = AdapterModel(
            merged,
            self.tokenizer,
            meta,
            device=self.device,
            batch_size=self.batch_size,
            source=self.source,
        )
        out.calibration = self.calibration  # the same network, so the same temperatures
        return out

    def to_int8(self) -> AdapterModel:
        """Merged, then int8 (:func:`training.quantize.quantize_int8`; CPU only)."""
        from training.quantize import quantize_int8

        if self.device != "cpu":
            raise ValueError("dynamic int8 quantization runs on CPU; load with device='cpu'")
        merged = self.merged()
        model = quantize_int8(merged.model)
        quantized = AdapterModel(
            model,
            self.tokenizer,
            {**merged.meta, "int8": True},
            device="cpu",
            batch_size=self.batch_size,
            source=self.source,
        )
        quantized.quantized = True
        quantized.calibration = self.calibration
        return quantized


def predict_pool(
    store: Any,
    path: str | Path,
    *,
    example_ids: Sequence[str] | None = None,
    batch_size: int = 64,
    chunk_size: int = 4096,
    model: AdapterModel | None = None,
) -> tuple[list[str], np.ndarray]:
    """Probabilities for the store's examples (all, or `example_ids`), read in chunks.

    Returns (ids, probabilities) with columns in the store's current label order: a label the
    model never saw gets a column of zeros. This is what `curate select` can use in place of
    the logistic-regression proxy.
    """
    model = model or AdapterModel.load(path, batch_size=batch_size)
    store_labels = store.label_names() or list(model.classes_)
    column = {name: i for i, name in enumerate(store_labels)}
    unknown = [name for name in model.classes_ if name not in column]
    if unknown:
        raise ValueError(f"the model predicts labels the store does not have: {unknown}")
    if example_ids is None:
        example_ids = [
            row[0] for row in store.conn.execute("SELECT id FROM examples ORDER BY rowid")
        ]
    ids = list(example_ids)
    out = np.zeros((len(ids), len(store_labels)), dtype=np.float64)
    targets = [column[name] for name in model.classes_]
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        rows: dict[str, tuple[str, str]] = {}
        for offset in range(0, len(chunk), 900):
            part = chunk[offset : offset + 900]
            sql = (
                f"SELECT id, text, language FROM examples WHERE id IN ({','.join('?' * len(part))})"
            )
            rows.update({r[0]: (r[1], r[2]) for r in store.conn.execute(sql, part)})
        missing = [i for i in chunk if i not in rows]
        if missing:
            raise KeyError(f"{len(missing)} example ids are not in the store, e.g. {missing[0]!r}")
        probabilities = model.predict_proba(
            [rows[i][0] for i in chunk], [rows[i][1] for i in chunk], batch_size=batch_size
        )
        out[start : start + len(chunk)][:, targets] = probabilities
    return ids, out
