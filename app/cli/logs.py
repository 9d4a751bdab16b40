"""`fusionrank logs join`: the served log joined with outcomes, ready for calibrate, tune, simulate, train."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from app.cli.exits import user_errors
from app.cli.groups import with_groups
from app.cli.options import EngineOptions, ProgressOption

__all__ = ["logs_app", "parse_as_of"]

logs_app = typer.Typer(
    name="logs", no_args_is_help=True, help="Join the served log with outcomes (offline, no torch).",
)


def parse_as_of(value: str) -> datetime:
    """ISO 8601 (a naive time means UTC) or `now`."""
    from app.errors import ArtifactError

    if value == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ArtifactError("--as-of", value, "not an ISO 8601 time", "write e.g. 2026-12-06T05:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@logs_app.command("join")
@with_groups
def join(
    *,
    served: Annotated[Path, typer.Option(help="the served log: FUSIONRANK_SERVED_LOG_PATH (or its served/"
                                              " folder, or one file)")],
    outcomes: Annotated[Path, typer.Option(help="outcomes: the service's outcomes log, or your own Parquet/CSV"
                                                " with request_id, candidate_id, task, label, event_time")],
    as_of: Annotated[str, typer.Option(help="labels known at this time (ISO 8601, naive = UTC, or `now`): an"
                                            " impression younger than its task's label window is unobserved")],
    out: Annotated[Path, typer.Option(help="the joined Parquet file to write")],
    model_store: Annotated[Path, typer.Option(help="bundles of the logged model versions (label windows,"
                                                   " feature names)")] = Path("model_store"),
    features: Annotated[bool, typer.Option(help="spread logged features into one column each")] = True,
    progress: ProgressOption = True,
    engine: EngineOptions,
) -> None:
    """One row per logged candidate with logit_T, p_T, label_T and mask_T per task (docs/served-log.md)."""
    from rich.console import Console

    from app.offline.logs import join_logs, write_joined

    with user_errors():
        moment = parse_as_of(as_of)
        if engine.on_spark():
            from app.offline.logs.spark_join import join_on_spark

            with engine.session(progress) as spark:  # the executors write `out`; nothing is collected
                summary = join_on_spark(spark, served, outcomes, moment, model_store, out, features=features)
        else:
            table, summary = join_logs(served, outcomes, moment, model_store, features=features)
            write_joined(table, out)
        console = Console()
        for line in summary.lines():
            console.print(line)
        console.print(f"wrote {out}")


@logs_app.command("compact")
def compact(
    root: Annotated[Path, typer.Argument(help="the served log path (FUSIONRANK_SERVED_LOG_PATH)")],
) -> None:
    """Convert the sealed hot files a killed server left (hidden .arrows) into the Parquet files readers see."""
    from app.monitoring.log_compactor import compact_root

    if not root.is_dir():
        typer.echo(f"{root}: no such folder; give FUSIONRANK_SERVED_LOG_PATH", err=True)
        raise typer.Exit(2)
    done = compact_root(root)
    typer.echo(f"converted {len(done)} hot file(s) under {root}")
