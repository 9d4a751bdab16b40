"""`fusionrank predict`: a run's or a bundle's predictions, in the file `calibrate fit` reads."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from app.cli.exits import user_errors
from app.cli.extras import needs_extra

__all__ = ["Split", "predict"]


class Split(StrEnum):
    """A split of the spec's time split."""

    train = "train"
    valid = "valid"
    test = "test"


@needs_extra("offline")
def predict(
    data: Annotated[Path, typer.Option(help="a Parquet/CSV log file, or a folder of them")],
    out: Annotated[Path, typer.Option(help="predictions file to write (.parquet, or .csv)")],
    run: Annotated[Path | None, typer.Option(help="run folder written by `fusionrank train` (needs torch)")] = None,
    model: Annotated[Path | None, typer.Option(help="bundle folder model_store/<name>/<version> (with --spec)")] = None,
    spec: Annotated[Path | None, typer.Option(help="training spec naming the log's columns (with --model)")] = None,
    split: Annotated[list[Split] | None, typer.Option(help="split to write (repeat; default valid and test)")] = None,
) -> None:
    """Write a run's or a bundle's predictions with group and candidate ids, ready for `calibrate fit`."""
    splits = tuple(s.value for s in split) if split else ("valid", "test")
    if (run is None) == (model is None):
        raise typer.BadParameter("give exactly one of --run RUN or --model BUNDLE", param_hint="--run/--model")
    with user_errors():
        if run is not None:
            from app.offline.training.predict import predict_run

            result = predict_run(run, data, out, splits=splits)
        else:
            if spec is None:
                raise typer.BadParameter("--model needs the training spec", param_hint="--spec")
            from app.offline.training.predict import predict_bundle

            result = predict_bundle(Path(str(model)), spec, data, out, splits=splits)
    typer.echo(f"wrote {result.rows} rows of {', '.join(splits)} with logit_/label_/mask_ for"
               f" {', '.join(result.tasks)} to {result.path}")
