"""Optional extras: which command needs which, and one line (exit 2) naming the one to install.

The base install serves and manages bundles and policies; the offline commands need the extras of
pyproject.toml. A command declares its extra with `@needs_extra(...)` (or calls `require_extra` when
only an option needs one, as `--engine spark` does), so a base install answers
`fusionrank tune regret needs the 'offline' extra (scipy is not installed): pip install -e '.[offline]'`
instead of a traceback ending in `No module named 'scipy'`.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

__all__ = ["EXTRAS", "missing_module", "needs_extra", "require_extra"]

R = TypeVar("R")

_CONTEXT = "fusionrank_command_context"  # the parameter needs_extra adds to a command for typer's context

# The modules each extra of pyproject.toml brings (an extra that includes another lists its modules too);
# tests/cli/test_extras.py checks this table against pyproject.toml.
EXTRAS: dict[str, tuple[str, ...]] = {
    "offline": ("scipy", "matplotlib"),
    "train": ("torch", "onnx", "onnxscript", "lightgbm", "onnxmltools", "scipy", "matplotlib"),
    "spark": ("pyspark", "pandas", "scipy", "matplotlib"),
}


def missing_module(extra: str) -> str | None:
    """The first module of `extra` that cannot be imported here (found without importing it), or None."""
    return next((module for module in EXTRAS[extra] if not _findable(module)), None)


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package or a module without a spec
        return False


def require_extra(extra: str, command: str = "fusionrank") -> None:
    """Exit 2 with one line naming `extra` when one of its modules is missing; `command` names who needs it."""
    module = missing_module(extra)
    if module is not None:
        _exit_missing(extra, module, command)


def needs_extra(extra: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate a command that needs `extra`: checked before the command runs; a ModuleNotFoundError of any
    extra's module raised while it runs becomes the same one line instead of a traceback."""

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        # typer hands a parameter annotated typer.Context the running command's context (for its name)
        signature = inspect.signature(command, eval_str=True)
        context = inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(command)
        def run(**kwargs: Any) -> R:
            name = kwargs.pop(_CONTEXT).command_path
            require_extra(extra, name)
            try:
                return command(**kwargs)
            except ModuleNotFoundError as error:
                module = (error.name or "").partition(".")[0]
                owner = extra if module in EXTRAS[extra] else _extra_of(module)
                if owner is None or _findable(module):  # not an extra's module, or installed but broken
                    raise
                _exit_missing(owner, module, name)

        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), context])
        run.__annotations__ = {**{p.name: p.annotation for p in signature.parameters.values()},
                               _CONTEXT: typer.Context}
        return run

    return decorate


def _extra_of(module: str) -> str | None:
    """The smallest extra that brings `module`."""
    owners = [name for name, modules in EXTRAS.items() if module in modules]
    return min(owners, key=lambda name: len(EXTRAS[name])) if owners else None


def _exit_missing(extra: str, module: str, command: str) -> NoReturn:
    typer.echo(f"{command} needs the {extra!r} extra ({module} is not installed): pip install -e '.[{extra}]'",
               err=True)
    raise typer.Exit(2)
