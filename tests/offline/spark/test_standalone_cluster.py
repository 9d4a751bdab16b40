"""`calibrate fit --engine spark` against a standalone master + one worker on 127.0.0.1, stopped afterwards."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.offline.calibration.data import write_predictions
from tests.offline.spark.compare import max_number_diff
from tests.offline.spark.conftest import FAST_START_JVM

pytestmark = pytest.mark.spark


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and re.search(pattern, log.read_text(errors="replace")):
            return
        if process.poll() is not None:
            raise AssertionError(f"exited early:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {log} after {timeout_s} s")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[str]:
    """A master and one worker from the pyspark package, bound to 127.0.0.1; both stopped at the end."""
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_class.parents[1]),
           "PYSPARK_PYTHON": sys.executable, "SPARK_WORKER_DIR": str(tmp_path / "work"),
           "SPARK_DAEMON_JAVA_OPTS": FAST_START_JVM}
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    started: list[subprocess.Popen[bytes]] = []
    try:
        master_log = tmp_path / "master.log"
        with master_log.open("wb") as out:
            started.append(subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(port), "--webui-port", str(ui)], stdout=out, stderr=subprocess.STDOUT, env=env))
        _wait_for(master_log, r"I have been elected leader|Starting Spark master", started[0])
        url = f"spark://127.0.0.1:{port}"
        worker_log = tmp_path / "worker.log"
        with worker_log.open("wb") as out:
            started.append(subprocess.Popen(
                [str(spark_class), "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                 "--cores", "1", "--memory", "1g", "--webui-port", str(worker_ui)],
                stdout=out, stderr=subprocess.STDOUT, env=env))
        _wait_for(worker_log, r"Successfully registered with master", started[1])
        yield url
    finally:
        for process in reversed(started):
            process.terminate()
        for process in reversed(started):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_fit_on_a_standalone_cluster_writes_the_local_file(standalone: str, tmp_path: Path) -> None:
    from app.offline.calibration import FitConfig, PredictionFile, fit_predictions

    predictions = write_predictions(tmp_path / "predictions.parquet", 6_000, seed=5)
    out = tmp_path / "spark.json"
    command = [sys.executable, "-m", "app.cli", "calibrate", "fit", "--predictions", str(predictions),
               "--out", str(out), "--version", "v", "--segment", "user_tenure", "--no-progress",
               "--min-holdout-positives", "0",  # a small file: the figures only need to match local's
               "--engine", "spark", "--spark-master", standalone, "--spark-conf", "spark.ui.enabled=false",
               "--spark-conf", "spark.driver.host=127.0.0.1", "--spark-conf", "spark.driver.bindAddress=127.0.0.1",
               "--spark-conf", "spark.executor.memory=512m", "--spark-conf", "spark.cores.max=1",
               "--spark-conf", "spark.sql.shuffle.partitions=2",
               "--spark-conf", f"spark.driver.extraJavaOptions={FAST_START_JVM}",
               "--spark-conf", f"spark.executor.extraJavaOptions={FAST_START_JVM}"]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    # --no-progress: no stage bars, and none of Spark's start-up log lines
    assert "[Stage" not in done.stderr and " WARN " not in done.stderr, done.stderr[-2000:]
    assert "log4j profile" not in done.stderr and "default log level" not in done.stderr, done.stderr[-2000:]
    local = fit_predictions(PredictionFile(predictions), FitConfig(segments=("user_tenure",)), version="v",
                            show_progress=False, min_held_out_positives=0).calibration.model_dump(mode="json")
    remote = json.loads(out.read_text())
    local.pop("created_at"), remote.pop("created_at")
    assert max_number_diff(local, remote) < 1e-9
