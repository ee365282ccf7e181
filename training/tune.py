"""`curate tune`: budget-capped hyperparameter search for the adapter (Optuna).

Searched: LoRA rank ``adapter.r`` (alpha follows at 2 x r, the usual ratio), peak learning rate
``optimizer.lr`` (log scale), layer-wise decay ``optimizer.layer_decay`` and the language-sampling
exponent ``data.sampling_alpha`` (p ~ n ** alpha: the inverse of the sampling temperature).
Each trial is one ordinary training run (recorded like any `curate train` run), under the
training section's own caps. Its per-language validation is reported to Optuna at every
evaluation, and a median pruner stops trials that trail the others at the same step. The
objective is the best evaluation's mean macro-F1 over languages, or its worst language
(``objective="worst"``: buy the model whose weakest language is strongest).

The search stops at ``max_trials`` trials (counted over every session of the study) or when
``max_minutes`` have passed (checked between trials; a trial running at the deadline finishes
under its own caps, so set ``[training.budget] max_minutes`` to bound one trial). The study lives
in ``<store>/tuning/optuna.db`` (SQLite), so a killed `curate tune` resumes where it stopped; the
best setting is written to ``<store>/tuning/best.json`` after every completed trial, and
:func:`apply_best` lays it over the `[training]` section for `curate train` and the nightly job.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from curation.errors import InputError
from curation.store import Store
from training.config import LoraConfig, TrainingConfig

log = logging.getLogger("curate.training.tune")

STUDY_NAME = "curate-tune"
RANKS = (4, 8, 16, 32)
LR_RANGE = (1e-4, 5e-3)
LAYER_DECAY_RANGE = (0.6, 1.0)
SAMPLING_ALPHA_RANGE = (0.2, 1.0)

Objective = Literal["mean", "worst"]


def tuning_dir(store: Store) -> Path:
    return Path(store.path) / "tuning"


def best_path(store: Store) -> Path:
    return tuning_dir(store) / "best.json"


def apply_params(base: TrainingConfig, params: dict[str, Any]) -> TrainingConfig:
    """``base`` with a trial's (or the stored best) parameters laid over it, validated."""
    raw = base.to_dict()
    if "r" in params:
        if not isinstance(base.adapter, LoraConfig):
            raise InputError("tuned LoRA rank, but [training.adapter] kind is not 'lora'")
        raw["adapter"] = {**raw["adapter"], "r": params["r"], "alpha": 2.0 * params["r"]}
    optimizer = dict(raw["optimizer"])
    for key in ("lr", "layer_decay"):
        if key in params:
            optimizer[key] = params[key]
    raw["optimizer"] = optimizer
    if "sampling_alpha" in params:
        raw["data"] = {**raw["data"], "sampling_alpha": params["sampling_alpha"]}
    return TrainingConfig.from_dict(raw)


def stored_best(store: Store) -> dict[str, Any] | None:
    path = best_path(store)
    if not path.is_file():
        return None
    return json.loads(path.read_text("utf-8"))


def apply_best(store: Store, base: TrainingConfig) -> tuple[TrainingConfig, dict[str, Any] | None]:
    """The `[training]` section with the stored best setting over it (unchanged without one)."""
    best = stored_best(store)
    if best is None:
        return base, None
    return apply_params(base, best["params"]), best


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any] | None
    best_value: float | None
    best_run_id: str | None
    objective: str
    trials: dict[str, int]  # complete / pruned / failed, over the whole study
    stopped_because: str
    study_path: Path

    def summary(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params,
            "best_value": self.best_value,
            "best_run_id": self.best_run_id,
            "objective": self.objective,
            "trials": self.trials,
            "stopped_because": self.stopped_because,
            "study": str(self.study_path),
        }


def _suggest(trial: Any, base: TrainingConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if isinstance(base.adapter, LoraConfig):
        params["r"] = trial.suggest_categorical("r", list(RANKS))
    params["lr"] = trial.suggest_float("lr", *LR_RANGE, log=True)
    params["layer_decay"] = trial.suggest_float("layer_decay", *LAYER_DECAY_RANGE)
    params["sampling_alpha"] = trial.suggest_float("sampling_alpha", *SAMPLING_ALPHA_RANGE)
    return params


def _value(summary: dict[str, Any], objective: Objective) -> float | None:
    key = "mean_macro_f1" if objective == "mean" else "worst_language_f1"
    value = summary.get(key)
    return None if value is None else float(value)


def tune(
    store: Store,
    base: TrainingConfig,
    *,
    max_trials: int,
    max_minutes: float | None = None,
    objective: Objective = "mean",
    seed: int = 0,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    trainer_factory: Callable[..., Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TuneResult:
    """Search until ``max_trials`` trials exist in the study or ``max_minutes`` have passed."""
    import optuna

    if max_trials < 1:
        raise InputError("--max-trials must be >= 1")
    if max_minutes is not None and max_minutes <= 0:
        raise InputError("--max-minutes must be > 0")
    if objective not in ("mean", "worst"):
        raise InputError(f"objective must be 'mean' or 'worst', got {objective!r}")
    if trainer_factory is None:
        from training.trainer import Trainer

        trainer_factory = Trainer
    folder = tuning_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    study_path = folder / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{STUDY_NAME}-{objective}",
        storage=f"sqlite:///{study_path}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        load_if_exists=True,
    )
    started = clock()

    def objective_fn(trial: optuna.Trial) -> float:
        params = _suggest(trial, base)
        config = apply_params(base, params)

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") != "evaluation":
                return
            value = _value(event, objective)
            if value is None:
                return
            trial.report(value, int(event["step"]))
            if trial.should_prune():
                raise optuna.TrialPruned(f"trailing the median at step {event['step']}")

        trainer = trainer_factory(store, config, on_event=on_event)
        trial.set_user_attr("run_id", trainer.run_id)
        try:
            result = trainer.train()
        except optuna.TrialPruned as pruned:
            # The trainer recorded the run as failed (an exception ended it); it was pruned.
            from training import runs

            runs.update_run(
                store,
                trainer.run_id,
                status="pruned",
                stopped_because=f"pruned by curate tune: {pruned}",
                finished=True,
            )
            raise
        best = result.metrics.get("best")
        if best is None:
            raise optuna.TrialPruned("no accepted evaluation (rollback guard refused every one)")
        value = _value(best, objective)
        if value is None:
            raise optuna.TrialPruned("no validation F1")
        return value

    def finished(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _write_best(store, study, objective)
        if on_trial is not None:
            on_trial(
                {
                    "trial": trial.number,
                    "state": trial.state.name.lower(),
                    "value": trial.value,
                    "params": trial.params,
                    "run_id": trial.user_attrs.get("run_id"),
                }
            )

    stopped_because = f"max_trials {max_trials} reached"
    while True:
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if len(done) >= max_trials:
            break
        if max_minutes is not None and clock() - started >= 60 * max_minutes:
            stopped_because = f"max_minutes {max_minutes:g} reached"
            break
        study.optimize(
            objective_fn, n_trials=1, callbacks=[finished], catch=(RuntimeError, ValueError)
        )
    counts = {"complete": 0, "pruned": 0, "failed": 0}
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        if state == "fail":
            counts["failed"] += 1
        elif state in counts:
            counts[state] += 1
    best = stored_best(store) if counts["complete"] else None
    return TuneResult(
        best_params=None if best is None else best["params"],
        best_value=None if best is None else best["value"],
        best_run_id=None if best is None else best["run_id"],
        objective=objective,
        trials=counts,
        stopped_because=stopped_because,
        study_path=study_path,
    )


def _write_best(store: Store, study: Any, objective: str) -> None:
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed:
        return
    best = max(completed, key=lambda t: (t.value, -t.number))
    payload = {
        "objective": objective,
        "value": best.value,
        "params": best.params,
        "trial": best.number,
        "run_id": best.user_attrs.get("run_id"),
        "trials_complete": len(completed),
    }
    path = best_path(store)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    temporary.replace(path)  # atomic: a kill never leaves half a file for `curate train`
