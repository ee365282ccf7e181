"""The nightly stages that talk to the other wings: Label Studio (pull, push) and training.

Kept apart from curation.nightly so the run's bookkeeping does not depend on which wings are
installed and configured.
"""

from __future__ import annotations

import os

from curation.nightly import RunContext, StageResult


def labelstudio_configured(ctx: RunContext) -> bool:
    settings = ctx.config.labelstudio
    url = settings.url or os.environ.get("LABEL_STUDIO_URL")
    key = settings.api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    return bool(url and key)


def stage_pull(ctx: RunContext) -> StageResult:
    if not labelstudio_configured(ctx):
        return StageResult(
            "skipped",
            {"annotations": 0},
            "no Label Studio configured (LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY)",
        )
    return StageResult("skipped", {"annotations": 0}, "the Label Studio bridge is not wired yet")


def stage_push(ctx: RunContext) -> StageResult:
    if not labelstudio_configured(ctx):
        return StageResult(
            "skipped",
            {"pushed": 0},
            "no Label Studio configured (LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY)",
        )
    return StageResult("skipped", {"pushed": 0}, "the Label Studio bridge is not wired yet")


def stage_train(ctx: RunContext) -> StageResult:
    """Retrain the adapter once enough new labels arrived; finish a killed training run first."""
    threshold = ctx.config.run.train_after_new_labels
    if threshold == 0:
        return StageResult("skipped", {}, "adapter training off ([run] train_after_new_labels = 0)")
    from training import runs
    from training.config import parse_training_config
    from training.trainer import Trainer

    training_config = parse_training_config(ctx.config.training)
    unfinished = [
        record
        for record in runs.list_runs(ctx.store)
        if record["status"] in runs.RESUMABLE and runs.can_resume(ctx.store, record)
    ]
    last = runs.latest_run(ctx.store)
    since = last["started_at"] if last else ""
    new_labels = ctx.store.conn.execute(
        "SELECT COUNT(*) FROM labels WHERE updated_at > ?", (since,)
    ).fetchone()[0]
    counts = {"new_labels": int(new_labels), "threshold": threshold}
    if not unfinished and new_labels < threshold:
        return StageResult(
            "skipped", counts, f"{new_labels} new labels since the last training, below {threshold}"
        )
    if ctx.dry_run:
        action = f"resume run {unfinished[-1]['id']}" if unfinished else "train a new adapter"
        return StageResult("dry-run", counts, f"would {action}")
    if unfinished:
        result = Trainer.resume(ctx.store, unfinished[-1]["id"]).train()
    else:
        result = Trainer(ctx.store, training_config).train()
    summary = result.summary()
    counts.update(
        run_id=summary["run_id"],
        stopped_because=summary["stopped_because"],
        mean_macro_f1=(summary.get("best") or {}).get("mean_macro_f1"),
        worst_language_f1=(summary.get("best") or {}).get("worst_language_f1"),
    )
    return StageResult("ok", counts)
