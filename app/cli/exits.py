"""How a command ends on a user's mistake: the message on stderr, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

__all__ = ["user_errors"]


@contextmanager
def user_errors(*usage: type[Exception]) -> Iterator[None]:
    """A FusionrankError (a bad file or option value) becomes `error: <message>` and its detail lines; an
    exception of a type in `usage` (the tuners' ValueError naming an option) a usage error. Both exit 2."""
    from app.errors import FusionrankError

    try:
        yield
    except FusionrankError as error:
        typer.echo(f"error: {error.message}", err=True)
        for detail in error.details[1:]:  # the first one is the message
            typer.echo(f"  {detail.field or '-'}: {detail.message}", err=True)
        raise typer.Exit(2) from None
    except usage as error:
        raise typer.BadParameter(str(error)) from None
