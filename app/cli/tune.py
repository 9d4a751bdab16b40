"""`fusionrank tune ...` and `fusionrank simulate`: utility weights from logged candidate sets.

The commands declare options; their bodies live in app.cli.tuning_runs, imported when a command runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.exits import user_errors
from app.cli.extras import needs_extra
from app.cli.groups import OptionGroup, with_groups
from app.cli.options import EngineOptions, LogsOption, NegativeOption, ProgressOption, SparkSampleOption

__all__ = ["FractionTargets", "simulate", "tune_app"]

tune_app = typer.Typer(
    name="tune", no_args_is_help=True, help="Tune utility weights on logged candidate sets (see docs/tuning.md).",
)

KOption = Annotated[int | None, typer.Option(min=1, help="NDCG cutoff (default: the whole group)")]


@dataclass(frozen=True)
class FractionTargets(OptionGroup):
    """What `tune ndcg-gap` and `tune regret` are asked: each task's share of the trade-off, and where to write."""

    target: Annotated[list[str], typer.Option("--target", help="TASK=FRACTION, once per task; fractions sum to 1")]
    out: Annotated[Path, typer.Option(help="weights.json to write")] = Path("weights.json")
    negative: NegativeOption = field(default_factory=list)
    k: KOption = None
    product_epsilon: Annotated[float | None, typer.Option(
        min=1e-6, max=1.0, help="tune the exponents of a product-form policy (ranking.form: product with this"
        " epsilon) in log space")] = None


@contextmanager
def _log_reader(engine: EngineOptions, logs: Path | None, sample: float, progress: bool) -> Iterator[tuple[Path, Any]]:
    """(name of the logs, reader for the tuners: None = read the local file) for the chosen engine."""
    if engine.on_spark():
        from app.offline.spark import SparkInput, read_input, sampled_candidate_log

        source = SparkInput(logs, engine.table)
        with engine.session(progress) as spark:
            frame = read_input(spark, source)
            yield Path(source.origin), lambda tasks: sampled_candidate_log(frame, source.origin, tasks=tasks,
                                                                           sample=sample)
        return
    if logs is None:
        raise ValueError("give --logs FILE (or --engine spark --table NAME)")
    yield logs, None


def _fit_fractions(kind: str, asked: FractionTargets, *, labels: bool, logs: Path | None, progress: bool,
                   engine: EngineOptions, sample: float) -> None:
    """The body of `tune ndcg-gap` (kind "ndcg_gap") and `tune regret` (kind "regret")."""
    from app.cli.tuning_runs import run_fraction_tuner
    from app.offline.tuning.report_console import print_fraction_result

    with user_errors(ValueError), _log_reader(engine, logs, sample, progress) as (name, reader):
        result = run_fraction_tuner(kind, name, asked.target, negative=asked.negative, k=asked.k, labels=labels,
                                    out=asked.out, show_progress=progress, reader=reader,
                                    epsilon=asked.product_epsilon)
    print_fraction_result(result, "ndcg_gaps" if kind == "ndcg_gap" else "regrets")
    typer.echo(f"wrote {asked.out}")


@tune_app.command("ndcg-gap")
@needs_extra("offline")
@with_groups
def tune_ndcg_gap(
    *,
    asked: FractionTargets,
    logs: LogsOption = None,
    progress: ProgressOption = True,
    engine: EngineOptions,
    spark_sample: SparkSampleOption = 1.0,
) -> None:
    """Weights whose per-task NDCG gaps (1 - NDCG with the task zeroed) split in the target fractions."""
    _fit_fractions("ndcg_gap", asked, labels=False, logs=logs, progress=progress, engine=engine, sample=spark_sample)


@tune_app.command("regret")
@needs_extra("offline")
@with_groups
def tune_regret(
    *,
    asked: FractionTargets,
    labels: Annotated[
        bool, typer.Option("--labels/--predictions", help="task gains: observed labels or predictions")
    ] = False,
    logs: LogsOption = None,
    progress: ProgressOption = True,
    engine: EngineOptions,
    spark_sample: SparkSampleOption = 1.0,
) -> None:
    """Weights whose per-task regrets (1 - NDCG against the task's own ideal ranking) split in the targets."""
    _fit_fractions("regret", asked, labels=labels, logs=logs, progress=progress, engine=engine, sample=spark_sample)


@tune_app.command("constrained")
@needs_extra("offline")
@with_groups
def tune_constrained(
    *,
    primary: Annotated[str, typer.Option(help="task whose NDCG@k is maximised")],
    bound: Annotated[list[str], typer.Option("--bound", help="TASK=LIMIT: mean p_TASK in the top k <= LIMIT")],
    task: Annotated[list[str], typer.Option("--task", help="a task of the utility (default: every task)")] = [],  # noqa: B006
    negative: NegativeOption = [],  # noqa: B006 - typer reads the default, never mutates it
    labels: Annotated[bool, typer.Option("--labels/--predictions", help="primary gains: labels or predictions")] = True,
    k: Annotated[int, typer.Option(min=1, help="top k")] = 10,
    holdout: Annotated[float, typer.Option(min=0.05, max=0.9, help="share of groups held out")] = 0.3,
    confidence: Annotated[float, typer.Option(min=0.0, help="standard errors of room kept under each bound")] = 2.0,
    sweep: Annotated[int, typer.Option(min=0, help="frontier points to fit (0: none)")] = 6,
    out: Annotated[Path, typer.Option(help="weights.json to write (the frontier goes next to it)")] = Path(
        "weights.json"),
    logs: LogsOption = None,
    progress: ProgressOption = True,
    engine: EngineOptions,
    spark_sample: SparkSampleOption = 1.0,
) -> None:
    """Maximise the primary NDCG@k under upper bounds on negative outcomes in the top k (held-out check)."""
    from app.cli.tuning_runs import run_constrained
    from app.offline.tuning.report_console import print_constrained_result

    with user_errors(ValueError), _log_reader(engine, logs, spark_sample, progress) as (name, reader):
        result = run_constrained(name, tasks=task, negative=negative, primary=primary, labels=labels,
                                 bounds=bound, k=k, holdout=holdout, confidence=confidence, sweep=sweep, out=out,
                                 show_progress=progress, reader=reader)
    print_constrained_result(result)
    typer.echo(f"wrote {out}")


@needs_extra("offline")
@with_groups
def simulate(
    *,
    policy: Annotated[list[Path], typer.Option("--policy", help="a policy YAML to replay (repeat to compare)")],
    out: Annotated[Path, typer.Option(help="folder for report.md, pareto.png, results.json")],
    logs: LogsOption = None,
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
    engine: EngineOptions,
    spark_buckets: Annotated[int, typer.Option(min=1, help="with --engine spark: buckets of whole groups replayed"
                                                           " per Spark task")] = 64,
    ope: Annotated[bool, typer.Option("--ope", help="also estimate each policy's value at top k off-policy from"
                                                    " the logged propensities (a joined log; docs/closing-the-loop.md)")
                   ] = False,
    ope_metric: Annotated[list[str], typer.Option("--ope-metric", help="with --ope: a task or `utility` whose"
                                                                       " value is estimated (default: every task)")
                          ] = [],  # noqa: B006
    bootstrap: Annotated[int, typer.Option(min=10, max=100_000, help="with --ope: bootstrap replicates")] = 1000,
    confidence: Annotated[float, typer.Option(help="with --ope: confidence of the intervals")] = 0.95,
    seed: Annotated[int, typer.Option(min=0, help="with --ope: seed of the bootstrap")] = 0,
    model: Annotated[Path | None, typer.Option(help="a model bundle folder: rescore the logged features with it and"
                                                    " compare its predictions, slates (and --ope value) with the"
                                                    " served ones")] = None,
    model_calibration: Annotated[str | None, typer.Option(help="with --model: the bundle's calibration version"
                                                                " (default: its highest)")] = None,
    cascade_store: Annotated[Path | None, typer.Option(help="a model store: replay each --policy's `cascade` (first"
                                                             " stage and model) on the logged features and report"
                                                             " the quality lost against scoring every candidate")
                             ] = None,
) -> None:
    """Replay logged requests under policies with the service's own composition; report and plot."""
    from app.cli.tuning_runs import ope_settings, run_simulate
    from app.offline.ope.console import print_model_replay, print_ope_result
    from app.offline.tuning.report_console import print_simulation_result

    def run(replayer: Any, name: Path | str) -> dict[str, Any]:
        return run_simulate(name, policy, grid=grid, weights=weights, out=out, k=k, top_k=top_k, context=context,
                            segments=segment, mix=mix, x=x, y=y, emit_policy=emit_policy, pick=pick,
                            emit_version=emit_version, show_progress=progress, replayer=replayer,
                            ope=ope_settings(k, ope_metric, confidence, bootstrap, seed) if ope else None,
                            model=model, model_calibration=model_calibration, cascade_store=cascade_store)

    with user_errors(ValueError):
        if engine.on_spark():
            from app.offline.spark import SparkInput, SparkReplayer, read_input

            source = SparkInput(logs, engine.table)
            with engine.session(progress) as spark:
                result = run(SparkReplayer(read_input(spark, source), source.origin, buckets=spark_buckets),
                             source.origin)
        else:
            if logs is None:
                raise ValueError("give --logs FILE (or --engine spark --table NAME)")
            result = run(None, logs)
    print_simulation_result(result)
    if "ope" in result:
        print_ope_result(result)
    if "model_replay" in result:
        print_model_replay(result["model_replay"])
    for label, quality in result.get("cascade", {}).items():
        typer.echo(f"cascade of {label} (top_n={quality['top_n']}): overlap@{k}={quality[f'overlap@{k}']:.4f}"
                   f" ndcg@{k}={quality[f'ndcg@{k}']:.4f} utility ratio={quality['utility_ratio']:.4f},"
                   f" {quality['cut_share']:.1%} of candidates cut")
    typer.echo(f"wrote {out / 'report.md'}, {out / 'pareto.png'}, {out / 'results.json'}")
