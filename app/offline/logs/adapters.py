"""Read a joined log (`fusionrank logs join`) with the offline tools, selected by its schema metadata.

`calibrate fit/report` and `tune`/`simulate` read the joined columns as they are: ``logit_T``/``p_T``,
``label_T`` (null = unobserved), ``mask_T``, ``group_id`` (the holdout key and the candidate-set id),
``candidate_id``, the spread attribute and feature columns. `train` names its columns in a spec written for
the raw training log; `joined_dataset` maps that spec onto a joined log: ids to ``group_id`` /
``candidate_id``, the event time to ``ts``, each task's label and mask to ``label_T`` / ``mask_T``, and no
label window (the join already masked immature labels at its ``--as-of``). Features keep their names.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from app.artifacts.served_log import JOINED_KIND, joined_tasks, log_kind
from app.errors import ArtifactError
from app.offline.training.spec import DatasetSpec

__all__ = ["is_joined", "joined_dataset"]


def is_joined(path: Path) -> bool:
    """True for a Parquet file whose metadata says `fusionrank.log = joined`."""
    if not path.is_file() or path.suffix.lower() not in (".parquet", ".pq"):
        return False
    try:
        return log_kind(pq.read_schema(path)) == JOINED_KIND
    except OSError:
        return False


def joined_dataset(data: Path, dataset: DatasetSpec) -> DatasetSpec:
    """`dataset` unchanged for a raw log; mapped onto the joined columns for a joined log."""
    if not is_joined(data):
        return dataset
    tasks = joined_tasks(pq.read_schema(data))
    missing = [t.name for t in dataset.tasks if t.name not in tasks]
    if missing:
        raise ArtifactError(data, f"label_{missing[0]}", f"the joined log has no task {missing[0]!r} (it has"
                            f" {tasks})", "train the tasks the logged model predicts, or join a log that has it")
    mapped = [
        t.model_copy(update={"label": f"label_{t.name}", "mask": f"mask_{t.name}", "label_window_hours": None})
        for t in dataset.tasks
    ]
    return dataset.model_copy(update={
        "group_id": "group_id", "candidate_id": "candidate_id", "event_time": "ts", "tasks": mapped,
        "format": "parquet",
    })
