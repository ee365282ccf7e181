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
    threshold = ctx.config.run.train_after_new_labels
    if threshold == 0:
        return StageResult("skipped", {}, "adapter training off ([run] train_after_new_labels = 0)")
    return StageResult("skipped", {}, "adapter training is not wired yet")
