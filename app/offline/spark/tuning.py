"""`tune ... --engine spark`: Spark reads, projects and (optionally) samples whole groups; the tuner runs on the driver.

The tuners search weights with many evaluations of per-group objectives (NDCG gaps, regrets, the
constrained Lagrangian with Nelder-Mead): each evaluation needs every selected group's candidate list,
so what they need is the per-group statistics themselves, the [G, N, T] predictions and labels. Spark
keeps only the tuner's columns (group_id, candidate_id, p_*, label_*, mask_*), draws whole groups
by a hash of group_id when `sample` < 1 (every method averages over groups, so a uniform sample of
groups estimates the same objective; the constrained tuner's held-out check then runs on the sample
too), and hands them as Arrow to `candidate_log`, the local reader's validation. The driver holds
the sampled groups only: size `--spark-sample` to the driver's memory (about 8 bytes x candidates x
(2 tasks + 2) per row). With `sample` = 1 the tuner sees exactly the local log, so the weights equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.errors import ArtifactError
from app.offline.spark.errors import spark_errors
from app.offline.tuning.logs import LABEL, PREDICTION, REQUIRED, CandidateLog, candidate_log

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["SAMPLE_SCALE", "sampled_candidate_log"]

ROW = "__fusionrank_row"
SAMPLE_SCALE = 1 << 20  # a group is kept when pmod(xxhash64(group_id), SAMPLE_SCALE) < sample * SAMPLE_SCALE


def sampled_candidate_log(
    frame: DataFrame, origin: str, *, tasks: list[str] | None, sample: float = 1.0, columns: Sequence[str] = ()
) -> CandidateLog:
    """The tuner's columns (and `columns`, e.g. a segment, if present) of a (hash-sampled) set of whole groups,
    validated by `candidate_log`."""
    from pyspark.sql import functions as F

    if not 0.0 < sample <= 1.0:
        raise ArtifactError("--spark-sample", str(sample), "not a fraction of groups in (0, 1]", "e.g. 0.1")
    names = [n for n in frame.columns if n in REQUIRED or n.startswith((PREDICTION, LABEL, "mask_")) or n in columns]
    selected = frame.select(*names).withColumn(ROW, F.monotonically_increasing_id())
    if sample < 1.0 and "group_id" in names:
        threshold = int(sample * SAMPLE_SCALE)
        selected = selected.filter(F.pmod(F.xxhash64("group_id"), F.lit(SAMPLE_SCALE)) < threshold)
    with spark_errors(origin):
        table = selected.toArrow()
    table = table.sort_by(ROW).drop_columns([ROW])  # the input order: groups by first appearance
    return candidate_log(table, origin, tasks=tasks)
