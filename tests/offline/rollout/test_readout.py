"""`fusionrank rollout report`: per-arm rates with intervals and the ship / hold / abort verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.offline.rollout import ReadoutSettings, Thresholds, parse_rule, read_rollout, rollout_readout


def _joined(path: Path, *, users: int, canary_click: float, canary_hide: float = 0.05, seed: int = 0) -> Path:
    """Users split 50/50 into arms; 3 requests each of 6 candidates, 4 served, 1 removed by a guardrail."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[object]] = {k: [] for k in ("request_id", "sticky_key", "arm", "candidate_id", "position",
                                                     "filtered_stage", "filtered_rule", "utility", "label_click",
                                                     "mask_click", "label_hide", "mask_hide", "device")}
    for u in range(users):
        arm = "canary" if u % 2 else "stable"
        click, hide = (canary_click, canary_hide) if arm == "canary" else (0.10, 0.05)
        for r in range(3):
            for c in range(6):
                served = c < 4
                rows["request_id"].append(f"u{u}-r{r}")
                rows["sticky_key"].append(f"u{u}")
                rows["arm"].append(arm)
                rows["candidate_id"].append(f"i{c}")
                rows["position"].append(c if served else None)
                rows["filtered_stage"].append(None if c != 5 else "guardrail")
                rows["filtered_rule"].append(None if c != 5 else "report_risk")
                rows["utility"].append(float(rng.random()))
                rows["label_click"].append(int(rng.random() < click) if served else None)
                rows["mask_click"].append(1 if served else 0)
                rows["label_hide"].append(int(rng.random() < hide) if served else None)
                rows["mask_hide"].append(1 if served else 0)
                rows["device"].append("ios" if u % 4 < 2 else "web")
    table = pa.table(rows).replace_schema_metadata({b"fusionrank.log": b"joined", b"fusionrank.tasks": b"click,hide"})
    pq.write_table(table, path)
    return path


RULES = Thresholds(min_requests=300, rules=[parse_rule("click:increase:0:-0.05"),
                                            parse_rule("hide:decrease:0.5:1.5")])


def _readout(path: Path, **kw: object) -> dict[str, object]:
    return read_rollout(path, ReadoutSettings(RULES, segments=("device",), **kw))  # type: ignore[arg-type]


def _flat(value: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flat(v, f"{prefix}/{k}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _flat(v, f"{prefix}[{i}]")]
    return [(prefix, value)]


def test_a_file_read_in_small_batches_gives_the_readout_of_the_whole_table(tmp_path: Path) -> None:
    path = _joined(tmp_path / "j.parquet", users=60, canary_click=0.16, seed=3)
    settings = ReadoutSettings(RULES, segments=("device",), mix=("device",), k=2, n_bootstrap=200)
    table = pq.read_table(path)
    columns = {name: np.asarray(table[name].to_numpy(zero_copy_only=False)) for name in table.column_names}
    whole = _flat(rollout_readout(columns, ["click", "hide"], settings))
    batched = _flat(read_rollout(path, settings, batch_rows=7))  # requests and users split across batches
    assert [k for k, _ in batched] == [k for k, _ in whole]
    for (key, a), (_, b) in zip(whole, batched, strict=True):
        if isinstance(a, float) and a == a:
            assert b == pytest.approx(a, rel=0, abs=1e-12), key
        elif isinstance(a, float):
            assert isinstance(b, float) and b != b, key
        else:
            assert a == b, key
    one_batch = read_rollout(path, settings)
    assert json.dumps(one_batch) == json.dumps(rollout_readout(columns, ["click", "hide"], settings))  # NaN == NaN


def test_a_clearly_better_canary_ships_and_a_clearly_worse_one_aborts(tmp_path: Path) -> None:
    better = _readout(_joined(tmp_path / "a.parquet", users=600, canary_click=0.16, seed=1))
    assert better["verdict"] == "ship", better["reasons"]
    click = better["arms"]["canary"]["metrics"]["click"]  # type: ignore[index]
    assert click["lower"] < click["value"] < click["upper"] and 0.14 < click["value"] < 0.18
    worse = _readout(_joined(tmp_path / "b.parquet", users=600, canary_click=0.06))
    assert worse["verdict"] == "abort" and "click" in worse["reasons"][0]  # type: ignore[index]


def test_an_unclear_or_small_canary_holds_and_segments_have_their_own_verdict(tmp_path: Path) -> None:
    same = _readout(_joined(tmp_path / "c.parquet", users=600, canary_click=0.10))
    assert same["verdict"] == "hold"
    small = _readout(_joined(tmp_path / "d.parquet", users=40, canary_click=0.3))
    assert small["verdict"] == "hold" and "min_requests" in small["reasons"][0]  # type: ignore[index]
    assert set(same["segments"]["device"]) == {"ios", "web"}  # type: ignore[index]
    assert same["arms"]["stable"]["metrics"]["filtered:report_risk"]["value"] == pytest.approx(1 / 6)  # type: ignore[index]


def test_rollout_report_cli_prints_the_verdict_and_writes_json(tmp_path: Path) -> None:
    joined = _joined(tmp_path / "j.parquet", users=600, canary_click=0.16, seed=1)
    thresholds = tmp_path / "t.yaml"
    thresholds.write_text("min_requests: 300\nrules:\n  - {metric: click, direction: increase, ship_at: 0.0,"
                          " abort_at: -0.05}\n")
    out = tmp_path / "readout.json"
    result = CliRunner().invoke(app, ["rollout", "report", "--joined", str(joined), "--thresholds", str(thresholds),
                                      "--rule", "hide:decrease:0.5:1.5", "--segment", "device", "--out", str(out),
                                      "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    assert "verdict: SHIP" in result.output
    assert json.loads(out.read_text())["verdict"] == "ship"


@pytest.mark.parametrize(("args", "message"), [
    ([], "--thresholds FILE or --rule"),
    (["--rule", "click:sideways:0:-0.1"], "--rule"),
    (["--rule", "click:increase:0:0.1"], "abort_at"),
    (["--rule", "nope:increase:0:-0.1"], "no such metric"),
    (["--rule", "click:increase:0:-0.1", "--treatment", "blue"], "'blue' has no rows"),
])
def test_rollout_report_refuses_bad_thresholds_naming_the_option(tmp_path: Path, args: list[str], message: str
                                                                 ) -> None:
    joined = _joined(tmp_path / "j.parquet", users=20, canary_click=0.1)
    result = CliRunner().invoke(app, ["rollout", "report", "--joined", str(joined), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output
