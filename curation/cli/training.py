"""`curate train`: LoRA adapter training on the curated labels, its report and its export.

Registered on the shared typer app by importing this module (curation/cli.py does so at the
bottom). The `[training]` section of curate.toml is validated here with `training.config`
(curation itself never imports the training stack).

    curate train [--max-steps N] [--max-minutes M] [--json]   a new run
    curate train --resume [--run ID] [--max-steps N]           continue a killed (or capped) run
    curate train --report [--run ID] [--json]                  the per-language table of a run
    curate train --export DIR [--int8] [--run ID] [--json]     merged model; int8 F1 change
    curate tune --max-trials N [--max-minutes M] [--objective mean|worst]   Optuna search

A new run uses the best setting `curate tune` stored (``<store>/tuning/best.json``) over the
`[training]` section, unless `--untuned`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from curation.cli.base import (
    STATE,
    JsonOption,
    app,
    emit_json,
    open_store,
    print_table,
    project_config,
    stdout,
)
from curation.config import Config, resolve_config_path
from curation.errors import InputError
from curation.store import Store

# Progress lines; texts and notes may hold "[...]": never interpret them as markup.
stderr = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


def _training_config(config: Config) -> Any:
    """The validated `[training]` section; a relative backbone path resolves against the file."""
    from training.config import TrainingConfig, parse_training_config

    training = parse_training_config(config.training)
    config_path = resolve_config_path(STATE.config_path)
    backbone = Path(training.backbone).expanduser()
    if config_path is not None and not backbone.is_absolute():
        candidate = config_path.resolve().parent / backbone
        if candidate.exists():
            training = TrainingConfig.from_dict({**training.to_dict(), "backbone": str(candidate)})
    return training


def _existing_store(config: Config, *, read_only: bool = False) -> Store:
    if not (config.store.path / "curate.db").exists():
        raise InputError(f"no store at {config.store.path} (run `curate ingest` first)")
    return open_store(config, read_only=read_only)


def _record(store: Store, run: str | None) -> dict[str, Any]:
    from training import runs

    if run is not None:
        return runs.get_run(store, run)
    record = runs.latest_run(store)
    if record is None:
        raise InputError("no training runs yet (run `curate train`)")
    return record


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_report(record: dict[str, Any]) -> None:
    from training import runs

    payload = runs.summary_payload(record)
    metrics = record.get("metrics") or {}
    table = Table(title=f"run {record['id']} ({record['status']})")
    for column, justify in (
        ("language", "left"),
        ("train", "right"),
        ("validation", "right"),
        ("first eval F1", "right"),
        ("best F1", "right"),
        ("last eval F1", "right"),
        ("T", "right"),
        ("ECE before", "right"),
        ("ECE after", "right"),
    ):
        table.add_column(column, justify=justify)
    for row in runs.report_rows(record):
        table.add_row(
            row["language"],
            str(row["train"]),
            str(row["validation"]),
            _fmt(row["first_macro_f1"]),
            _fmt(row["best_macro_f1"]),
            _fmt(row["last_macro_f1"]),
            "-" if row["temperature"] is None else f"{row['temperature']:.2f}",
            _fmt(row["ece_before"]),
            _fmt(row["ece_after"]),
        )
    best = payload["best"]
    table.add_section()
    table.add_row("mean", "", "", "", _fmt(best["mean_macro_f1"]), "")
    table.add_row(
        f"worst ({best['worst_language'] or '-'})", "", "", "", _fmt(best["worst_language_f1"]), ""
    )
    print_table(table)
    trainable, total = payload["trainable_params"], payload["total_params"]
    if trainable and total:
        stdout.print(
            f"{metrics.get('method', '?')} on {metrics.get('backbone', '?')}: {trainable:,} of "
            f"{total:,} parameters trained ({100 * trainable / total:.2f}%); "
            f"{metrics.get('device')} {metrics.get('precision')}"
        )
    stdout.print(
        f"steps {payload['steps']}, best at step {best['step']}; wall "
        f"{payload['wall_seconds']} s; peak memory {payload['peak_memory_mb']} MB"
    )
    stdout.print(f"stopped because: {payload['stopped_because'] or '-'}")
    for refusal in metrics.get("rollback_guard") or []:
        stdout.print(refusal["reason"])
    if payload["adapter_path"]:
        stdout.print(f"adapter: {payload['adapter_path']}")


def _progress_printer(enabled: bool) -> Any:
    def on_event(event: dict[str, Any]) -> None:
        if not enabled:
            return
        kind = event["event"]
        if kind == "start":
            stderr.print(f"run {event['run_id']} from step {event['step']}")
        elif kind == "evaluation":
            stderr.print(
                f"step {event['step']}: mean macro-F1 {_fmt(event['mean_macro_f1'])}, worst "
                f"{event['worst_language']} {_fmt(event['worst_language_f1'])} ({event['note']})"
            )
        elif kind == "log":
            stderr.print(
                f"step {event['step']}: loss {event['loss']} grad norm {event['grad_norm']}"
            )

    return on_event


@app.command("train")
def train_command(
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Cap on optimizer steps.")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", min=0.0, help="Cap on wall-clock minutes (whole run)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the latest unfinished run (or --run) from its last checkpoint.",
        ),
    ] = False,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Run id for --resume, --report or --export (default: latest)."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Print a run's per-language table; train nothing.")
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write the run's model, adapter merged in, to this folder."),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="With --export: macro-F1 change per language under dynamic "
            "int8 quantization, on the run's validation split.",
        ),
    ] = False,
    untuned: Annotated[
        bool,
        typer.Option("--untuned", help="Ignore the setting `curate tune` stored; use [training]."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Train LoRA adapters on the curated labels, with per-language early stopping."""
    if sum([resume, report, export is not None]) > 1:
        raise InputError("use one of --resume, --report and --export at a time")
    if int8 and export is None:
        raise InputError("--int8 goes with --export DIR")
    if max_minutes is not None and max_minutes <= 0:
        raise InputError("--max-minutes must be > 0")
    config = project_config()
    if report:
        with _existing_store(config, read_only=True) as store:
            record = _record(store, run)
        if json_output:
            from training import runs

            payload = runs.summary_payload(record)
            payload["languages"] = runs.report_rows(record)
            payload["rollback_guard"] = (record.get("metrics") or {}).get("rollback_guard", [])
            emit_json(payload)
        else:
            _print_report(record)
        return
    if export is not None:
        _export(config, run, export, int8=int8, json_output=json_output)
        return

    from training.trainer import Trainer

    show = not json_output and not STATE.quiet
    with _existing_store(config) as store:
        if resume:
            trainer = Trainer.resume(
                store,
                run,
                max_steps=max_steps,
                max_minutes=max_minutes,
                on_event=_progress_printer(show),
            )
        else:
            if run is not None:
                raise InputError("--run picks a run for --resume, --report or --export")
            from training.tune import apply_best

            training = _training_config(config).with_budget(
                max_steps=max_steps, max_minutes=max_minutes
            )
            tuned = None
            if not untuned:
                training, tuned = apply_best(store, training)
            if tuned is not None and show:
                stderr.print(
                    f"using the setting `curate tune` found (trial {tuned['trial']}, "
                    f"{tuned['objective']} macro-F1 {tuned['value']:.4f}): "
                    + ", ".join(f"{k} {v:.4g}" for k, v in sorted(tuned["params"].items()))
                    + " (--untuned to ignore it)"
                )
            trainer = Trainer(store, training, on_event=_progress_printer(show))
        result = trainer.train()
        record = {
            "id": result.run_id,
            "status": result.status,
            "metrics": result.metrics,
            "stopped_because": result.stopped_because,
            "adapter_path": str(result.run_dir / "adapter"),
        }
    if json_output:
        payload = result.summary()
        emit_json(payload)
        return
    _print_report(record)


def _export(config: Config, run: str | None, out: Path, *, int8: bool, json_output: bool) -> None:
    import json

    from training import runs
    from training.deploy import merge_adapter, quantization_report

    if out.exists():
        raise InputError(f"{out} already exists; exports never overwrite")
    with _existing_store(config, read_only=True) as store:
        record = _record(store, run)
        directory = runs.run_dir(store, record["id"])
        if not (directory / "adapter").is_dir():
            raise InputError(f"run {record['id']} has no saved adapter")
        validation = runs.validation_examples(store, directory) if int8 else None
    try:
        path = merge_adapter(directory, out)
    except ValueError as exc:  # e.g. language adapters cannot merge into one model
        raise InputError(str(exc)) from None
    payload: dict[str, Any] = {"run_id": record["id"], "path": str(path), "int8": None}
    if validation is not None:
        texts, labels, languages = validation
        payload["int8"] = quantization_report(path, texts, labels, languages)
        (path / "int8_report.json").write_text(json.dumps(payload["int8"], indent=2), "utf-8")
    if json_output:
        emit_json(payload)
        return
    stdout.print(f"merged model of run {record['id']} written to {path}")
    if payload["int8"] is not None:
        report = payload["int8"]
        table = Table(title="dynamic int8 vs fp32 (validation macro-F1)")
        for column in ("language", "fp32", "int8", "change", "agreement"):
            table.add_column(column, justify="left" if column == "language" else "right")
        for code, row in report["per_language"].items():
            table.add_row(
                code,
                _fmt(row["fp32"]),
                _fmt(row["int8"]),
                f"{row['change']:+.4f}",
                f"{row['agreement']:.3f}",
            )
        print_table(table)
        stdout.print(
            f"size {report['size_mb']['fp32']} MB -> {report['size_mb']['int8']} MB; "
            f"{report['seconds']['fp32']} s -> {report['seconds']['int8']} s on "
            f"{report['examples']} texts"
        )


@app.command("tune")
def tune_command(
    max_trials: Annotated[
        int, typer.Option("--max-trials", min=1, help="Trials in the study, all sessions.")
    ] = 20,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", min=0.0, help="Stop starting trials after this long."),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            "--objective",
            help="mean or worst language macro-F1 (default: [training.evaluation] target).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Search LoRA rank, learning rate, layer decay and language sampling (Optuna, resumable).

    Each trial is a training run under [training]'s own caps; trials trailing the median are
    pruned. The best setting is stored in the store and used by `curate train` and `curate run`.
    """
    from training.tune import tune

    config = project_config()
    training = _training_config(config)
    chosen = objective or training.evaluation.target
    if chosen not in ("mean", "worst"):
        raise InputError(f"--objective must be mean or worst, got {chosen!r}")
    show = not json_output and not STATE.quiet

    def on_trial(event: dict[str, Any]) -> None:
        if show:
            value = "-" if event["value"] is None else f"{event['value']:.4f}"
            params = ", ".join(f"{k} {v:.4g}" for k, v in sorted(event["params"].items()))
            stderr.print(f"trial {event['trial']} {event['state']}: {value} ({params})")

    with _existing_store(config) as store:
        result = tune(
            store,
            training,
            max_trials=max_trials,
            max_minutes=max_minutes,
            objective=chosen,  # type: ignore[arg-type]
            seed=training.seed,
            on_trial=on_trial,
        )
    payload = result.summary()
    if json_output:
        emit_json(payload)
        return
    trials = result.trials
    stdout.print(
        f"{trials['complete']} complete, {trials['pruned']} pruned, {trials['failed']} failed "
        f"trials; stopped: {result.stopped_because}"
    )
    if result.best_params is None:
        stdout.print("no trial completed yet; nothing stored")
        return
    stdout.print(
        f"best {chosen} macro-F1 {result.best_value:.4f} (run {result.best_run_id}): "
        + ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.best_params.items()))
    )
    stdout.print("`curate train` and `curate run` use it from now on (`--untuned` to ignore)")
