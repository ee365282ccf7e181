"""The nightly stages that talk to the other wings: Label Studio (pull, push) and training.

Kept apart from curation.nightly so the run's bookkeeping does not depend on which wings are
installed and configured.
"""

from __future__ import annotations

from curation.run_context import RunContext, StageResult


def labelstudio_configured(ctx: RunContext) -> bool:
    """A URL and a key, by the client's one rule (the environment over the file, for both)."""
    from labeling.client import connection_settings

    url, key = connection_settings(ctx.config)
    return bool(url and key)


NOT_CONFIGURED = "no Label Studio configured (LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY)"


def stage_pull(ctx: RunContext) -> StageResult:
    """Mirror annotations and resolve labels; an unreachable server is a warning, not a failure."""
    if not labelstudio_configured(ctx):
        return StageResult("skipped", {"annotations": 0}, NOT_CONFIGURED)
    if ctx.dry_run:
        return StageResult("dry-run", {}, "would pull annotations from Label Studio")
    from labeling.client import LabelStudioClient, LabelStudioUnavailable
    from labeling.pull import pull

    try:
        result = pull(ctx.store, ctx.config, LabelStudioClient.from_config(ctx.config))
    except LabelStudioUnavailable as exc:
        return StageResult(
            "warning",
            {"annotations": 0},
            f"Label Studio unreachable, continuing with the labels we have: {exc}",
        )
    return StageResult("ok", {k: v for k, v in result.items() if k != "per_language"})


def stage_push(ctx: RunContext) -> StageResult:
    """Push unpushed rounds; with no server, write Label Studio's import file for this run."""
    from labeling.push import unpushed_rounds

    # Rounds never pushed ('selected') or cut short ('pushing', 'partially_pushed'); a round
    # already written to an import file ('exported') is not written again.
    waiting = unpushed_rounds(ctx.store)
    configured = labelstudio_configured(ctx)
    if ctx.dry_run:
        # The round the dry run's select planned is pushed by the real run too.
        select = ctx.results.get("select")
        names = [str(round_id) for round_id in waiting]
        if select is not None and select.counts.get("selected"):
            names.append("the new one")
        if not names:
            return StageResult("dry-run", {"rounds": 0}, "nothing to push")
        rounds = ", ".join(names)
        return StageResult(
            "dry-run",
            {"rounds": len(names)},
            f"would push round(s) {rounds}"
            if configured
            else f"would write round(s) {rounds} to a Label Studio import file ({NOT_CONFIGURED})",
        )
    if not waiting:
        return StageResult("ok", {"pushed": 0, "written_to_file": 0, "rounds": 0})
    if not configured:
        from labeling.push import write_import_file

        # Tasks in a file are not in Label Studio: counted apart from pushed ones, here, in the
        # report and in the store (tasks.project_id = 0, the round's status 'exported').
        files = []
        written = 0
        for round_id in waiting:
            path = ctx.run_dir / f"tasks-round-{round_id}.json"
            result = write_import_file(ctx.store, ctx.config, path, round_id=round_id)
            written += result["pushed"]
            files.append(str(path))
        return StageResult(
            "ok",
            {"pushed": 0, "written_to_file": written, "rounds": len(waiting), "files": files},
            f"{NOT_CONFIGURED}: {written} task(s) written to file, not pushed "
            "(import the file into Label Studio, or configure it)",
        )
    from labeling.client import LabelStudioClient, LabelStudioUnavailable
    from labeling.push import push

    try:
        result = push(ctx.store, ctx.config, LabelStudioClient.from_config(ctx.config))
    except LabelStudioUnavailable as exc:
        return StageResult(
            "warning",
            {"pushed": 0, "written_to_file": 0},
            f"Label Studio unreachable; the round stays queued for the next run: {exc}",
        )
    counts = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
    return StageResult("ok", {**counts, "written_to_file": 0})


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
        from training.tune import apply_best

        # The setting `curate tune` found, when there is one, over [training].
        training_config, tuned = apply_best(ctx.store, training_config)
        if tuned is not None:
            counts["tuned_trial"] = tuned["trial"]
        result = Trainer(ctx.store, training_config).train()
    summary = result.summary()
    counts.update(
        run_id=summary["run_id"],
        stopped_because=summary["stopped_because"],
        mean_macro_f1=(summary.get("best") or {}).get("mean_macro_f1"),
        worst_language_f1=(summary.get("best") or {}).get("worst_language_f1"),
    )
    return StageResult("ok", counts)
