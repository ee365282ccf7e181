"""`curate select` and `curate simulate` (registered on the main `curate` app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curation.cli.base import (
    JsonOption,
    app,
    emit_json,
    open_store,
    print_table,
    project_config,
    show_progress,
    stdout,
)
from curation.cli.progress import working
from curation.errors import InputError


def _strategy_names(incomplete: str) -> list[str]:
    """Shell completion of --strategy: the registry's names."""
    from selection.registry import available

    return [name for name in ["default", *available()] if name.startswith(incomplete)]


@app.command()
def select(
    budget: Annotated[
        int | None, typer.Option("--budget", "-n", min=1, help="Labels to buy this round.")
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="Query strategy (default: [selection]).",
            autocompletion=_strategy_names,
        ),
    ] = None,
    allocation: Annotated[
        str | None,
        typer.Option("--allocation", help="equal, proportional or need (default: [selection])."),
    ] = None,
    language: Annotated[
        list[str] | None, typer.Option("--language", "-l", help="Only these languages.")
    ] = None,
    reselect: Annotated[
        bool, typer.Option("--reselect", help="Allow examples chosen in earlier rounds.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the round as JSONL.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Train the proxy, split the budget per language, select, and store a round."""
    from curation.pipeline import SelectionRequest, round_rows, select_round

    config = project_config()
    chosen_allocation = allocation or config.selection.allocation
    if chosen_allocation not in {"equal", "proportional", "need"}:
        raise InputError(
            f"unknown allocation {chosen_allocation!r} (use equal, proportional or need)"
        )
    request = SelectionRequest(
        budget=budget or config.selection.budget,
        strategy=strategy or config.selection.strategy,
        allocation=chosen_allocation,
        languages=tuple(language) if language else None,
        reselect=reselect,
        seed=config.selection.seed,
    )
    with open_store(config) as store:
        with working(
            "select: proxy, budget split per language, strategy",
            enabled=show_progress(json_output),
        ):
            result = select_round(store, config, request)
        rows = [] if result["round_id"] is None else round_rows(store, result["round_id"])
    if output is not None:
        with open(output, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        result["output"] = str(output)
    if json_output:
        emit_json(result)
        return
    what = f"{result['strategy']}, {result['allocation']} allocation"
    table = Table(
        title=f"round {result['round_id']}: {what}"
        if result["round_id"] is not None
        else f"no round stored ({what}): nothing to select"
    )
    for column in ("language", "selected", "why this many", "first pick's reason"):
        table.add_column(column)
    first_reason = {}
    for row in rows:
        first_reason.setdefault(row["language"], row["reason"])
    # Every language the allocator considered, those that got nothing (stopped, no pool) too.
    for code in sorted(set(result["per_language"]) | set(result["explanations"])):
        table.add_row(
            code,
            str(result["per_language"].get(code, 0)),
            result["explanations"].get(code, ""),
            first_reason.get(code, ""),
        )
    print_table(table)
    stdout.print(
        f"selected {result['selected']} of {result['candidates']} candidates "
        f"({result['control']} random control); proxy {result['proxy_model_version'] or 'none'}"
        + (f"; {result['shortfall']} short: pool ran out" if result["shortfall"] else "")
    )
    calibration = result.get("calibration") or {}
    if calibration:
        stdout.print(
            "calibrated per language (temperature, held-out ECE before -> after): "
            + ", ".join(
                f"{code} T {row['temperature']:.2f} ({row['ece_before']:.3f} -> "
                f"{row['ece_after']:.3f})"
                for code, row in calibration.items()
                if code != "all"
            )
        )


@app.command()
def simulate(
    train: Annotated[Path, typer.Option("--train", help="Labeled pool (the oracle).")],
    test: Annotated[Path, typer.Option("--test", help="Labeled test set.")],
    strategy: Annotated[
        list[str],
        typer.Option(
            "--strategy",
            help="Strategy name; repeat to compare.",
            autocompletion=_strategy_names,
        ),
    ],
    rounds: Annotated[int, typer.Option("--rounds", min=0)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 100,
    seed_size: Annotated[int, typer.Option("--seed-size", min=1)] = 100,
    seeds: Annotated[int, typer.Option("--seeds", min=1)] = 5,
    allocation: Annotated[
        str | None,
        typer.Option(
            "--allocation",
            help="Split each round per language: equal, proportional, need (default: no split).",
        ),
    ] = None,
    stopping: Annotated[
        bool,
        typer.Option(
            "--stopping",
            help="Run again with [selection.stopping]'s per-language rule and compare: labels "
            "saved, final macro-F1 change (needs --allocation).",
        ),
    ] = False,
    two_stage_shards: Annotated[
        int | None,
        typer.Option(
            "--two-stage-shards",
            min=1,
            help='Run again the way [engine] kind = "ray" selects (N shards keep local '
            "candidates, the selection runs on their union; no cluster needed) and compare AULC.",
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("results.json"),
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG of the curves.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Active learning on your own labeled data, with the labels as the oracle."""
    from curation.pipeline import simulate_files
    from selection.registry import available

    valid = {"default", *available()}
    unknown = [name for name in strategy if name not in valid]
    if unknown:
        raise InputError(
            f"unknown strategy {', '.join(unknown)} (valid: {', '.join(sorted(valid))})"
        )
    for path in (train, test):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    config = project_config()
    results = simulate_files(
        config,
        train=train,
        test=test,
        strategies=strategy,
        rounds=rounds,
        batch_size=batch_size,
        seed_size=seed_size,
        seeds=seeds,
        allocation=allocation,
        progress=show_progress(json_output),
        stopping=stopping,
        two_stage_shards=two_stage_shards,
    )
    output.write_text(json.dumps(results, indent=2))
    if plot is not None:
        from selection.simulation import plot_curves

        plot_curves(results, plot)
    summary = {
        "output": str(output),
        "plot": None if plot is None else str(plot),
        "full_pool_macro_f1": results["full_pool"]["macro_f1"],
        "aulc_macro_f1": {
            name: values["aulc_macro_f1"] for name, values in results["strategies"].items()
        },
    }
    if stopping:
        summary["stopping"] = {
            name: {k: v for k, v in row.items() if k != "stopped_at"}
            for name, row in results["stopping"]["per_strategy"].items()
        }
    if two_stage_shards is not None:
        summary["two_stage"] = results["two_stage"]
    if json_output:
        emit_json(summary)
        return
    table = Table(title="simulation: AULC (mean macro-F1 over rounds, mean over seeds)")
    table.add_column("strategy")
    table.add_column("AULC macro-F1", justify="right")
    table.add_column("final worst-language F1", justify="right")
    for name, values in results["strategies"].items():
        finals = [curve[-1]["worst_language_f1"] for curve in values["curves"]]
        table.add_row(name, f"{values['aulc_macro_f1']:.4f}", f"{sum(finals) / len(finals):.4f}")
    print_table(table)
    if stopping:
        table = Table(title=f"per-language stopping: {results['stopping']['rule']}")
        for column in ("strategy", "labels without", "labels with", "saved", "macro-F1 change"):
            table.add_column(column, justify="left" if column == "strategy" else "right")
        for name, row in results["stopping"]["per_strategy"].items():
            share = 100 * row["labels_saved"] / row["labels_without"]
            table.add_row(
                name,
                f"{row['labels_without']:.0f}",
                f"{row['labels_with']:.0f}",
                f"{row['labels_saved']:.0f} ({share:.0f}%)",
                f"{row['macro_f1_change']:+.4f}",
            )
        print_table(table)
    if two_stage_shards is not None:
        table = Table(title=f"two-stage selection over {two_stage_shards} shards (the Ray engine)")
        for column in ("strategy", "AULC local", "AULC two-stage", "difference"):
            table.add_column(column, justify="left" if column == "strategy" else "right")
        for name, row in results["two_stage"]["per_strategy"].items():
            table.add_row(
                name,
                f"{row['aulc_local']:.4f}",
                f"{row['aulc_two_stage']:.4f}",
                f"{row['difference']:+.4f}",
            )
        print_table(table)
    stdout.print(
        f"full pool macro-F1 {results['full_pool']['macro_f1']:.4f}; "
        f"results in {output}" + (f", curves in {plot}" if plot else "")
    )
