"""`fusionrank`: the service and the offline toolkit behind one command.

Offline commands import torch and friends lazily, so `fusionrank serve` runs without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from app.artifacts.manifest import ModelManifest

__all__ = ["app", "main"]

app = typer.Typer(
    name="fusionrank", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
    help="Calibrated multi-task ranking under versioned utility policies.",
)


@app.command()
def serve(
    model_store: Annotated[Path, typer.Option(help="folder of model bundles")] = Path("model_store"),
    policies: Annotated[Path, typer.Option(help="folder of policies")] = Path("policies"),
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve /v1/score on HOST:PORT with the bundles and policies given.

    SIGTERM drains: /readyz answers 503 for FUSIONRANK_SHUTDOWN_DRAIN_SECONDS while requests are still
    served, then the requests in flight get FUSIONRANK_SHUTDOWN_GRACE_SECONDS to finish (exit code 0).
    """
    import uvicorn

    from app.api.shutdown import DrainingServer, ShutdownDrain
    from app.main import create_app
    from app.settings import get_settings

    # Settings are read from the environment inside each worker's lifespan.
    os.environ["FUSIONRANK_MODEL_STORE"] = str(model_store.resolve())
    os.environ["FUSIONRANK_POLICIES"] = str(policies.resolve())
    os.environ["FUSIONRANK_HOST"] = host
    os.environ["FUSIONRANK_PORT"] = str(port)
    settings = get_settings()  # fail here, before binding, on a bad environment
    grace = settings.shutdown_grace_seconds
    if workers > 1:  # uvicorn's supervisor owns the signals; each worker shuts down gracefully itself
        uvicorn.run(
            "app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
            access_log=False, timeout_graceful_shutdown=grace,
        )
        return
    drain = ShutdownDrain()
    config = uvicorn.Config(
        create_app(drain=drain), host=host, port=port, log_level=log_level, access_log=False,
        timeout_graceful_shutdown=grace,
    )
    server = DrainingServer(config, drain, settings.shutdown_drain_seconds)
    server.run()
    if not server.started:  # as uvicorn.run: a failed startup is a non-zero exit
        raise typer.Exit(code=3)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder to write model_store/, policies/ and demo_data/ into")],
    seed: Annotated[int, typer.Option(help="random seed; the same seed writes the same bundle")] = 7,
    rows: Annotated[int, typer.Option(min=2000, help="impressions in the synthetic log")] = 300_000,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 3,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    logs: Annotated[bool, typer.Option(help="also write demo_data/logs.parquet for `tune` and `simulate`")] = False,
) -> None:
    """Generate a synthetic log, train, export, calibrate, and write a servable bundle and policy."""
    from rich.console import Console
    from rich.table import Table

    from app.offline.demo import DemoConfig, run_demo

    result = run_demo(out, DemoConfig(seed=seed, rows=rows, epochs=epochs, show_progress=progress, logs=logs))
    console = Console()
    table = Table(title=f"{result.manifest.name}/{result.manifest.version} on held-out days")
    features = [s.feature for s in next(iter(result.calibration.tasks.values())).segments]
    for column in ("task", "AUC", "ratio raw", "ratio calibrated", "logloss raw", "logloss calibrated",
                   *(f"Field-RCE {f} raw → cal." for f in features)):
        table.add_column(column)
    for task, cal in result.calibration.tasks.items():
        before, after = cal.metrics.before, cal.metrics.after
        table.add_row(
            task, f"{before['auc']:.3f}", f"{before['calibration_ratio']:.3f}", f"{after['calibration_ratio']:.3f}",
            f"{before['logloss']:.5f}", f"{after['logloss']:.5f}",
            *(f"{before[f'field_rce.{f}']:.3f} → {after[f'field_rce.{f}']:.3f}" for f in features),
        )
    console.print(table)
    if result.manifest.parity is not None:
        console.print(f"parity torch vs onnxruntime: max |diff| = {result.manifest.parity.max_abs_diff:.2e}")
    console.print(f"bundle: {result.bundle_dir}\npolicy: {result.policy_path}")
    if result.predictions_path:
        console.print(f"held-out predictions: {result.predictions_path}")
    if result.logs_path:
        console.print(f"logged candidate sets for tune/simulate: {result.logs_path}")


tune_app = typer.Typer(no_args_is_help=True, help="Tune utility weights on logged candidate sets (see docs/tuning.md).")
app.add_typer(tune_app, name="tune")

NegativeOption = Annotated[
    list[str], typer.Option("--negative", help="a task that lowers the utility (its weight enters as -w)")
]
ProgressOption = Annotated[bool, typer.Option(help="show progress bars")]
EngineOption = Annotated[str, typer.Option(help="local (this machine, streaming) or spark (Apache Spark;"
                                                " needs the spark extra)")]
TableOption = Annotated[str | None, typer.Option(help="with --engine spark: read this table instead of a path")]
SparkMasterOption = Annotated[str | None, typer.Option(help="with --engine spark: master URL (local[2],"
                                                            " spark://host:7077, k8s://...); default local[*]")]
SparkConfOption = Annotated[list[str] | None, typer.Option(help="with --engine spark: spark.key=value (repeat)")]


@contextmanager
def _offline_errors() -> Iterator[None]:
    """Bad options become usage errors; bad files (FusionrankError) a one-line message and exit 2."""
    from app.errors import FusionrankError

    try:
        yield
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    except FusionrankError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None


SparkLogsOption = Annotated[Path | None, typer.Option("--logs", help="logged candidate sets (.parquet or .csv; with"
                                                                   " --engine spark a Parquet file or directory)")]
SparkSampleOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="with --engine spark: share of groups"
                                                                         " (by a hash of group_id) the tuner sees")]


@contextmanager
def _log_reader(
    engine: str, logs: Path | None, table: str | None, master: str | None, conf: list[str] | None, sample: float,
) -> Iterator[tuple[Path, Any]]:
    """(name of the logs, reader for the tuners: None = read the local file) for the chosen engine."""
    if _engine(engine, logs, table) == "spark":
        from app.offline.spark import SparkInput, read_input, sampled_candidate_log, spark_session

        source = SparkInput(logs, table)
        with spark_session(master, conf or ()) as spark:
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
        _offline_errors(),
        _log_reader(engine, logs, table, spark_master, spark_conf, spark_sample) as (name, reader),
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
        _offline_errors(),
        _log_reader(engine, logs, table, spark_master, spark_conf, spark_sample) as (name, reader),
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
        _offline_errors(),
        _log_reader(engine, logs, table, spark_master, spark_conf, spark_sample) as (name, reader),
    ):
        result = run_constrained(name, tasks=task, negative=negative, primary=primary, labels=labels,
                                 bounds=bound, k=k, holdout=holdout, confidence=confidence, sweep=sweep, out=out,
                                 show_progress=progress, reader=reader)
    print_constrained_result(result)
    typer.echo(f"wrote {out}")


@app.command("simulate")
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

    with _offline_errors():
        if _engine(engine, logs, table) == "spark":
            from app.offline.spark import SparkInput, SparkReplayer, read_input, spark_session

            source = SparkInput(logs, table)
            with spark_session(spark_master, spark_conf or ()) as spark:
                result = run(SparkReplayer(read_input(spark, source), source.origin, buckets=spark_buckets),
                             source.origin)
        else:
            if logs is None:
                raise ValueError("give --logs FILE (or --engine spark --table NAME)")
            result = run(None, logs)
    print_simulation_result(result)
    typer.echo(f"wrote {out / 'report.md'}, {out / 'pareto.png'}, {out / 'results.json'}")


policy_app = typer.Typer(
    name="policy", no_args_is_help=True, help="Validate policy files and compare two of them."
)
app.add_typer(policy_app)


@policy_app.command("validate")
def policy_validate(
    file: Annotated[Path, typer.Argument(help="policy file, stored as <policies>/<surface>/<version>.yaml")],
    model_store: Annotated[Path, typer.Option(help="folder of model bundles")] = Path("model_store"),
) -> None:
    """Check a policy as an activation would: schema, its model and calibration, golden-batch dry run."""
    from rich.console import Console

    from app.api.warmup import validate_policy_file
    from app.errors import FusionrankError
    from app.serving.loader import BundleCache

    console, errors = Console(), Console(stderr=True)
    try:
        binding, report = validate_policy_file(file, BundleCache(model_store, intra_op_threads=1))
    except FusionrankError as exc:
        errors.print(f"[bold red]INVALID[/] {exc.message}", highlight=False, soft_wrap=True)
        for detail in exc.details[1:]:
            errors.print(f"  {detail.field or '-'}: {detail.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    policy = binding.policy.file
    versions = binding.versions()
    console.print(
        f"[bold green]OK[/] {file}: surface {policy.surface!r} version {policy.version!r} on"
        f" {versions['model']}/{versions['model_version']} calibration {versions['calibration_version']}",
        highlight=False, soft_wrap=True,
    )
    console.print(
        f"  {len(policy.utility)} utility terms, {len(policy.guardrails)} guardrails,"
        f" {len(policy.slate.max_per_value) + len(policy.slate.max_matching)} slate rules"
        f" (top_k {policy.slate.top_k}), {len(policy.overrides)} overrides; approved by"
        f" {', '.join(policy.governance.approved_by)}",
        highlight=False, soft_wrap=True,
    )
    answered = ", ".join(f"{label}: {n}" for label, n in report.answered.items())
    console.print(
        f"  dry run on {report.candidates} golden candidates answered {answered}", highlight=False, soft_wrap=True
    )


@policy_app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="the policy file before")],
    new: Annotated[Path, typer.Argument(help="the policy file after")],
) -> None:
    """Show what changes from OLD to NEW: terms, guardrails, slate rules, overrides, governance."""
    from rich.console import Console
    from rich.table import Table

    from app.artifacts.diff import diff_policies
    from app.artifacts.loading import parse_artifact, read_yaml
    from app.artifacts.policy import PolicyFile
    from app.errors import FusionrankError, PolicyError

    console = Console()
    try:
        a, b = (parse_artifact(PolicyFile, read_yaml(p), p, error=PolicyError) for p in (old, new))
    except FusionrankError as exc:
        Console(stderr=True).print(f"[bold red]INVALID[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    deltas = diff_policies(a, b)
    if not deltas:
        console.print(f"no differences between {old} and {new}", highlight=False)
        return
    table = Table(title=f"{old} -> {new}", title_justify="left")
    for column in ("section", "item", "field", "change", "old -> new"):
        table.add_column(column, overflow="fold")
    colour = {"added": "green", "removed": "red", "changed": "yellow"}
    for d in deltas:
        table.add_row(d.section, d.item, d.field, f"[{colour[d.change]}]{d.change}[/]", f"{d.old} -> {d.new}")
    console.print(table)


calibrate = typer.Typer(
    name="calibrate", no_args_is_help=True, help="Fit, apply and report per-task calibration (offline, no torch).",
)
app.add_typer(calibrate)


def _run_offline(action: Callable[[], None]) -> None:
    """Run an offline command; a FusionrankError becomes a one-line message and exit code 2."""
    from app.errors import FusionrankError

    try:
        action()
    except FusionrankError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(code=2) from None


def _engine(engine: str, path: Path | None, table: str | None) -> str:
    """Validate --engine and its input options; returns the engine."""
    from app.errors import ArtifactError

    if engine not in ("local", "spark"):
        raise ArtifactError("--engine", engine, f"unknown engine {engine!r}", "use local or spark")
    if engine == "local" and table is not None:
        raise ArtifactError("--table", table, "--table needs --engine spark", "add --engine spark, or give a path")
    return engine


def _local_input(path: Path | None) -> Path:
    from app.errors import ArtifactError

    if path is None:
        raise ArtifactError("--predictions", "", "no input file", "give --predictions FILE")
    return path


def _manifest(model: Path | None) -> ModelManifest | None:
    from app.artifacts.loading import load_manifest

    return None if model is None else load_manifest(model)


@calibrate.command("fit")
def calibrate_fit(
    predictions: Annotated[Path | None, typer.Option(help="Parquet or CSV: logit_<task> or p_<task>, label_<task>,"
                                                           " optional mask_<task>, segment columns (with --engine"
                                                           " spark: a Parquet file or directory)")] = None,
    out: Annotated[Path | None, typer.Option(help="calibration file to write; with --model defaults to"
                                                  " <model>/calibration/<version>.json")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="segment feature column (repeat; applied in order)")] = None,
    method: Annotated[str, typer.Option(help="global calibrator: platt, temperature, isotonic or histogram")] = "platt",
    model: Annotated[Path | None, typer.Option(help="model bundle dir (model_store/<name>/<version>) to tie the"
                                                    " calibration to")] = None,
    version: Annotated[str | None, typer.Option(help="calibration version (default: UTC timestamp)")] = None,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.9, help="held-out fraction for metrics")] = 0.2,
    holdout_key: Annotated[str, typer.Option(help="integer column hashed for the split ('' = row)")] = "group_id",
    shrinkage: Annotated[float, typer.Option(min=0.0, help="segment shrinkage pseudo-count")] = 30.0,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    engine: EngineOption = "local",
    table: TableOption = None,
    spark_master: SparkMasterOption = None,
    spark_conf: SparkConfOption = None,
) -> None:
    """Fit a calibration file per task (global calibrator + segment corrections) from a predictions file."""

    def action() -> None:
        import json
        from datetime import UTC, datetime

        from rich.console import Console

        from app.artifacts.loading import check_calibration_for
        from app.errors import ArtifactError
        from app.offline.calibration import METHODS, FitConfig, PredictionFile, fit_predictions

        if method not in METHODS:
            raise ArtifactError("--method", "", f"unknown method {method!r}", f"use one of {list(METHODS)}")
        cal_version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        manifest = _manifest(model)
        if out is None and model is None:
            raise ArtifactError("--out", "", "no destination", "give --out FILE, or --model BUNDLE_DIR")
        destination = out if out is not None else Path(str(model)) / "calibration" / f"{cal_version}.json"
        config = FitConfig(method=method, segments=tuple(segment or ()), shrinkage_prior=shrinkage)
        if _engine(engine, predictions, table) == "spark":
            from app.offline.spark import SparkInput, fit_on_spark, read_input, spark_session

            source = SparkInput(predictions, table)
            with spark_session(spark_master, spark_conf or ()) as spark:
                outcome = fit_on_spark(read_input(spark, source), config, version=cal_version, origin=source.origin,
                                       name=source.name, manifest=manifest, holdout_fraction=holdout,
                                       holdout_key=holdout_key or None)
        else:
            outcome = fit_predictions(PredictionFile(_local_input(predictions)), config, version=cal_version,
                                      manifest=manifest, holdout_fraction=holdout, holdout_key=holdout_key or None,
                                      show_progress=progress)
        if manifest is not None:
            check_calibration_for(outcome.calibration, manifest, destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(json.dumps(outcome.calibration.model_dump(mode="json"), indent=2) + "\n",
                               encoding="utf-8")
        _print_fit(Console(), outcome.calibration, config.segments)
        Console().print(f"{outcome.rows} rows, {outcome.held_out_rows} held out (split by"
                        f" {outcome.split_key or 'row number'}); wrote {destination}")

    _run_offline(action)


def _print_fit(console: Any, calibration: Any, segments: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table(title=f"calibration {calibration.version} on held-out rows")
    columns = ["task", "positives", "ratio raw", "ratio cal.", "ECE raw", "ECE cal."]
    columns += [f"F-RCE {f} raw → cal." for f in segments]
    for column in columns:
        table.add_column(column)
    for task, cal in calibration.tasks.items():
        b, a = cal.metrics.before, cal.metrics.after
        row = [task, f"{b['positives']:.0f}", f"{b['calibration_ratio']:.3f}", f"{a['calibration_ratio']:.3f}",
               f"{b['ece']:.5f}", f"{a['ece']:.5f}"]
        row += [f"{b[f'field_rce.{f}']:.3f} → {a[f'field_rce.{f}']:.3f}" for f in segments]
        table.add_row(*row)
    console.print(table)


@calibrate.command("apply")
def calibrate_apply(
    calibration: Annotated[Path, typer.Option(help="calibration file")],
    predictions: Annotated[Path, typer.Option(help="Parquet or CSV with logit_<task> or p_<task> and segment columns")],
    out: Annotated[Path, typer.Option(help="output file (.parquet or .csv): the input plus p_<task> columns")],
    model: Annotated[Path | None, typer.Option(help="model bundle dir: checks the file, uses its vocabularies")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Write calibrated p_<task> columns beside the input, with the service's own apply code."""

    def action() -> None:
        from app.artifacts.loading import check_calibration_for, load_calibration
        from app.offline.calibration import PredictionFile, apply_predictions

        cal = load_calibration(calibration)
        manifest = _manifest(model)
        if manifest is not None:
            check_calibration_for(cal, manifest, calibration)
        rows = apply_predictions(cal, PredictionFile(predictions), out, manifest=manifest, show_progress=progress)
        typer.echo(f"wrote {rows} rows with p_{{task}} for {', '.join(cal.tasks)} to {out}")

    _run_offline(action)


@calibrate.command("report")
def calibrate_report(
    calibration: Annotated[Path, typer.Option(help="calibration file")],
    predictions: Annotated[Path, typer.Option(help="Parquet or CSV with raw predictions, labels and segments")],
    out: Annotated[Path, typer.Option(help="folder for report.md and the reliability PNGs")],
    model: Annotated[Path | None, typer.Option(help="model bundle dir: checks the file, uses its vocabularies")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="extra segment column to tabulate (repeat)")] = None,
    buckets: Annotated[int, typer.Option(min=2, max=100, help="equal-mass prediction buckets")] = 10,
) -> None:
    """Bucket and segment tables before/after, reliability diagrams, as a markdown report."""

    def action() -> None:
        from app.artifacts.loading import check_calibration_for, load_calibration
        from app.offline.calibration import PredictionFile, write_report

        cal = load_calibration(calibration)
        manifest = _manifest(model)
        if manifest is not None:
            check_calibration_for(cal, manifest, calibration)
        path = write_report(cal, PredictionFile(predictions), out, manifest=manifest,
                            extra_segments=tuple(segment or ()), buckets=buckets)
        typer.echo(f"wrote {path}")

    _run_offline(action)


@app.command()
def train(
    spec: Annotated[Path, typer.Option(help="training spec YAML (dataset columns, tasks, training options)")],
    data: Annotated[Path, typer.Option(help="a Parquet/CSV log file, or a folder of them")],
    out: Annotated[Path, typer.Option(help="run folder to write (model, checkpoints, report)")],
    seed: Annotated[int | None, typer.Option(help="override training.seed")] = None,
    memory: Annotated[str, typer.Option(help="auto | stream (re-read the files every epoch) | memory")] = "auto",
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    resume: Annotated[
        bool, typer.Option(help="continue from RUN's last checkpoint (same spec; epochs may grow)")
    ] = False,
) -> None:
    """Train a multi-task ranker from a spec and a log; writes RUN with the model and its report."""
    from rich.console import Console

    from app.errors import FusionrankError
    from app.offline.pipeline import train_run

    if memory not in ("auto", "stream", "memory"):
        raise typer.BadParameter("use auto, stream or memory", param_hint="--memory")
    console = Console()
    try:
        result = train_run(
            spec, data, out, seed=seed, memory=memory, show_progress=progress, resume=resume  # type: ignore[arg-type]
        )
    except FusionrankError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        for detail in exc.details[1:]:  # the first one is the message
            console.print(f"  {detail.field or ''}: {detail.message}", highlight=False)
        raise typer.Exit(code=2) from None
    _print_report(console, result.report)
    console.print(f"run: {result.run} ({result.seconds:.1f} s); report: {result.run / 'report.md'}")


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="run folder written by `fusionrank train`")],
    out: Annotated[Path, typer.Option(help="bundle folder model_store/<name>/<version>")],
    calibration_version: Annotated[str, typer.Option(help="version of the starter Platt calibration")] = "1",
    overwrite: Annotated[bool, typer.Option(help="replace an existing bundle folder")] = False,
) -> None:
    """Export RUN to ONNX with a parity check, a manifest and a starter calibration."""
    from rich.console import Console

    from app.errors import FusionrankError
    from app.offline.bundle import export_run

    console = Console()
    try:
        result = export_run(run, out, calibration_version=calibration_version, overwrite=overwrite)
    except FusionrankError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(code=2) from None
    parity = result.manifest.parity
    if parity is not None:
        console.print(
            f"parity torch vs onnxruntime at batch {parity.batch_sizes}: max |diff| = {parity.max_abs_diff:.2e}"
        )
    console.print(f"bundle: {result.bundle_dir} (calibration {result.calibration.version})")


def _print_report(console: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{report['name']}: {report['split']} split")
    metrics = ("count", "auc", "logloss", "normalised_entropy", "calibration_ratio", "ece", "f1")
    table.add_column("task")
    for m in metrics:
        table.add_column(m)
    for task, entry in report["tasks"].items():
        overall = entry["overall"]
        table.add_row(task, *("n/a" if overall.get(m) is None else f"{overall[m]:.4g}" for m in metrics))
    console.print(table)


def main() -> None:
    app()


def _register_models() -> None:
    from app.cli_models import models_app

    app.add_typer(models_app)


_register_models()


if __name__ == "__main__":
    main()
