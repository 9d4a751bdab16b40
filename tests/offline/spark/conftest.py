"""One local[2] SparkSession for every Spark test (starting a JVM costs seconds), stopped at the end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed (pip install 'fusionrank[spark]')")

if shutil.which("java") is None:  # scripts/test.sh installs Java 17 first; a bare pytest run without it skips
    pytest.skip("no Java runtime: run scripts/java.sh", allow_module_level=True)

# Test data is tiny: the JIT's optimising tier and a parallel GC cost more (start-up, compiling the
# generated code of every new query) than they ever win back. Halves the Spark tests' time.
FAST_START_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": FAST_START_JVM,
}


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from app.offline.spark import start_session

    session = start_session("local[2]", SPARK_CONF, app_name="fusionrank-tests", show_progress=False)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
