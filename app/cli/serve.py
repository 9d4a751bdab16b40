"""`fusionrank serve`: /v1/score and the admin API on one host and port, with a graceful drain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from app.cli.options import LogLevel, ModelStoreOption, PoliciesOption

__all__ = ["serve"]


def serve(
    model_store: ModelStoreOption = Path("model_store"),
    policies: PoliciesOption = Path("policies"),
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    log_level: Annotated[LogLevel, typer.Option(help="uvicorn log level")] = LogLevel.INFO,
) -> None:
    """Serve /v1/score on HOST:PORT with the bundles and policies given.

    SIGTERM drains: /readyz answers 503 for FUSIONRANK_SHUTDOWN_DRAIN_SECONDS while requests are still
    served, then the requests in flight get FUSIONRANK_SHUTDOWN_GRACE_SECONDS to finish (exit code 0).
    """
    import uvicorn

    from app.api.server import server_options
    from app.api.shutdown import DrainingServer, ShutdownDrain
    from app.main import create_app
    from app.settings import get_settings

    # Settings are read from the environment inside each worker's lifespan.
    os.environ["FUSIONRANK_MODEL_STORE"] = str(model_store.resolve())
    os.environ["FUSIONRANK_POLICIES"] = str(policies.resolve())
    os.environ["FUSIONRANK_HOST"] = host
    os.environ["FUSIONRANK_PORT"] = str(port)
    settings = get_settings()  # fail here, before binding, on a bad environment
    if workers > 1:  # uvicorn's supervisor owns the signals; each worker shuts down gracefully itself
        uvicorn.run(
            "app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
            access_log=False, **server_options(settings),
        )
        return
    drain = ShutdownDrain()
    config = uvicorn.Config(
        create_app(drain=drain), host=host, port=port, log_level=log_level, access_log=False,
        **server_options(settings),
    )
    server = DrainingServer(config, drain, settings.shutdown_drain_seconds)
    server.run()
    if not server.started:  # as uvicorn.run: a failed startup is a non-zero exit
        raise typer.Exit(code=3)
