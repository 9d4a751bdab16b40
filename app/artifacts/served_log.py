"""Schemas of the served log, the outcomes log and the joined log: the files that close the loop.

**Served log** (`served_log_schema`, schema_version 1): one row per candidate of a logged `/v1/score`
request, written by the service (`app.monitoring.served_log`) as Parquet under
``<root>/served/surface=<s>/date=<YYYY-MM-DD>/hour=<HH>/``. Per-task values are maps keyed by task name
(``logits``, ``predictions``), so that one surface's partition may hold rows of model versions with
different tasks without a schema change; `fusionrank logs join` spreads them into one column per task.

- ``position`` is the served 0-based position, null when the candidate was removed; then
  ``filtered_stage`` (``guardrail`` / ``slate``) and ``filtered_rule`` say what removed it (null when served;
  ``slate`` / ``top_k`` for a candidate that passed every rule but ranked past the answer's top_k).
- ``utility_terms`` maps each utility term (`ScoreOutcome.contributions`) to its value.
- ``propensity`` is the probability that the logging policy put the candidate at its position
  (null until the policy explores: a deterministic ranking logs 1.0 for served rows, null for filtered ones).
- ``attributes_number`` / ``attributes_string`` / ``attributes_boolean`` hold the candidate attributes the
  policy declares, by declared type (what `simulate` and `tune` replay a policy on).
- ``features_numeric`` / ``features_categorical`` are what the model saw after the request-context and
  manifest-default fallback (numeric as the float32 fed to the graph, categorical as the vocabulary value,
  null for out-of-vocabulary); both null unless features are logged.

**Outcomes log** (`outcomes_log_schema`): one row per `/v1/feedback` event (or a user's own outcomes file
with at least ``request_id``, ``candidate_id``, ``task``, ``label``, ``event_time``), under
``<root>/outcomes/date=<YYYY-MM-DD>/hour=<HH>/``.

**Joined log** (`fusionrank logs join`): the served columns without the maps, plus per task T:
``logit_T``, ``p_T`` (calibrated), ``label_T`` (0/1, null when unobserved) and ``mask_T`` (1 = label
observed and mature at ``as_of``). Its Parquet schema metadata carries ``fusionrank.log = joined`` and
the tasks, which the offline tools read to accept it as is.

Each file's schema metadata carries ``fusionrank.log`` (the kind) and ``fusionrank.schema_version``.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

__all__ = [
    "JOINED_KIND",
    "KIND_KEY",
    "OUTCOMES_KIND",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "SERVED_KIND",
    "TASKS_KEY",
    "TOP_K_RULE",
    "joined_log_fields",
    "joined_metadata",
    "joined_tasks",
    "log_kind",
    "outcomes_log_schema",
    "served_log_schema",
]

SCHEMA_VERSION: Final = 1
KIND_KEY: Final = b"fusionrank.log"
SCHEMA_VERSION_KEY: Final = b"fusionrank.schema_version"
TASKS_KEY: Final = b"fusionrank.tasks"  # joined log: comma-separated task names, in column order
SERVED_KIND: Final = "served"
OUTCOMES_KIND: Final = "outcomes"
JOINED_KIND: Final = "joined"
TOP_K_RULE: Final = "top_k"  # filtered_rule of a candidate that survived every rule but ranked past top_k

_TS = pa.timestamp("us", tz="UTC")
_FLOATS = pa.map_(pa.string(), pa.float64())
_STRINGS = pa.map_(pa.string(), pa.string())


def _metadata(kind: str) -> dict[bytes, bytes]:
    return {KIND_KEY: kind.encode(), SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()}


# The columns every served row and every joined row share, in file order.
_SERVED_KEYS: Final = [
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("ts", _TS, nullable=False),  # when the request was answered
    # Dictionary-encoded like the surface= partition key that pyarrow infers, so a folder reads as one table.
    pa.field("surface", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("sticky_key", pa.string()),  # context.user_id as sent (the default canary sticky key), or null
    pa.field("model", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("calibration_version", pa.string(), nullable=False),
    pa.field("policy_version", pa.string(), nullable=False),
    pa.field("arm", pa.string(), nullable=False),  # stable | canary
    pa.field("candidate_id", pa.string(), nullable=False),
    pa.field("candidate_index", pa.int32(), nullable=False),  # position in the request as sent
    pa.field("position", pa.int32()),  # served 0-based position; null = removed
    pa.field("filtered_stage", pa.string()),
    pa.field("filtered_rule", pa.string()),
]
_SERVED_VALUES: Final = [
    pa.field("utility", pa.float64()),
    pa.field("propensity", pa.float64()),
]


def served_log_schema() -> pa.Schema:
    """The served log, schema_version 1 (see the module docstring)."""
    return pa.schema(
        [
            *_SERVED_KEYS,
            pa.field("logits", _FLOATS, nullable=False),  # task -> raw logit
            pa.field("predictions", _FLOATS, nullable=False),  # task -> calibrated probability
            *_SERVED_VALUES,
            pa.field("utility_terms", _FLOATS, nullable=False),  # term -> contribution to utility
            pa.field("features_numeric", _FLOATS),
            pa.field("features_categorical", _STRINGS),
            # The policy's declared candidate attributes as read (a missing value: absent from the map).
            pa.field("attributes_number", _FLOATS, nullable=False),
            pa.field("attributes_string", _STRINGS, nullable=False),
            pa.field("attributes_boolean", pa.map_(pa.string(), pa.bool_()), nullable=False),
        ],
        metadata=_metadata(SERVED_KIND),
    )


def outcomes_log_schema() -> pa.Schema:
    """The outcomes log: one observed label of one task of one served candidate."""
    return pa.schema(
        [
            pa.field("event_id", pa.string()),
            pa.field("request_id", pa.string()),  # null: the event cannot be joined (counted by the join)
            pa.field("candidate_id", pa.string()),
            pa.field("task", pa.string(), nullable=False),
            pa.field("label", pa.int8(), nullable=False),
            pa.field("event_time", _TS, nullable=False),
            pa.field("prediction", pa.float64()),  # as the client says it was served
            pa.field("model", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("calibration_version", pa.string()),
            pa.field("received_at", _TS),  # when the service logged it
        ],
        metadata=_metadata(OUTCOMES_KIND),
    )


def joined_log_fields() -> list[pa.Field]:
    """The task-independent columns of a joined log (per-task columns follow, see the module docstring)."""
    return [*_SERVED_KEYS, *_SERVED_VALUES]


def joined_metadata(tasks: list[str], as_of: str) -> dict[bytes, bytes]:
    return {**_metadata(JOINED_KIND), TASKS_KEY: ",".join(tasks).encode(), b"fusionrank.as_of": as_of.encode()}


def log_kind(schema: pa.Schema) -> str | None:
    """The `fusionrank.log` kind a file's schema metadata declares (`joined`, `served`...), or None."""
    metadata = schema.metadata or {}
    kind = metadata.get(KIND_KEY)
    return kind.decode() if kind is not None else None


def joined_tasks(schema: pa.Schema) -> list[str]:
    """The task names a joined log declares, in column order."""
    raw = (schema.metadata or {}).get(TASKS_KEY, b"").decode()
    return [t for t in raw.split(",") if t]
