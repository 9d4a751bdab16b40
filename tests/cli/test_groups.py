"""An option group is declared once, shows as plain options, and reaches the command as one dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from app.cli.groups import OptionGroup, with_groups
from app.cli.options import Engine, EngineOptions


@dataclass(frozen=True)
class Window(OptionGroup):
    start: Annotated[int, typer.Option(help="first day")]
    days: Annotated[int, typer.Option(min=1, help="how many days")] = 7
    skip: Annotated[list[str], typer.Option("--skip", help="a day to leave out")] = field(default_factory=list)


def test_a_group_becomes_options_and_comes_back_as_its_dataclass() -> None:
    seen: list[tuple[Window, EngineOptions, bool]] = []
    small = typer.Typer()

    @small.command()
    @with_groups
    def count(*, window: Window, loud: bool = False, engine: EngineOptions) -> None:
        seen.append((window, engine, loud))

    result = CliRunner().invoke(small, ["--start", "3", "--skip", "4", "--skip", "5", "--loud", "--table", "t"])
    assert result.exit_code == 0, result.output
    assert seen == [(Window(start=3, days=7, skip=["4", "5"]), EngineOptions(table="t"), True)]
    assert seen[0][1].engine is Engine.LOCAL
    shown = CliRunner().invoke(small, ["--help"], env={"COLUMNS": "200"}).output
    for option in ("--start", "--days", "--skip", "--loud", "--engine", "--table", "--spark-master", "--spark-conf"):
        assert option in shown
    missing = CliRunner().invoke(small, [])
    assert missing.exit_code == 2 and "--start" in missing.output


def test_a_name_in_two_places_is_refused_at_declaration() -> None:
    def clash(*, engine: EngineOptions, table: str = "") -> None: ...

    with pytest.raises(TypeError, match=r"\['table'\] appear twice"):
        with_groups(clash)


def test_table_without_spark_is_refused() -> None:
    from app.errors import ArtifactError

    assert EngineOptions().on_spark() is False
    with pytest.raises(ArtifactError, match="--table needs --engine spark"):
        EngineOptions(table="lake.preds").on_spark()
