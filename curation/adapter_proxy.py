"""The latest finished adapter training run as the probability source for selection
(`[selection] proxy = "adapter"`). A front room (it reads training's runs); curation.pipeline and
curation.ray_engine both use it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from curation.errors import InputError
from curation.store import Store


class AdapterProxy:
    """The latest finished adapter training run as the probability source for selection."""

    def __init__(self, run_id: str, run_dir: Path, classes: list[str]) -> None:
        self.run_dir = run_dir
        self.classes_ = tuple(classes)
        self.version = f"adapter:{run_id}"

    def __repr__(self) -> str:
        return f"AdapterProxy(version={self.version!r})"

    @classmethod
    def latest(cls, store: Store) -> AdapterProxy:
        from training import runs

        finished = [r for r in runs.list_runs(store) if r["status"] == "finished"]
        if not finished:
            raise InputError(
                '[selection] proxy = "adapter" but no finished `curate train` run exists'
            )
        record = finished[-1]
        return cls(record["id"], runs.run_dir(store, record["id"]), store.label_names())

    def predict_pool(self, store: Store, example_ids: list[str]) -> np.ndarray:
        from training.predict import predict_pool

        _, probs = predict_pool(store, self.run_dir, example_ids=example_ids)
        return probs
