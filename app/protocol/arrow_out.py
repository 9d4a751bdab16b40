"""The `/v1/score` answer as an Arrow IPC stream: one batch of the answered candidates (`id`, `rank`,
`utility`, one float64 column per task), the rest of the JSON answer as JSON in the schema metadata
key `fusionrank.response`.

The stream is the schema message, the batch message and the end-of-stream marker, each serialised by
pyarrow (`Schema.serialize`, `RecordBatch.serialize`): the same bytes `pyarrow.ipc.new_stream` writes,
without its writer object. The schema without metadata is built once per task list.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

__all__ = ["RESPONSE_KEY", "answer_stream", "arrow_answer"]

RESPONSE_KEY = b"fusionrank.response"
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # continuation marker, then a 0-length message


@lru_cache(maxsize=64)
def _schema(tasks: tuple[str, ...]) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("rank", pa.int32()), ("utility", pa.float64()),
                      *((task, pa.float64()) for task in tasks)])


def answer_stream(
    rest: dict[str, Any], ids: list[str], utility: npt.NDArray[np.float64] | list[float],
    predictions: Sequence[npt.NDArray[np.float64] | list[float]], tasks: Sequence[str],
) -> bytes:
    """The stream of an answer: `ids`, `utility` and one `predictions` column per task in answer order,
    `rest` (the JSON answer without its candidates) as the metadata."""
    schema = _schema(tuple(tasks)).with_metadata({RESPONSE_KEY: orjson.dumps(rest)})
    arrays = [
        pa.array(ids, type=pa.string()),
        pa.array(np.arange(1, len(ids) + 1, dtype=np.int32)),
        pa.array(utility, type=pa.float64()),
        *(pa.array(column, type=pa.float64()) for column in predictions),
    ]
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    return b"".join((schema.serialize(), batch.serialize(), _END_OF_STREAM))


def arrow_answer(answer: dict[str, Any], tasks: list[str]) -> bytes:
    """The JSON answer (`app.protocol.response.score_response`) as an Arrow stream: answered candidates as
    columns, the rest as metadata (per-candidate `debug` objects as a list there)."""
    ranked = answer["candidates"]
    rest = {key: value for key, value in answer.items() if key != "candidates"}
    if any("debug" in c for c in ranked):
        rest["debug"] = [c.get("debug") for c in ranked]
    return answer_stream(
        rest, [c["id"] for c in ranked], [c["utility"] for c in ranked],
        [[c["predictions"][task] for c in ranked] for task in tasks], tasks,
    )
