"""Option groups: options that several commands share, declared once as a dataclass.

A command takes a group as one parameter (`source: LogSource`); `@with_groups` shows typer the
group's fields in its place, and on each call builds the dataclass from the values the user gave.
Typer has no such notion of its own, so without this the same six options were written per command.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["OptionGroup", "with_groups"]

R = TypeVar("R")


class OptionGroup:
    """Base of a frozen dataclass whose fields are typer options: `Annotated[type, typer.Option(...)]` with
    a default (or a default_factory), exactly as they would be written in a command's signature."""


def with_groups(command: Callable[..., R]) -> Callable[..., R]:
    """`command` with each OptionGroup parameter replaced by that group's options (keyword-only)."""
    hints = typing.get_type_hints(command, include_extras=True)
    parameters: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[Any], list[str]]] = {}
    for parameter in inspect.signature(command).parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, OptionGroup)):
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
            continue
        if not dataclasses.is_dataclass(annotation):  # a programming error, caught when the command is declared
            raise TypeError(f"{command.__qualname__}: the option group {annotation.__name__} is not a dataclass")
        field_hints = typing.get_type_hints(annotation, include_extras=True)
        fields = dataclasses.fields(annotation)
        for field in fields:
            default: Any = inspect.Parameter.empty
            if field.default is not dataclasses.MISSING:
                default = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            parameters.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                                annotation=field_hints[field.name]))
        groups[parameter.name] = (annotation, [f.name for f in fields])
    names = [p.name for p in parameters]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:  # a programming error, caught when the command is declared
        raise TypeError(f"{command.__qualname__}: option names {clashes} appear twice once the groups are spread")

    @functools.wraps(command)
    def run(**values: Any) -> R:
        for name, (group, fields) in groups.items():
            values[name] = group(**{field: values.pop(field) for field in fields})
        return command(**values)

    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run
