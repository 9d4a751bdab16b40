"""`fusionrank serve`: /v1/score and the admin API on one host and port, with a graceful drain."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from app.cli.options import LogLevel

__all__ = ["serve"]


def serve(
    model_store: Annotated[str, typer.Option(help="folder of model bundles, or an s3:// / gs:// URI")] = "model_store",
    policies: Annotated[str, typer.Option(help="folder of policies, or an s3:// / gs:// URI")] = "policies",
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

    # Settings are read from the environment inside each worker's lifespan.
    from app.settings import get_settings, is_uri

    # A URI is served from a local mirror under FUSIONRANK_STORE_CACHE (app/control/remote_store.py).
    os.environ["FUSIONRANK_MODEL_STORE"] = model_store if is_uri(model_store) else str(Path(model_store).resolve())
    os.environ["FUSIONRANK_POLICIES"] = policies if is_uri(policies) else str(Path(policies).resolve())
    os.environ["FUSIONRANK_HOST"] = host
    os.environ["FUSIONRANK_PORT"] = str(port)
    settings = get_settings()  # fail here, before binding, on a bad environment
    if workers > 1:  # uvicorn's supervisor owns the signals; each worker shuts down gracefully itself
        with _multiprocess_metrics(create=True):
            uvicorn.run(
                "app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level,
                access_log=False, **server_options(settings),
            )
        return
    drain = ShutdownDrain()
    with _multiprocess_metrics(create=False):  # emptied before create_app makes this process's value files
        config = uvicorn.Config(
            create_app(drain=drain), host=host, port=port, log_level=log_level, access_log=False,
            **server_options(settings),
        )
        server = DrainingServer(config, drain, settings.shutdown_drain_seconds)
        server.run()
    if not server.started:  # as uvicorn.run: a failed startup is a non-zero exit
        raise typer.Exit(code=3)


@contextlib.contextmanager
def _multiprocess_metrics(*, create: bool) -> Iterator[None]:
    """Give the workers (spawned after this) one metrics directory, so one scrape reports them all.

    PROMETHEUS_MULTIPROC_DIR set by the operator (e.g. an emptyDir) is used and emptied of the last
    start's files, whatever the worker count; otherwise, with `create` (several workers), a temporary
    directory is made for this start and removed at exit, and with one worker none is needed.
    """
    from app.monitoring.multiproc import MULTIPROC_ENV, prepare_dir

    given = os.environ.get(MULTIPROC_ENV)
    if not given and not create:
        yield
        return
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="fusionrank-metrics-"))
    prepare_dir(path)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield
    finally:
        if given:
            prepare_dir(path)
        else:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(path, ignore_errors=True)
