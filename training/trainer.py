"""The training loop: LoRA (or full) fine-tuning with per-language evaluation and hard caps.

One optimizer step = `accumulation_steps` micro-batches (gradient accumulation up to
`data.effective_batch_size`); the loss of a step is the mean over all its examples, so the
result equals one big batch. Mixed precision: bf16 autocast on a GPU that supports it, else fp16
with a gradient scaler; fp32 on CPU.

Numerical safety: a non-finite loss (checked before backward) or a non-finite gradient norm
(after unscaling) skips the optimizer step and is counted (`nonfinite.loss`, `.gradient`);
`safety.max_consecutive_nonfinite` skipped steps in a row (or `max_nonfinite_steps` in all)
stop the run with a reason that says so. Steps count attempts: a skipped step is a step.

Every `evaluation.every` steps each language's validation set is scored (macro-F1, confusion
matrix, loss); :class:`training.metrics.BestTracker` picks the best checkpoint (with the
rollback guard) and stops early after `patience` evaluations without an accepted improvement.
Caps (`budget.*`) are checked before every step; a capped, early-stopped or non-finite run
evaluates once more if its last step was not evaluated, keeps the best checkpoint and records
why it stopped. A resumable checkpoint is written at every evaluation (or `checkpoint_every`)
and at the end; :meth:`Trainer.resume` continues a killed run from it with the same step
count, batches, optimizer and random state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import shutil
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import ConfigError, InputError
from curation.store import Store
from training import runs
from training.config import TrainingConfig, load_config
from training.data import LanguageBatchSampler, TrainingData, build_training_data, collate
from training.metrics import BestTracker, summarize
from training.model import (
    CALIBRATION_FILE,
    BuiltModel,
    build_model,
    check_max_length,
    load_tokenizer,
    parameter_groups,
    save_model,
    text_prefix_for,
)

# Validation labels a language needs for a temperature of its own (else the global one).
CALIBRATION_MIN_LABELS = 30

log = logging.getLogger("curate.training")

Event = dict[str, Any]


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (getrusage), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"[training] device: {requested!r} asked for, but no CUDA GPU is usable")
    return requested


def resolve_precision(requested: str, device: str) -> tuple[str, str]:
    """(precision used, note). fp32 anywhere but CUDA; bf16 where supported, else fp16."""
    import torch

    if not device.startswith("cuda"):
        note = "" if requested in {"auto", "fp32"} else f"{requested} asked for; fp32 on {device}"
        return "fp32", note
    if requested == "fp32":
        return "fp32", ""
    bf16 = torch.cuda.is_bf16_supported()
    if requested == "auto":
        return ("bf16", "") if bf16 else ("fp16", "no bf16 on this GPU")
    if requested == "bf16" and not bf16:
        return "fp16", "bf16 asked for, not supported by this GPU: fp16 with a gradient scaler"
    return requested, ""


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_id: str
    run_dir: Path
    status: str
    stopped_because: str
    steps: int
    metrics: dict[str, Any] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The `curate train --json` object."""
        return runs.summary_payload(
            {
                "id": self.run_id,
                "status": self.status,
                "metrics": self.metrics,
                "stopped_because": self.stopped_because,
                "adapter_path": str(self.run_dir / "adapter"),
            }
        )


class Trainer:
    """Train one run on a store's curated labels (see the module docstring).

    Args:
        store: an open (writable) store.
        config: the validated `[training]` section.
        run_id: the run to resume (with ``resume=True``), or the id of a new run (default: new).
        resume: continue `run_id` from its last checkpoint.
        clock: seconds since an arbitrary origin (tests pass a fake one).
        on_event: called with small dicts ("start", "step", "log", "evaluation", "checkpoint",
            "stop"); an exception raised there ends the run as "failed" (resumable).
        cache_tokens: keep the tokenized data under the store.
    """

    def __init__(
        self,
        store: Store,
        config: TrainingConfig,
        *,
        run_id: str | None = None,
        resume: bool = False,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Event], None] | None = None,
        cache_tokens: bool = True,
    ) -> None:
        if resume and run_id is None:
            raise ValueError("resume needs the run id")
        self.store = store
        self.config = config
        self.resuming = resume
        self.run_id = run_id or runs.new_run_id()
        self.run_dir = runs.run_dir(store, self.run_id)
        self.clock = clock
        self.on_event = on_event
        self.cache_tokens = cache_tokens
        self.prepared = False
        # counters (restored on resume)
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.wall_before = 0.0
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.nonfinite = {"loss": 0, "gradient": 0}
        self.consecutive_nonfinite = 0
        self.evaluations: list[dict[str, Any]] = []
        self.last_eval_step: int | None = None
        self.tracker = BestTracker(
            target=config.evaluation.target,
            patience=config.evaluation.patience,
            min_delta=config.evaluation.min_delta,
            tolerance=config.evaluation.rollback_tolerance,
        )
        self._window: dict[str, list[float]] = defaultdict(list)
        self._window_losses: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self._session_start: float | None = None

    def __repr__(self) -> str:
        return f"Trainer(run_id={self.run_id!r}, step={self.step}, config={self.config!r})"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def resume(
        cls,
        store: Store,
        run_id: str | None = None,
        *,
        max_steps: int | None = None,
        max_minutes: float | None = None,
        max_epochs: float | None = None,
        max_gpu_hours: float | None = None,
        **kwargs: Any,
    ) -> Trainer:
        """A trainer continuing `run_id` (default: the latest resumable run) with its saved
        config; caps given here replace the saved ones."""
        if run_id is None:
            record = runs.latest_run(store, resumable=True)
            if record is None:
                raise InputError("no run to resume (no unfinished run with a checkpoint)")
        else:
            record = runs.get_run(store, run_id)
            if not runs.can_resume(store, record):
                raise InputError(
                    f"run {run_id} cannot be resumed (status {record['status']}, stopped "
                    f"because: {record.get('stopped_because') or '-'}; or no checkpoint)"
                )
        directory = runs.run_dir(store, record["id"])
        config = load_config(directory / "training_config.json")
        assert isinstance(config, TrainingConfig)
        config = config.with_budget(
            max_steps=max_steps,
            max_minutes=max_minutes,
            max_epochs=max_epochs,
            max_gpu_hours=max_gpu_hours,
        )
        return cls(store, config, run_id=record["id"], resume=True, **kwargs)

    def prepare(self) -> None:
        """Load data and model, build the optimizer; restore the checkpoint when resuming."""
        import torch

        if self.prepared:
            return
        config = self.config
        torch.manual_seed(config.seed)
        self.device = resolve_device(config.device)
        self.precision, self.precision_note = resolve_precision(
            config.efficiency.precision, self.device
        )
        given = None
        if self.resuming:
            given = json.loads((self.run_dir / "splits.json").read_text("utf-8"))
        from curation.embeddings import resolve_model_source

        source = resolve_model_source(config.backbone)
        tokenizer = load_tokenizer(source)
        check_max_length(config, source, tokenizer)  # before tokenizing the whole store
        self.data: TrainingData = build_training_data(
            self.store,
            config.data,
            tokenizer,
            seed=config.seed,
            prefix=text_prefix_for(config),
            given_splits=given,
            cache=self.cache_tokens,
        )
        for message in self.data.warnings:
            log.warning(message)
        self.built: BuiltModel = build_model(
            config, self.data.labels, self.data.languages, tokenizer=tokenizer
        )
        self.model = self.built.model
        self.model.to(self.device)
        self.model.train()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.trainable = self.built.trainable_parameters()
        self.trainable_params, self.total_params = self.built.parameter_counts()
        self.lr = config.optimizer.resolved_lr(config.adapter)
        groups = parameter_groups(
            self.trainable,
            lr=self.lr,
            weight_decay=config.optimizer.weight_decay,
            layer_decay=config.optimizer.layer_decay,
            num_layers=self.built.num_layers,
        )
        self.group_summary = [
            {
                "depth": g["depth"],
                "lr": g["lr"],
                "weight_decay": g["weight_decay"],
                "parameters": int(sum(p.numel() for p in g["params"])),
            }
            for g in groups
        ]
        for group in groups:
            group.pop("names")
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=self.lr,
            betas=(config.optimizer.beta1, config.optimizer.beta2),
            eps=config.optimizer.eps,
        )
        self.sampler = LanguageBatchSampler(
            self.data.train.languages,
            self.data.train.lengths,
            batch_size=config.data.batch_size,
            alpha=config.data.sampling_alpha,
            group_by_length=config.data.group_by_length,
            per_language_batches=bool(self.built.language_adapters),
            seed=config.seed,
        )
        self.accumulation = config.data.accumulation_steps
        self.steps_per_epoch = max(1, math.ceil(len(self.sampler) / self.accumulation))
        self.total_steps = self._step_cap()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(
            "cuda" if self.device.startswith("cuda") else "cpu",
            enabled=self.precision == "fp16",
        )
        self.validation = {
            code: (split, np.argsort(split.lengths, kind="stable"))
            for code, split in self.data.validation.by_language().items()
        }
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self.start_rss_mb = peak_rss_mb()
        if self.resuming:
            self._load_checkpoint()
        else:
            self._create_run()
        self.prepared = True

    def _step_cap(self) -> int:
        cap = self.config.budget.max_steps
        if self.config.budget.max_epochs is not None:
            cap = min(cap, math.ceil(self.config.budget.max_epochs * self.steps_per_epoch))
        return max(1, cap)

    def _lr_factor(self, step: int) -> float:
        optimizer = self.config.optimizer
        warmup = int(math.ceil(optimizer.warmup_ratio * self.total_steps))
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if optimizer.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        if optimizer.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    def resolved(self) -> dict[str, Any]:
        """Settings as actually used (recorded with the run)."""
        return {
            "device": self.device,
            "precision": self.precision,
            "precision_note": self.precision_note,
            "gradient_checkpointing": self.config.efficiency.gradient_checkpointing,
            "batch_size": self.config.data.batch_size,
            "gradient_accumulation_steps": self.accumulation,
            "effective_batch_size": self.config.data.batch_size * self.accumulation,
            "lr": self.lr,
            "layer_decay": self.config.optimizer.layer_decay,
            "parameter_groups": self.group_summary,
            "group_by_length": self.config.data.group_by_length,
            "sampling_alpha": self.config.data.sampling_alpha,
            "sampling_probabilities": self.sampler.probabilities,
            "draws_per_epoch": self.sampler.draws_per_language(),
            "batches_per_epoch": len(self.sampler),
            "steps_per_epoch": self.steps_per_epoch,
            "step_cap": self.total_steps,
            "backbone_source": self.built.source,
            "model_type": self.built.model_type,
            "method": self.built.method,
            "target_modules": self.built.target_modules,
            "modules_to_save": self.built.modules_to_save,
            "newly_initialized": self.built.newly_initialized,
            "language_adapters": self.built.language_adapters,
            "text_prefix": text_prefix_for(self.config),
            "labels": list(self.data.labels),
        }

    def _create_run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=False)
        self.config.save(self.run_dir / "training_config.json")
        (self.run_dir / "splits.json").write_text(json.dumps(self.data.split_ids()), "utf-8")
        (self.run_dir / "run.json").write_text(json.dumps(self.resolved(), indent=2), "utf-8")
        record = {
            **self.config.to_dict(),
            "resolved": {k: v for k, v in self.resolved().items() if k not in {"parameter_groups"}},
        }
        runs.insert_run(self.store, self.run_id, record)

    # -- the loop -------------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def elapsed(self) -> float:
        """Wall seconds of this run so far, across resumes."""
        if self._session_start is None:
            return self.wall_before
        return self.wall_before + (self.clock() - self._session_start)

    def _cap_reached(self) -> str | None:
        budget = self.config.budget
        if self.step >= budget.max_steps:
            return f"max_steps: reached {self.step} steps"
        if budget.max_epochs is not None and self.step >= self.total_steps:
            return f"max_epochs: reached {budget.max_epochs:g} epochs ({self.step} steps)"
        elapsed = self.elapsed()
        if budget.max_minutes is not None and elapsed >= budget.max_minutes * 60:
            return f"max_minutes: {elapsed / 60:.2f} of {budget.max_minutes:g} minutes used"
        if (
            budget.max_gpu_hours is not None
            and self.device.startswith("cuda")
            and elapsed / 3600 >= budget.max_gpu_hours
        ):
            return f"max_gpu_hours: {elapsed / 3600:.3f} of {budget.max_gpu_hours:g} GPU hours used"
        return None

    def _nonfinite_reason(self) -> str | None:
        safety = self.config.safety
        if self.consecutive_nonfinite >= safety.max_consecutive_nonfinite:
            return (
                f"non_finite: {self.consecutive_nonfinite} steps in a row had a non-finite loss "
                f"or gradient (last at step {self.step}; {self.nonfinite['loss']} losses, "
                f"{self.nonfinite['gradient']} gradients in all)"
            )
        total = self.nonfinite["loss"] + self.nonfinite["gradient"]
        if safety.max_nonfinite_steps is not None and total >= safety.max_nonfinite_steps:
            return f"non_finite: {total} steps skipped for non-finite loss or gradient in all"
        return None

    def train(self) -> TrainResult:
        """Run until a cap, early stopping or non-finite values stop it; returns the result."""
        self.prepare()
        self._session_start = self.clock()
        self._emit({"event": "start", "run_id": self.run_id, "step": self.step})
        try:
            reason = self._loop()
        except KeyboardInterrupt:
            self._abort("interrupted", "interrupted")
            raise
        except BaseException as exc:
            self._abort("failed", f"error: {type(exc).__name__}: {exc}")
            raise
        return self._finish(reason)

    def _loop(self) -> str:
        every = self.config.evaluation.every
        checkpoint_every = self.config.checkpoint_every or every
        reason = self._cap_reached()
        while reason is None:
            self._train_step()
            self._emit({"event": "step", "step": self.step})
            if self.step % self.config.log_every == 0:
                self._log()
            reason = self._nonfinite_reason()
            if reason is not None:
                break
            if self.step % every == 0:
                self._evaluate_and_track()
                if self.tracker.should_stop:
                    reason = self.tracker.stop_reason()
                    break
            if self.step % checkpoint_every == 0:
                self.save_checkpoint()
            reason = self._cap_reached()
        return reason

    def _next_batch(self) -> np.ndarray:
        batches = self.sampler.epoch(self.epoch)
        if self.position >= len(batches):
            self.epoch += 1
            self.position = 0
            batches = self.sampler.epoch(self.epoch)
        index = batches[self.position]
        self.position += 1
        return index

    def autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.precision in {"bf16", "fp16"}:
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type="cuda", dtype=dtype)
        return contextlib.nullcontext()

    def forward(self, batch: dict[str, Any]) -> Any:
        """Logits (float32) of one batch; tests patch this to inject non-finite values."""
        with self.autocast():
            output = self.model(
                input_ids=batch["input_ids"].to(self.device),
                attention_mask=batch["attention_mask"].to(self.device),
            )
        return output.logits.float()

    def _train_step(self) -> None:
        import torch
        import torch.nn.functional as F

        started = time.perf_counter()
        indexes = [self._next_batch() for _ in range(self.accumulation)]
        examples = sum(len(index) for index in indexes)
        losses: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        bad_loss = False
        for index in indexes:
            batch = collate(self.data.train, index, self.pad_id)
            if self.built.language_adapters:
                self.built.activate(str(batch["languages"][0]))
            logits = self.forward(batch)
            labels = batch["labels"].to(self.device)
            per_example = F.cross_entropy(logits, labels, reduction="none")
            total = per_example.sum()
            if not bool(torch.isfinite(total)):
                bad_loss = True
                break
            values = per_example.detach().cpu().numpy()
            for code, value in zip(batch["languages"], values, strict=True):
                losses[code][0] += float(value)
                losses[code][1] += 1
            self.scaler.scale(total / examples).backward()
        self.step += 1
        grad_norm = float("nan")
        if bad_loss:
            self.nonfinite["loss"] += 1
            self.consecutive_nonfinite += 1
            log.warning("step %d: non-finite loss, step skipped", self.step)
        else:
            self.scaler.unscale_(self.optimizer)
            max_norm = self.config.optimizer.max_grad_norm or float("inf")
            params = [p for _, p in self.trainable]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not math.isfinite(grad_norm):
                self.nonfinite["gradient"] += 1
                self.consecutive_nonfinite += 1
                log.warning("step %d: non-finite gradient norm, step skipped", self.step)
                if self.scaler.is_enabled():
                    self.scaler.step(self.optimizer)  # sees the inf and skips the update
                    self.scaler.update()
            else:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.consecutive_nonfinite = 0
                for code, (total_loss, count) in losses.items():
                    self._window_losses[code][0] += total_loss
                    self._window_losses[code][1] += count
                self._window["grad_norm"].append(grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            self.scheduler.step()
        self.train_seconds += time.perf_counter() - started

    def _log(self) -> None:
        sums = self._window_losses
        count = sum(c for _, c in sums.values())
        norms = self._window["grad_norm"]
        entry = {
            "step": self.step,
            "epoch": round(self.epoch + self.position / max(1, len(self.sampler)), 4),
            "lr": self.scheduler.get_last_lr()[-1],
            "loss": round(sum(s for s, _ in sums.values()) / count, 6) if count else None,
            "loss_per_language": {
                code: round(s / c, 6) for code, (s, c) in sorted(sums.items()) if c
            },
            "grad_norm": round(float(np.mean(norms)), 6) if norms else None,
            "grad_norm_max": round(float(np.max(norms)), 6) if norms else None,
            "skipped_steps": self.nonfinite["loss"] + self.nonfinite["gradient"],
            "elapsed_seconds": round(self.elapsed(), 3),
        }
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        log.info(
            "step %d loss %s grad_norm %s | %s",
            self.step,
            entry["loss"],
            entry["grad_norm"],
            " ".join(f"{c} {v:.3f}" for c, v in entry["loss_per_language"].items()),
        )
        self._window.clear()
        self._window_losses.clear()
        self._emit({"event": "log", **entry})

    # -- evaluation -----------------------------------------------------------------------------
    def _validation_outputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(logits, true label index, language, loss) of every validation example."""
        import torch
        import torch.nn.functional as F

        was_training = self.model.training
        self.model.eval()
        logits_out, y_true, languages, losses = [], [], [], []
        size = self.config.data.eval_batch_size
        with torch.no_grad():
            for code, (split, order) in self.validation.items():
                self.built.activate(code)
                for start in range(0, len(order), size):
                    index = order[start : start + size]
                    batch = collate(split, index, self.pad_id)
                    logits = self.forward(batch)
                    labels = batch["labels"].to(self.device)
                    losses.append(F.cross_entropy(logits, labels, reduction="none").cpu().numpy())
                    logits_out.append(logits.float().cpu().numpy())
                    y_true.append(batch["labels"].numpy())
                    languages.append(batch["languages"])
        self.built.activate(None)
        if was_training:
            self.model.train()
        return (
            np.concatenate(logits_out),
            np.concatenate(y_true),
            np.concatenate(languages),
            np.concatenate(losses),
        )

    def evaluate(self) -> dict[str, Any]:
        """Macro-F1, loss and confusion matrix on every language's validation set."""
        started = time.perf_counter()
        logits, y_true, languages, losses = self._validation_outputs()
        self.eval_seconds += time.perf_counter() - started
        return summarize(
            y_true,
            logits.argmax(axis=1),
            languages,
            len(self.data.labels),
            losses=np.nan_to_num(losses, nan=np.inf, posinf=1e9),
        )

    def calibrate(self) -> dict[str, Any] | None:
        """Per-language temperatures on the validation split, with a cross-fitted ECE report
        (curation.calibration); written next to the adapter, used by its predict_proba."""
        from curation.calibration import calibration_payload

        logits, y_true, languages, _ = self._validation_outputs()
        if len(y_true) == 0 or not np.isfinite(logits).all():
            return None
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        payload = calibration_payload(
            probabilities,
            y_true,
            languages,
            min_labels=CALIBRATION_MIN_LABELS,
            seed=self.config.seed,
        )
        adapter = self.run_dir / "adapter"
        if adapter.is_dir():
            temporary = adapter / (CALIBRATION_FILE + ".tmp")
            temporary.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
            os.replace(temporary, adapter / CALIBRATION_FILE)
        return payload

    def _evaluate_and_track(self) -> dict[str, Any]:
        summary = self.evaluate()
        decision = self.tracker.consider(self.step, summary)
        record = {
            "step": self.step,
            "epoch": round(self.epoch + self.position / max(1, len(self.sampler)), 4),
            "elapsed_seconds": round(self.elapsed(), 3),
            **summary,
            "improved": decision.improved,
            "accepted": decision.accepted,
            "note": decision.note,
        }
        self.evaluations.append(record)
        self.last_eval_step = self.step
        with open(self.run_dir / "evaluations.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if decision.accepted:
            self._save_best()
        log.info(
            "step %d eval: mean macro-F1 %.4f, worst %s %.4f (%s)",
            self.step,
            summary["mean_macro_f1"] or 0.0,
            summary["worst_language"],
            summary["worst_language_f1"] or 0.0,
            decision.note,
        )
        self._emit(
            {
                "event": "evaluation",
                **{k: v for k, v in record.items() if k != "confusion_matrices"},
            }
        )
        return record

    # -- saving -------------------------------------------------------------------------------
    def _trainable_state(self) -> dict[str, Any]:
        return {name: p.detach().to("cpu", copy=True) for name, p in self.trainable}

    def _save_best(self) -> None:
        import torch

        _replace_dir(self.run_dir / "adapter", lambda d: save_model(self.built, d, self.config))
        temporary = self.run_dir / "best_trainable.pt.tmp"
        torch.save(self._trainable_state(), temporary)
        os.replace(temporary, self.run_dir / "best_trainable.pt")

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "wall_seconds": self.elapsed(),
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "nonfinite": dict(self.nonfinite),
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "tracker": self.tracker.state_dict(),
            "evaluations": self.evaluations,
            "last_eval_step": self.last_eval_step,
        }

    def save_checkpoint(self) -> None:
        """Write the resumable state to `<run>/checkpoint/` (atomically replaced)."""
        import torch

        def write(directory: Path) -> None:
            directory.mkdir(parents=True)
            state = {
                "trainable": self._trainable_state(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            }
            torch.save(state, directory / "state.pt")
            (directory / "trainer_state.json").write_text(
                json.dumps(self._trainer_state()), "utf-8"
            )

        _replace_dir(self.run_dir / "checkpoint", write)
        runs.update_run(self.store, self.run_id, metrics=self.metrics(partial=True))
        self._emit({"event": "checkpoint", "step": self.step})

    def _load_checkpoint(self) -> None:
        import torch

        directory = self.run_dir / "checkpoint"
        if (
            not (directory / "trainer_state.json").is_file()
            and (self.run_dir / "checkpoint.old" / "trainer_state.json").is_file()
        ):
            directory = self.run_dir / "checkpoint.old"
        state = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
        trainer_state = json.loads((directory / "trainer_state.json").read_text("utf-8"))
        self._load_trainable(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = trainer_state["step"]
        self.epoch = trainer_state["epoch"]
        self.position = trainer_state["position"]
        self.wall_before = trainer_state["wall_seconds"]
        self.train_seconds = trainer_state["train_seconds"]
        self.eval_seconds = trainer_state["eval_seconds"]
        self.nonfinite = dict(trainer_state["nonfinite"])
        self.consecutive_nonfinite = trainer_state["consecutive_nonfinite"]
        self.tracker.load_state_dict(trainer_state["tracker"])
        self.evaluations = list(trainer_state["evaluations"])
        self.last_eval_step = trainer_state["last_eval_step"]
        # Logs written after the checkpoint belong to the lost part of the run.
        _truncate_jsonl(self.run_dir / "log.jsonl", self.step)
        _truncate_jsonl(self.run_dir / "evaluations.jsonl", self.step)
        runs.update_run(self.store, self.run_id, status="running")
        log.info("resumed run %s at step %d", self.run_id, self.step)

    def _load_trainable(self, tensors: dict[str, Any]) -> None:
        import torch

        parameters = dict(self.trainable)
        missing = set(parameters) - set(tensors)
        if missing:
            raise InputError(
                f"checkpoint lacks {len(missing)} trainable tensors, e.g. {min(missing)}"
            )
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(tensors[name].to(parameter.device))

    # -- the end --------------------------------------------------------------------------------
    def memory(self) -> dict[str, Any]:
        import torch

        gpu = None
        if self.device.startswith("cuda"):
            gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        rss = peak_rss_mb()
        return {
            "peak_memory_mb": gpu if gpu is not None else rss,
            "peak_rss_mb": rss,
            "rss_at_start_mb": self.start_rss_mb,
            "gpu_max_allocated_mb": gpu,
        }

    def metrics(self, *, partial: bool = False) -> dict[str, Any]:
        """The run's summary (what the store and metrics.json hold)."""
        best = next(
            (e for e in self.evaluations if e["step"] == self.tracker.best_step and e["accepted"]),
            None,
        )
        examples_seen = self.step * self.config.data.batch_size * self.accumulation
        return {
            "run_id": self.run_id,
            "partial": partial,
            "seed": self.config.seed,
            "backbone": self.config.backbone,
            "method": self.built.method,
            "device": self.device,
            "precision": self.precision,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "trainable_fraction": round(self.trainable_params / self.total_params, 6),
            **self.memory(),
            "wall_seconds": round(self.elapsed(), 3),
            "train_seconds": round(self.train_seconds, 3),
            "eval_seconds": round(self.eval_seconds, 3),
            "steps": self.step,
            "epochs": round(examples_seen / max(1, len(self.data.train)), 4),
            "seconds_per_epoch": (
                round(self.train_seconds * len(self.data.train) / examples_seen, 3)
                if examples_seen
                else None
            ),
            "nonfinite": dict(self.nonfinite),
            "skipped_steps": self.nonfinite["loss"] + self.nonfinite["gradient"],
            "examples": self.data.counts(),
            "labels": list(self.data.labels),
            "resolved": self.resolved(),
            "best": None
            if best is None
            else {
                "step": best["step"],
                "mean_macro_f1": best["mean_macro_f1"],
                "worst_language": best["worst_language"],
                "worst_language_f1": best["worst_language_f1"],
                "per_language": best["per_language"],
                "confusion_matrices": best["confusion_matrices"],
            },
            "rollback_guard": list(self.tracker.refusals),
            "evaluations": [
                {k: v for k, v in e.items() if k != "confusion_matrices"} for e in self.evaluations
            ],
        }

    def _finish(self, reason: str) -> TrainResult:
        import torch

        if self.last_eval_step != self.step:
            self._evaluate_and_track()
        self.save_checkpoint()  # a capped run can continue with a larger cap
        best_path = self.run_dir / "best_trainable.pt"
        if best_path.is_file():
            self._load_trainable(torch.load(best_path, map_location="cpu", weights_only=True))
        self.model.eval()
        calibration = self.calibrate()
        metrics = self.metrics()
        metrics["calibration"] = None if calibration is None else calibration["report"]
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), "utf-8")
        runs.update_run(
            self.store,
            self.run_id,
            status="finished",
            metrics=metrics,
            adapter_path=str(self.run_dir / "adapter"),
            stopped_because=reason,
            finished=True,
        )
        self._emit({"event": "stop", "step": self.step, "stopped_because": reason})
        log.info("run %s stopped at step %d: %s", self.run_id, self.step, reason)
        return TrainResult(
            run_id=self.run_id,
            run_dir=self.run_dir,
            status="finished",
            stopped_because=reason,
            steps=self.step,
            metrics=metrics,
        )

    def _abort(self, status: str, reason: str) -> None:
        try:
            runs.update_run(
                self.store,
                self.run_id,
                status=status,
                metrics=self.metrics(partial=True),
                stopped_because=reason,
            )
        except Exception:  # never hide the original error
            log.exception("could not record the end of run %s", self.run_id)

    def adapter_model(self) -> Any:
        """The in-memory model (best weights after `train`) as an :class:`AdapterModel`."""
        from training.predict import AdapterModel

        model = AdapterModel(
            self.model,
            self.built.tokenizer,
            self.built.meta(self.config),
            device=self.device,
            batch_size=self.config.data.eval_batch_size,
        )
        calibration = self.run_dir / "adapter" / CALIBRATION_FILE
        if calibration.is_file():  # fitted at the end of `train`; the saved model has it too
            model.calibration = json.loads(calibration.read_text("utf-8"))
        return model


def _replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder next to `target`, then swap it in (a kill leaves one whole copy)."""
    temporary = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(temporary, ignore_errors=True)
    write(temporary)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    temporary.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _truncate_jsonl(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept = [
        line
        for line in path.read_text("utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in kept), "utf-8")


def train(store: Store, config: TrainingConfig, **kwargs: Any) -> TrainResult:
    """Train a new run (see :class:`Trainer` for the keyword arguments)."""
    return Trainer(store, config, **kwargs).train()
