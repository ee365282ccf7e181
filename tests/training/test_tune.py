"""`curate tune`: an Optuna study of real (tiny) training runs, resumable, pruning, and its best
setting used by `curate train`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from curation.errors import InputError
from tests.conftest import run_cli_json as run_json
from tests.conftest import write_config
from tests.training.conftest import make_store, tiny_config
from training.tune import LR_RANGE, RANKS, apply_params, stored_best, tune


@pytest.fixture()
def project(tmp_path: Path, tiny_backbone: Path) -> Path:
    make_store(tmp_path / "data").close()
    # A relative backbone path resolves against the project file (and once broke on the
    # pydantic config: dataclasses.replace on a model).
    backbone = os.path.relpath(tiny_backbone, tmp_path)
    write_config(
        tmp_path,
        f"""
[store]
path = "data/store"

[training]
backbone = "{backbone}"
log_every = 2

[training.data]
batch_size = 8
max_length = 24

[training.evaluation]
every = 2
target = "worst"

[training.budget]
max_steps = 4
""",
    )
    return tmp_path


def test_tune_resumes_stores_the_best_and_train_uses_it(project: Path, capsys) -> None:
    first = run_json(capsys, "tune", "--max-trials", "2")
    assert first["objective"] == "worst"  # from [training.evaluation] target
    assert sum(first["trials"].values()) == 2
    assert first["stopped_because"] == "max_trials 2 reached"
    best = stored_best_from(project)
    assert best["params"]["r"] in RANKS
    assert LR_RANGE[0] <= best["params"]["lr"] <= LR_RANGE[1]
    assert best["value"] == first["best_value"]

    # A second session continues the same study: one more trial, not three.
    second = run_json(capsys, "tune", "--max-trials", "3")
    assert sum(second["trials"].values()) == 3
    runs = [p for p in (project / "data" / "store" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 3

    best = stored_best_from(project)
    trained = run_json(capsys, "train", "--max-steps", "2")
    saved = json.loads(
        (
            project / "data" / "store" / "runs" / trained["run_id"] / "training_config.json"
        ).read_text("utf-8")
    )
    assert saved["adapter"]["r"] == best["params"]["r"]
    assert saved["adapter"]["alpha"] == 2.0 * best["params"]["r"]
    assert saved["optimizer"]["lr"] == pytest.approx(best["params"]["lr"])
    assert saved["data"]["sampling_alpha"] == pytest.approx(best["params"]["sampling_alpha"])

    untuned = run_json(capsys, "train", "--max-steps", "2", "--untuned")
    saved = json.loads(
        (
            project / "data" / "store" / "runs" / untuned["run_id"] / "training_config.json"
        ).read_text("utf-8")
    )
    assert saved["adapter"]["r"] == 8 and saved["optimizer"]["lr"] is None  # the defaults


def stored_best_from(project: Path) -> dict[str, Any]:
    return json.loads((project / "data" / "store" / "tuning" / "best.json").read_text("utf-8"))


class _FakeTrainer:
    """Reports a validation curve that rises with the learning rate: low-lr trials trail."""

    count = 0

    def __init__(self, store: Any, config: Any, *, on_event: Any) -> None:
        type(self).count += 1
        self.run_id = f"fake-{type(self).count}"
        self.config = config
        self.on_event = on_event

    def train(self) -> Any:
        lr = self.config.optimizer.lr
        value = 0.0
        for step in (2, 4, 6):
            value = min(1.0, lr * 100 * step / 6)
            self.on_event(
                {
                    "event": "evaluation",
                    "step": step,
                    "mean_macro_f1": value,
                    "worst_language_f1": value / 2,
                }
            )

        class Result:
            metrics = {"best": {"mean_macro_f1": value, "worst_language_f1": value / 2}}

        return Result()


def test_trials_trailing_the_median_are_pruned(store, tiny_backbone: Path) -> None:
    base = tiny_config(tiny_backbone)
    result = tune(store, base, max_trials=12, seed=0, trainer_factory=_FakeTrainer)
    assert sum(result.trials.values()) == 12
    assert result.trials["pruned"] >= 1
    assert result.trials["failed"] == 0
    # The best completed trial is the one with the highest learning rate among completed ones.
    assert stored_best(store)["params"]["lr"] == result.best_params["lr"]
    assert result.best_value == pytest.approx(min(1.0, result.best_params["lr"] * 100))


def test_max_minutes_stops_starting_trials(store, tiny_backbone: Path) -> None:
    ticks = iter(range(0, 10_000, 50))  # every clock read is 50 s later
    result = tune(
        store,
        tiny_config(tiny_backbone),
        max_trials=50,
        max_minutes=2,
        trainer_factory=_FakeTrainer,
        clock=lambda: float(next(ticks)),
    )
    assert result.stopped_because == "max_minutes 2 reached"
    assert sum(result.trials.values()) == 2  # checks at 50 s and 100 s pass, 150 s stops


def test_apply_params_validates_and_ties_alpha_to_rank(tiny_backbone: Path) -> None:
    base = tiny_config(tiny_backbone)
    tuned = apply_params(base, {"r": 16, "lr": 0.003, "layer_decay": 0.8, "sampling_alpha": 0.4})
    assert (tuned.adapter.r, tuned.adapter.alpha) == (16, 32.0)
    assert (tuned.optimizer.lr, tuned.optimizer.layer_decay) == (0.003, 0.8)
    assert tuned.data.sampling_alpha == 0.4
    full = tiny_config(tiny_backbone, adapter={"kind": "full"})
    with pytest.raises(InputError, match="kind is not 'lora'"):
        apply_params(full, {"r": 8})
    with pytest.raises(InputError, match="--max-trials must be >= 1"):
        tune(None, base, max_trials=0)  # type: ignore[arg-type]
