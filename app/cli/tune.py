"""`fusionrank tune ...` and `fusionrank simulate`: utility weights from logged candidate sets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from app.commands.common import (
    EngineOption,
    NegativeOption,
    ProgressOption,
    SparkConfOption,
    SparkLogsOption,
    SparkMasterOption,
    SparkSampleOption,
    TableOption,
    check_engine,
    offline_errors,
)

__all__ = ["simulate_command", "tune_app"]

tune_app = typer.Typer(no_args_is_help=True, help="Tune utility weights on logged candidate sets (see docs/tuning.md).")

@contextmanager
def _log_reader(
    engine: str, logs: Path | None, table: str | None, master: str | None, conf: list[str] | None, sample: float,
    progress: bool,
) -> Iterator[tuple[Path, Any]]:
    """(name of the logs, reader for the tuners: None = read the local file) for the chosen engine."""
    if check_engine(engine, logs, table) == "spark":
        from app.offline.spark import SparkInput, read_input, sampled_candidate_log, spark_session

        source = SparkInput(logs, table)
        with spark_session(master, conf or (), show_progress=progress) as spark:
            frame = read_input(spark, source)
            yield Path(source.origin), lambda tasks: sampled_candidate_log(frame, source.origin, tasks=tasks,
                                                                           sample=sample)
        return
    if logs is None:
        raise ValueError("give --logs FILE (or --engine spark --table NAME)")
    yield logs, None


@tune_app.command("ndcg-gap")
def tune_ndcg_gap(
    target: Annotated[list[str], typer.Option("--target", help="TASK=FRACTION, once per task; fractions sum to 1")],
    out: Annotated[Path, typer.Option(help="weights.json to write")] = Path("weights.json"),
    negative: NegativeOption = [],  # noqa: B006 - typer reads the default, never mutates it
    k: Annotated[int | None, typer.Option(min=1, help="NDCG cutoff (default: the whole group)")] = None,
    progress: ProgressOption = True,
    logs: SparkLogsOption = None,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
    spark_sample: SparkSampleOption = 1.0,
) -> None:
    """Weights whose per-task NDCG gaps (1 - NDCG with the task zeroed) split in the target fractions."""
    from app.offline.tuning.commands import run_fraction_tuner
    from app.offline.tuning.report_console import print_fraction_result

    with (
        offline_errors(),
        _log_reader(engine, logs, table, spark_master, spark_conf, spark_sample, progress) as (name, reader),
    ):
        result = run_fraction_tuner("ndcg_gap", name, target, negative=negative, k=k, labels=False, out=out,
                                    show_progress=progress, reader=reader)
    print_fraction_result(result, "ndcg_gaps")
    typer.echo(f"wrote {out}")


@tune_app.command("regret")
def tune_regret(
    target: Annotated[list[str], typer.Option("--target", help="TASK=FRACTION, once per task; fractions sum to 1")],
    out: Annotated[Path, typer.Option(help="weights.json to write")] = Path("weights.json"),
    negative: NegativeOption = [],  # noqa: B006
    labels: Annotated[
        bool, typer.Option("--labels/--predictions", help="task gains: observed labels or predictions")
    ] = False,
    k: Annotated[int | None, typer.Option(min=1, help="NDCG cutoff (default: the whole group)")] = None,
    progress: ProgressOption = True,
    logs: SparkLogsOption = None,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
    spark_sample: SparkSampleOption = 1.0,
) -> None:
    """Weights whose per-task regrets (1 - NDCG against the task's own ideal ranking) split in the targets."""
    from app.offline.tuning.commands import run_fraction_tuner
    from app.offline.tuning.report_console import print_fraction_result

    with (
        offline_errors(),
        _log_reader(engine, logs, table, spark_master, spark_conf, spark_sample, progress) as (name, reader),
    ):
        result = run_fraction_tuner("regret", name, target, negative=negative, k=k, labels=labels, out=out,
                                    show_progress=progress, reader=reader)
    print_fraction_result(result, "regrets")
    typer.echo(f"wrote {out}")


@tune_app.command("constrained")
def tune_constrained(
    primary: Annotated[str, typer.Option(help="task whose NDCG@k is maximised")],
    bound: Annotated[list[str], typer.Option("--bound", help="TASK=LIMIT: mean p_TASK in the top k <= LIMIT")],
    task: Annotated[list[str], typer.Option("--task", help="a task of the utility (default: every task)")] = [],  # noqa: B006
    negative: NegativeOption = [],  # noqa: B006
    labels: Annotated[bool, typer.Option("--labels/--predictions", help="primary gains: labels or predictions")] = True,
    k: Annotated[int, typer.Option(min=1, help="top k")] = 10,
    holdout: Annotated[float, typer.Option(min=0.05, max=0.9, help="share of groups held out")] = 0.3,
    confidence: Annotated[float, typer.Option(min=0.0, help="standard errors of room kept under each bound")] = 2.0,
    sweep: Annotated[int, typer.Option(min=0, help="frontier points to fit (0: none)")] = 6,
    out: Annotated[Path, typer.Option(help="weights.json to write (the frontier goes next to it)")] = Path(
        "weights.json"),
    progress: ProgressOption = True,
    logs: SparkLogsOption = None,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
    spark_sample: SparkSampleOption = 1.0,
) -> None:
    """Maximise the primary NDCG@k under upper bounds on negative outcomes in the top k (held-out check)."""
    from app.offline.tuning.commands import run_constrained
    from app.offline.tuning.report_console import print_constrained_result

    with (
        offline_errors(),
        _log_reader(engine, logs, table, spark_master, spark_conf, spark_sample, progress) as (name, reader),
    ):
        result = run_constrained(name, tasks=task, negative=negative, primary=primary, labels=labels,
                                 bounds=bound, k=k, holdout=holdout, confidence=confidence, sweep=sweep, out=out,
                                 show_progress=progress, reader=reader)
    print_constrained_result(result)
    typer.echo(f"wrote {out}")


def simulate_command(
    policy: Annotated[list[Path], typer.Option("--policy", help="a policy YAML to replay (repeat to compare)")],
    out: Annotated[Path, typer.Option(help="folder for report.md, pareto.png, results.json")],
    logs: SparkLogsOption = None,
    grid: Annotated[list[str], typer.Option("--grid", help="TERM=W1,W2,...: vary a term of the first policy")] = [],  # noqa: B006
    weights: Annotated[
        list[Path], typer.Option("--weights", help="weights.json from `tune`: the first policy with those weights")
    ] = [],  # noqa: B006
    k: Annotated[int, typer.Option(min=1, help="metrics over the top k")] = 10,
    top_k: Annotated[int | None, typer.Option(min=1, help="the request's top_k (the policy's applies too)")] = None,
    context: Annotated[
        list[str], typer.Option("--context", help="NAME=COLUMN: context attribute from a log column")
    ] = [],  # noqa: B006
    segment: Annotated[list[str], typer.Option("--segment", help="group-level column to break down by")] = [],  # noqa: B006
    mix: Annotated[list[str], typer.Option("--mix", help="attribute whose share in the top k is reported")] = [],  # noqa: B006
    x: Annotated[str | None, typer.Option(help="Pareto x metric, lower is better")] = None,
    y: Annotated[str | None, typer.Option(help="Pareto y metric, higher is better")] = None,
    emit_policy: Annotated[bool, typer.Option(help="write the picked variant as a draft policy")] = False,
    pick: Annotated[str | None, typer.Option(help="variant to emit (default: best y on the front, x no worse)")] = None,
    emit_version: Annotated[str | None, typer.Option(help="version of the draft (default: next)")] = None,
    progress: ProgressOption = True,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
    spark_buckets: Annotated[int, typer.Option(min=1, help="with --engine spark: buckets of whole groups replayed"
                                                           " per Spark task")] = 64,
) -> None:
    """Replay logged requests under policies with the service's own composition; report and plot."""
    from app.offline.tuning.commands import run_simulate
    from app.offline.tuning.report_console import print_simulation_result

    def run(replayer: Any, name: Path | str) -> dict[str, Any]:
        return run_simulate(name, policy, grid=grid, weights=weights, out=out, k=k, top_k=top_k, context=context,
                            segments=segment, mix=mix, x=x, y=y, emit_policy=emit_policy, pick=pick,
                            emit_version=emit_version, show_progress=progress, replayer=replayer)

    with offline_errors():
        if check_engine(engine, logs, table) == "spark":
            from app.offline.spark import SparkInput, SparkReplayer, read_input, spark_session

            source = SparkInput(logs, table)
            with spark_session(spark_master, spark_conf or (), show_progress=progress) as spark:
                result = run(SparkReplayer(read_input(spark, source), source.origin, buckets=spark_buckets),
                             source.origin)
        else:
            if logs is None:
                raise ValueError("give --logs FILE (or --engine spark --table NAME)")
            result = run(None, logs)
    print_simulation_result(result)
    typer.echo(f"wrote {out / 'report.md'}, {out / 'pareto.png'}, {out / 'results.json'}")


