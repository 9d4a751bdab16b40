"""The offline commands on Apache Spark (`--engine spark`): Spark computes the mergeable statistics,
the driver runs the local path's own fit, metrics and report. pyspark is imported lazily, only in this package."""

from app.offline.spark.calibration import collect_on_spark, fit_on_spark
from app.offline.spark.errors import spark_errors
from app.offline.spark.report import report_on_spark
from app.offline.spark.session import (
    SparkInput,
    parse_spark_conf,
    quiet_settings,
    read_input,
    spark_session,
    start_session,
)
from app.offline.spark.simulation import SparkReplayer
from app.offline.spark.tuning import sampled_candidate_log

__all__ = [
    "SparkInput",
    "SparkReplayer",
    "collect_on_spark",
    "fit_on_spark",
    "parse_spark_conf",
    "quiet_settings",
    "read_input",
    "report_on_spark",
    "sampled_candidate_log",
    "spark_errors",
    "spark_session",
    "start_session",
]
