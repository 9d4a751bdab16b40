"""`fusionrank`: the service and the offline toolkit behind one command.

One module per command group; this one builds the root command, `--version`, and attaches the groups in
the order `fusionrank --help` lists them. Offline commands import torch and friends lazily and name the
extra to install when it is missing (app.cli.extras), so `fusionrank serve` runs without them.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from app import __version__
from app.cli import calibrate, demo, logs, models, policy, predict, rollout, serve, train, tune
from app.cli.extras import EXTRAS, missing_module

__all__ = ["app", "main", "version_text"]

SERVING_PACKAGES = ("onnxruntime", "numpy", "pyarrow")  # what the hot path computes with

app = typer.Typer(
    name="fusionrank", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False,
    help="Calibrated multi-task ranking under versioned utility policies.",
)


def version_text() -> str:
    """What `fusionrank --version` prints: this package, the hot path's libraries, the extras installed."""

    def installed(package: str) -> str:
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            return f"{package} missing"

    extras = ", ".join(
        name if (module := missing_module(name)) is None else f"{name} no ({module} missing)" for name in EXTRAS
    )
    return (f"fusionrank {__version__} (Python {platform.python_version()})\n"
            f"serving: {', '.join(installed(p) for p in SERVING_PACKAGES)}\n"
            f"extras: {extras}")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version, help="print the versions and installed extras, exit"
    )] = False,
) -> None:
    """The root command: --version is its one option of its own (the help text is the Typer's)."""


# the service, then the offline toolkit in the order a user meets it
app.command()(serve.serve)
app.command()(demo.demo)
app.command()(train.train)
app.command()(train.export)
app.command()(predict.predict)
app.add_typer(logs.logs_app)
app.add_typer(calibrate.calibrate_app)
app.add_typer(tune.tune_app)
app.command()(tune.simulate)
app.add_typer(policy.policy_app)
app.add_typer(models.models_app)
app.add_typer(rollout.rollout_app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
