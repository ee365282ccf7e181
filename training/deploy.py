"""Deployment helpers: merge the adapter into the backbone, and dynamic int8 for CPU inference.

* :func:`merge_adapter` writes a plain `transformers` model folder (``model/``) plus tokenizer
  and `curate_model.json` (method ``merged``): no peft needed to serve it, and
  :class:`training.predict.AdapterModel` loads it like a run.
* :func:`quantize_int8` applies PyTorch dynamic quantization (int8 weights, activations
  quantized on the fly) to every `nn.Linear` of a merged model, and weight-only int8 to its
  word embeddings (most of a multilingual model's size); it is applied at load
  (``AdapterModel.load(path, int8=True)``), so nothing quantized is stored.
* :func:`quantization_report` measures what int8 costs per language: macro-F1 of fp32 and int8
  on the same texts, the change, the agreement of their predictions, and size and speed.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.metrics import macro_f1, summary_from_per_language
from training.model import CALIBRATION_FILE, META_FILE
from training.predict import AdapterModel


def merge_adapter(path: str | Path, out: str | Path) -> Path:
    """Merge a run's LoRA adapter into its backbone and save it under `out` (a new folder)."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; merging never overwrites")
    adapter = AdapterModel.load(path)
    merged = adapter.merged()
    temporary = out.with_name(out.name + ".tmp")
    temporary.mkdir(parents=True)
    merged.model.save_pretrained(str(temporary / "model"))
    merged.tokenizer.save_pretrained(str(temporary))
    (temporary / META_FILE).write_text(json.dumps(merged.meta, indent=2) + "\n", "utf-8")
    if merged.calibration is not None:
        (temporary / CALIBRATION_FILE).write_text(
            json.dumps(merged.calibration, indent=2) + "\n", "utf-8"
        )
    temporary.rename(out)
    return out


def _state_size_mb(model: Any) -> float:
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return round(buffer.tell() / 2**20, 2)


def quantization_report(
    path: str | Path,
    texts: Sequence[str],
    labels: Sequence[str],
    languages: Sequence[str],
    *,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Macro-F1 per language of the fp32 (merged) model and its int8 version on these texts."""
    fp32 = AdapterModel.load(path, batch_size=batch_size).merged()
    position = {name: i for i, name in enumerate(fp32.classes_)}
    truth = np.asarray([position[label] for label in labels])
    codes = np.asarray(languages, dtype=object)

    started = time.perf_counter()
    fp32_pred = fp32.logits(texts).argmax(axis=1)
    fp32_seconds = time.perf_counter() - started
    int8 = fp32.to_int8()
    started = time.perf_counter()
    int8_pred = int8.logits(texts).argmax(axis=1)
    int8_seconds = time.perf_counter() - started

    per_language: dict[str, dict[str, float]] = {}
    for code in sorted(set(codes.tolist())):
        rows = codes == code
        before = macro_f1(truth[rows], fp32_pred[rows])
        after = macro_f1(truth[rows], int8_pred[rows])
        per_language[code] = {
            "fp32": round(before, 6),
            "int8": round(after, 6),
            "change": round(after - before, 6),
            "agreement": round(float(np.mean(fp32_pred[rows] == int8_pred[rows])), 6),
            "examples": int(rows.sum()),
        }
    fp32_summary = summary_from_per_language({c: v["fp32"] for c, v in per_language.items()})
    int8_summary = summary_from_per_language({c: v["int8"] for c, v in per_language.items()})
    return {
        "per_language": per_language,
        "fp32": {k: fp32_summary[k] for k in ("mean_macro_f1", "worst_language_f1")},
        "int8": {k: int8_summary[k] for k in ("mean_macro_f1", "worst_language_f1")},
        "mean_change": round(int8_summary["mean_macro_f1"] - fp32_summary["mean_macro_f1"], 6)
        if per_language
        else None,
        "largest_drop": min(
            ((c, v["change"]) for c, v in per_language.items()), key=lambda x: x[1], default=None
        ),
        "size_mb": {"fp32": _state_size_mb(fp32.model), "int8": _state_size_mb(int8.model)},
        "seconds": {"fp32": round(fp32_seconds, 3), "int8": round(int8_seconds, 3)},
        "examples": len(texts),
    }
