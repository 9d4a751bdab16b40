"""The served/outcomes/joined log schemas: versioned, self-describing by metadata."""

from __future__ import annotations

import pyarrow as pa

from app.artifacts.served_log import (
    SCHEMA_VERSION,
    joined_log_fields,
    joined_metadata,
    joined_tasks,
    log_kind,
    outcomes_log_schema,
    served_log_schema,
)


def test_the_served_log_schema_is_versioned_and_names_its_kind() -> None:
    schema = served_log_schema()
    assert log_kind(schema) == "served"
    assert schema.metadata[b"fusionrank.schema_version"] == str(SCHEMA_VERSION).encode()
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("position").nullable and schema.field("filtered_rule").nullable
    assert schema.field("logits").type == pa.map_(pa.string(), pa.float64())
    assert schema.field("propensity").type == pa.float64()


def test_the_outcomes_log_schema_keys_events_by_request_and_candidate() -> None:
    schema = outcomes_log_schema()
    assert log_kind(schema) == "outcomes"
    assert {"event_id", "request_id", "candidate_id", "task", "label", "event_time"} <= set(schema.names)


def test_a_joined_schema_declares_its_tasks() -> None:
    schema = pa.schema(joined_log_fields(), metadata=joined_metadata(["click", "purchase"], "2026-01-01T00:00:00Z"))
    assert log_kind(schema) == "joined"
    assert joined_tasks(schema) == ["click", "purchase"]
    assert log_kind(pa.schema([])) is None
