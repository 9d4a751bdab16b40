"""Request bodies of `POST /v1/score` in the three formats the server reads, from the caller's candidates.

Candidates come as
- a sequence of mappings, either in the wire's row shape (`{"id", "features", "attributes"}`) or flat
  (`{"id": ..., "item_price": ..., "margin": ...}`: every other key is a feature or an attribute);
- a pandas DataFrame or a pyarrow Table / RecordBatch: flat, one column per feature and attribute.

and leave as
- `rows`: JSON, one object per candidate (a flat input is split into features and attributes by the
  names of the attributes the surface's policy reads, from `GET /v1/surfaces/{surface}`);
- `columns`: JSON, `columns.id` plus one list per name (features and attributes share the name space);
- `arrow`: an Arrow IPC stream, the envelope as JSON in the schema metadata key `fusionrank.request`.

Missing values are `null` (JSON) or null (Arrow); a NaN in a DataFrame is a missing value. pandas and
pyarrow are imported only when such an input or the Arrow format is used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

__all__ = ["ARROW_MEDIA_TYPE", "JSON_MEDIA_TYPE", "BodyFormat", "encode_body"]

BodyFormat = Literal["rows", "columns", "arrow"]
JSON_MEDIA_TYPE = "application/json"
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
_REQUEST_KEY = b"fusionrank.request"
_ROW_KEYS = frozenset({"id", "features", "attributes"})
_FORMATS = ("rows", "columns", "arrow")


def encode_body(
    envelope: Mapping[str, Any], candidates: Any, fmt: BodyFormat, attribute_names: Callable[[], Collection[str]]
) -> tuple[bytes, str]:
    """(body, content type). `envelope`: request_id, surface, context, options (and policy_version);
    `attribute_names()` is called only when a flat input must be split into row JSON."""
    if fmt not in _FORMATS:
        raise ValueError(f"body format {fmt!r} is not one of {list(_FORMATS)}")
    table = _table(candidates)
    if fmt == "arrow":
        return _arrow(envelope, table if table is not None else _columns_of(candidates)), ARROW_MEDIA_TYPE
    if fmt == "columns":
        columns = _columns_of(candidates) if table is None else _table_columns(table)
        return _json({**envelope, "columns": columns}), JSON_MEDIA_TYPE
    if table is not None:
        rows = _split(_rows_of_columns(_table_columns(table)), set(attribute_names()))
    elif all(_ROW_KEYS.issuperset(row) for row in candidates):
        rows = [dict(row) for row in candidates]
    else:
        rows = _split([dict(row) for row in candidates], set(attribute_names()))
    return _json({**envelope, "candidates": rows}), JSON_MEDIA_TYPE


def _json(body: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except ValueError as exc:  # NaN or infinity: the server refuses them, name it here
        raise ValueError(f"{exc}: send a missing value as None, not NaN (and no infinity)") from None


def _table(candidates: Any) -> Any:
    """A pyarrow Table for a DataFrame, Table or RecordBatch; None for a sequence of mappings."""
    module = type(candidates).__module__
    if module.startswith("pandas"):
        import pyarrow as pa

        return pa.Table.from_pandas(candidates, preserve_index=False)  # NaN -> null
    if module.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(candidates, pa.RecordBatch):
            return pa.Table.from_batches([candidates])
        if isinstance(candidates, pa.Table):
            return candidates
        raise TypeError(f"candidates: a pyarrow {type(candidates).__name__} is not a Table or a RecordBatch")
    if isinstance(candidates, Sequence) and not isinstance(candidates, str | bytes):
        for i, row in enumerate(candidates):
            if not isinstance(row, Mapping):
                raise TypeError(f"candidates[{i}]: a {type(row).__name__}, not a mapping")
        return None
    raise TypeError(
        f"candidates: a {type(candidates).__name__}; send a list of dicts, a pandas DataFrame or a pyarrow Table"
    )


def _table_columns(table: Any) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = table.to_pydict()
    for name, values in columns.items():  # a float NaN that was not a pandas null: missing as well
        columns[name] = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    return columns


def _columns_of(candidates: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Row-shaped or flat mappings as columns: `id` first, then every name in order of appearance."""
    n = len(candidates)
    columns: dict[str, list[Any]] = {"id": [None] * n}
    for i, row in enumerate(candidates):
        nested = _ROW_KEYS.issuperset(row)
        values = {**row.get("features", {}), **row.get("attributes", {})} if nested else \
            {k: v for k, v in row.items() if k != "id"}
        if nested:
            both = set(row.get("features", {})) & set(row.get("attributes", {}))
            for name in both:
                if row["features"][name] != row["attributes"][name]:
                    raise ValueError(f"candidates[{i}]: `{name}` is a feature and an attribute with different"
                                     " values; in columns they share one name: rename one")
        columns["id"][i] = row.get("id")
        for name, value in values.items():
            if name == "id":
                raise ValueError(f"candidates[{i}]: a feature or attribute named `id` clashes with the id column")
            columns.setdefault(name, [None] * n)[i] = value
    return columns


def _rows_of_columns(columns: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _split(flat: list[dict[str, Any]], attributes: set[str]) -> list[dict[str, Any]]:
    """Flat rows in the row shape: declared attributes under `attributes`, the rest under `features`;
    missing (None) values are left out, as in a hand-written request."""
    rows = []
    for row in flat:
        out: dict[str, Any] = {"id": row.get("id"), "features": {}, "attributes": {}}
        for name, value in row.items():
            if name != "id" and value is not None:
                out["attributes" if name in attributes else "features"][name] = value
        rows.append(out)
    return rows


def _arrow(envelope: Mapping[str, Any], data: Any) -> bytes:
    """One record batch; a column with no value at all (type null) is left out: it means missing anyway."""
    import pyarrow as pa

    if isinstance(data, dict):
        arrays = {}
        for name, values in data.items():
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ValueError(f"column `{name}`: its values do not share one type ({exc})") from None
        table = pa.table(arrays)
    else:
        table = data
    keep = [i for i, field in enumerate(table.schema) if not pa.types.is_null(field.type)]
    table = table.select(keep).combine_chunks()
    metadata = {_REQUEST_KEY: json.dumps(envelope, allow_nan=False, separators=(",", ":")).encode("utf-8")}
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=max(1, table.num_rows)):
            writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
