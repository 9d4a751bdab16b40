"""`fusionrank`: the service and the offline toolkit behind one command.

Offline commands import torch and friends lazily, so `fusionrank serve` runs without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

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
    seed: Annotated[int, typer.Option(help="random seed of the log and the weights")] = 7,
    rows: Annotated[int, typer.Option(min=2000, help="impressions in the synthetic log")] = 300_000,
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 3,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    logs: Annotated[bool, typer.Option(help="also write demo_data/logs.parquet for `tune` and `simulate`")] = False,
) -> None:
    """Synthetic log, then `train`, `export`, `predict` and `calibrate fit` as a user runs them; writes a
    servable bundle, a policy and a sample request.

    The same seed and options write the same bytes on the same machine and library versions (torch,
    onnx, onnxscript, onnxruntime, numpy); manifest.json records the git commit that trained.
    """
    from rich.console import Console

    from app.offline.demo import DemoConfig, print_summary, run_demo

    result = run_demo(out, DemoConfig(seed=seed, rows=rows, epochs=epochs, show_progress=progress, logs=logs))
    print_summary(Console(), result)


def _register_groups() -> None:
    """Attach the command groups, in the order `fusionrank --help` lists them."""
    from app.cli_models import models_app
    from app.commands.calibrate import calibrate
    from app.commands.policy import policy_app
    from app.commands.train import export, train
    from app.commands.tune import simulate_command, tune_app
    from app.offline.training.commands import predict

    app.add_typer(tune_app, name="tune")
    app.command("simulate")(simulate_command)
    app.add_typer(policy_app)
    app.add_typer(calibrate)
    app.command()(train)
    app.command()(export)
    app.command()(predict)
    app.add_typer(models_app)


_register_groups()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
