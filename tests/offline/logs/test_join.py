"""`fusionrank logs join`: labels and maturity masks by the manifest's label windows, from a real served log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.artifacts.served_log import joined_tasks, log_kind
from app.cli import app
from app.errors import ArtifactError
from app.offline.logs import join_logs
from tests.conftest import MODEL_STORE
from tests.offline.logs.helpers import scenario, write_outcomes_csv, write_served_log


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, sample_request_body: dict[str, Any]) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("served")
    return root, write_served_log(root, sample_request_body)


def test_labels_follow_the_label_windows(logged: tuple[Path, Any], tmp_path: Path) -> None:
    root, t0 = logged
    events, who = scenario(root, t0)
    outcomes = write_outcomes_csv(tmp_path / "outcomes.csv", events)
    table, summary = join_logs(root, outcomes, t0 + timedelta(hours=2), MODEL_STORE)
    assert log_kind(table.schema) == "joined"
    assert joined_tasks(table.schema) == ["click", "purchase", "hide", "report"]
    rows = {(r["request_id"], r["candidate_id"]): r for r in table.to_pylist()}
    a, b, c, hidden = (rows[("req-0", who[k])] for k in ("a", "b", "c", "hidden"))
    assert (a["label_click"], a["mask_click"]) == (1, 1)
    assert (a["label_purchase"], a["mask_purchase"]) == (None, 0)  # younger than 72 h: unobserved
    assert (b["label_click"], b["mask_click"]) == (0, 1)  # the click came after the window
    assert (c["label_click"], c["mask_click"]) == (0, 1)  # after as_of: not known at as_of
    assert (hidden["label_click"], hidden["mask_click"]) == (None, 0)  # never shown
    assert 0 < a["p_click"] < 1 and a["logit_click"] is not None and a["item_price"] is not None
    assert a["device"] == "ios" and isinstance(a["group_id"], int)
    assert isinstance(a["margin"], float) and isinstance(a["creator_id"], str) and a["sponsored"] in (True, False)
    assert summary.outcomes == 6 and summary.after_as_of == 1 and summary.unmatched == 1
    later, _ = join_logs(root, outcomes, t0 + timedelta(hours=80), MODEL_STORE)
    late = {(r["request_id"], r["candidate_id"]): r for r in later.to_pylist()}[("req-0", who["a"])]
    assert (late["label_purchase"], late["mask_purchase"]) == (1, 1)


def test_the_cli_writes_the_joined_file_and_names_a_missing_column(logged: tuple[Path, Any], tmp_path: Path) -> None:
    root, t0 = logged
    events, _ = scenario(root, t0)
    outcomes = write_outcomes_csv(tmp_path / "outcomes.csv", events)
    out = tmp_path / "joined.parquet"
    args = ["logs", "join", "--served", str(root), "--outcomes", str(outcomes), "--as-of",
            (t0 + timedelta(hours=2)).isoformat(), "--out", str(out), "--model-store", str(MODEL_STORE)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 after --as-of" in result.output
    assert log_kind(pq.read_schema(out)) == "joined"
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,candidate_id,task,label\nreq-0,x,click,1\n")
    with pytest.raises(ArtifactError, match="event_time"):
        join_logs(root, bad, t0, MODEL_STORE)
