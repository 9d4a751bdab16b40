"""Columnar bodies (column JSON, Arrow IPC) answer exactly what the row JSON body answers."""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from app.protocol.arrow import ARROW_MEDIA_TYPE, REQUEST_KEY, RESPONSE_KEY

ENVELOPE_KEYS = ("request_id", "surface", "policy_version", "context", "options")
TASKS = ("click", "purchase", "hide", "report", "like")


def to_columns(body: dict[str, Any]) -> dict[str, Any]:
    """The row body as column JSON: `id`, then every feature and attribute name (null where absent)."""
    candidates = body["candidates"]
    names: dict[str, str] = {}
    for c in candidates:
        for section in ("features", "attributes"):
            for name in c.get(section, {}):
                names.setdefault(name, section)
    columns: dict[str, list[Any]] = {"id": [c["id"] for c in candidates]}
    for name, section in names.items():
        columns[name] = [c.get(section, {}).get(name) for c in candidates]
    out = {k: copy.deepcopy(body[k]) for k in ENVELOPE_KEYS if k in body}
    out["columns"] = columns
    return out


def to_arrow(body: dict[str, Any], *, float32: bool = False) -> bytes:
    """The row body as an Arrow IPC stream; types inferred per column, as a client's pyarrow would."""
    columnar = to_columns(body)
    envelope = {k: v for k, v in columnar.items() if k != "columns"}
    arrays = {name: pa.array(_one_type(values)) for name, values in columnar["columns"].items()}
    if float32:
        arrays = {n: a.cast(pa.float32()) if pa.types.is_floating(a.type) else a for n, a in arrays.items()}
    batch = pa.RecordBatch.from_pydict(arrays, metadata={REQUEST_KEY: orjson.dumps(envelope)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def _one_type(values: list[Any]) -> list[Any]:
    """An Arrow column has one type: of a mixed column keep the values of its rarest type, the rest null."""
    kinds = [type(v) for v in values if v is not None]
    if len(set(kinds)) < 2:
        return values
    rare = min(set(kinds), key=kinds.count)
    return [v if type(v) is rare else None for v in values]


def post_json(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post("/v1/score", content=orjson.dumps(body), headers={"content-type": "application/json"})


def post_arrow(client: TestClient, body: bytes, accept: str = ARROW_MEDIA_TYPE) -> Any:
    return client.post("/v1/score", content=body, headers={"content-type": ARROW_MEDIA_TYPE, "accept": accept})


def without_timings(answer: dict[str, Any]) -> dict[str, Any]:
    answer = dict(answer)
    answer.pop("timings_ms", None)
    return answer


def assert_close(a: Any, b: Any, path: str = "") -> None:
    """Equal structures; floats equal to 1e-9."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (path, a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def variants(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain; debug with filtered; the `new` user segment (an override); pinned policy 2, top_k 5."""
    plain = copy.deepcopy(sample)
    plain["options"] = {}
    debug = copy.deepcopy(sample)
    debug["options"] = {"debug": True, "return_filtered": True}
    override = copy.deepcopy(debug)
    override["context"]["attributes"]["user_segment"] = "new"
    pinned = copy.deepcopy(sample)
    pinned["policy_version"] = "2"
    pinned["options"] = {"top_k": 5, "return_filtered": True}
    # Some missing values, so that nulls take the same path as absent keys.
    for body in (debug, override):
        del body["candidates"][3]["features"]["item_price"]
        del body["candidates"][5]["attributes"]["margin"]
        body["candidates"][7]["attributes"]["creator_id"] = None
    return [plain, debug, override, pinned]


@pytest.mark.parametrize("which", range(4))
def test_column_json_answers_like_rows(client: TestClient, sample_request: dict[str, Any], which: int) -> None:
    body = variants(sample_request)[which]
    rows = post_json(client, body)
    columns = post_json(client, to_columns(body))
    assert rows.status_code == columns.status_code == 200, columns.text
    expected = without_timings(rows.json())
    assert expected["candidates"]
    if body["options"].get("debug"):
        assert expected["filtered"] and expected["overrides"] == (["new_users_safer"] if which == 2 else [])
    assert_close(without_timings(columns.json()), expected)


@pytest.mark.parametrize("which", range(4))
@pytest.mark.parametrize("float32", [False, True])
def test_arrow_answers_like_rows(
    client: TestClient, sample_request: dict[str, Any], which: int, float32: bool
) -> None:
    body = variants(sample_request)[which]
    if float32:  # float32 columns are widened exactly; compare with the same values sent as JSON
        for c in body["candidates"]:
            for name, value in c["features"].items():
                if isinstance(value, float):
                    c["features"][name] = float(pa.scalar(value, pa.float32()).as_py())
            if isinstance(c["attributes"].get("margin"), float):
                c["attributes"]["margin"] = float(pa.scalar(c["attributes"]["margin"], pa.float32()).as_py())
    expected = without_timings(post_json(client, body).json())
    arrow = post_arrow(client, to_arrow(body, float32=float32))
    assert arrow.status_code == 200, arrow.text
    assert arrow.headers["content-type"] == ARROW_MEDIA_TYPE
    table = pa.ipc.open_stream(arrow.content).read_all()
    rest = orjson.loads(table.schema.metadata[RESPONSE_KEY])
    debug = rest.pop("debug", None)
    candidates = []
    for i, row in enumerate(table.to_pylist()):
        candidate = {"id": row["id"], "rank": row["rank"], "utility": row["utility"],
                     "predictions": {t: row[t] for t in TASKS if t in row}}
        if debug is not None:
            candidate["debug"] = debug[i]
        candidates.append(candidate)
    assert_close(without_timings({**rest, "candidates": candidates}), expected)
    # Arrow in, JSON out: the same JSON answer.
    as_json = post_arrow(client, to_arrow(body, float32=float32), accept="application/json")
    assert as_json.headers["content-type"] == "application/json"
    assert_close(without_timings(as_json.json()), expected)


def error_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize(
    ("edit", "field", "index"),
    [
        (lambda c: c[4]["features"].__setitem__("item_price", "cheap"), "item_price", 4),
        (lambda c: c[2]["features"].__setitem__("item_type", 7), "item_type", 2),
        (lambda c: c[6]["attributes"].__setitem__("sponsored", "yes"), "sponsored", 6),
        (lambda c: c[9]["attributes"].__setitem__("margin", True), "margin", 9),
    ],
)
def test_columnar_errors_name_column_and_row(
    client: TestClient, sample_request: dict[str, Any], edit: Any, field: str, index: int
) -> None:
    body = copy.deepcopy(sample_request)
    edit(body["candidates"])
    rows = post_json(client, body)
    columns = post_json(client, to_columns(body))
    row_error, column_error = error_of(rows), error_of(columns)
    assert column_error["details"][0]["field"] == f"columns.{field}[{index}]"
    assert column_error["details"][0]["candidate_index"] == row_error["details"][0]["candidate_index"] == index
    assert column_error["details"][0]["fix"] == row_error["details"][0]["fix"]
    arrow_error = error_of(post_arrow(client, to_arrow(body)))
    assert arrow_error["details"][0]["field"] == f"columns.{field}[{index}]"
    assert arrow_error["details"][0]["candidate_index"] == index


def test_required_feature_missing_is_named_in_every_format(
    client: TestClient, sample_request: dict[str, Any]
) -> None:
    body = copy.deepcopy(sample_request)
    del body["context"]["features"]["user_activity"]  # required (no default), and now nowhere
    body["candidates"][0]["features"]["user_activity"] = 3.0
    assert error_of(post_json(client, body))["details"][0]["field"] == "candidates[1].features.user_activity"
    assert error_of(post_json(client, to_columns(body)))["details"][0]["field"] == "columns.user_activity[1]"
    assert error_of(post_arrow(client, to_arrow(body)))["details"][0]["field"] == "columns.user_activity[1]"


def test_column_shape_errors(client: TestClient, sample_request: dict[str, Any]) -> None:
    columnar = to_columns(sample_request)
    short = copy.deepcopy(columnar)
    short["columns"]["margin"] = short["columns"]["margin"][:-1]
    error = error_of(post_json(client, short))
    assert error["details"][0]["field"] == "columns.margin"
    assert "39 values for 40 candidates" in error["message"]
    no_ids = copy.deepcopy(columnar)
    del no_ids["columns"]["id"]
    assert error_of(post_json(client, no_ids))["details"][0]["field"] == "columns.id"
    duplicate = copy.deepcopy(columnar)
    duplicate["columns"]["id"][5] = duplicate["columns"]["id"][0]
    error = error_of(post_json(client, duplicate))
    assert error["details"][0]["field"] == "columns.id[5]"
    assert error["details"][0]["candidate_index"] == 5


def test_arrow_without_envelope_or_with_nan_is_refused(client: TestClient, sample_request: dict[str, Any]) -> None:
    batch = pa.RecordBatch.from_pydict({"id": ["a", "b"], "affinity": [1.0, float("nan")]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    error = error_of(post_arrow(client, bytes(sink.getvalue().to_pybytes())))
    assert error["details"][0]["field"] == "schema.metadata"
    with_nan = copy.deepcopy(sample_request)
    stream = to_arrow(with_nan)
    table = pa.ipc.open_stream(stream).read_all()
    values = table.column("affinity").to_pylist()
    values[8] = float("nan")
    table = table.set_column(table.column_names.index("affinity"), "affinity", pa.array(values))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    error = error_of(post_arrow(client, bytes(sink.getvalue().to_pybytes())))
    assert error["details"][0]["field"] == "columns.affinity[8]"
    assert error_of(post_arrow(client, b"not arrow"))["details"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"content-type": "text/csv"}, "content-type"),
        ({"content-type": "application/evil+json"}, "content-type"),
        ({"content-type": "application/json; charset=latin-1"}, "content-type"),
        ({"content-type": f"{ARROW_MEDIA_TYPE}; x=1"}, "content-type"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, "content-encoding"),
    ],
)
def test_other_content_types_and_encodings_are_415(
    client: TestClient, sample_request: dict[str, Any], headers: dict[str, str], field: str
) -> None:
    response = client.post("/v1/score", content=orjson.dumps(sample_request), headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["details"][0]["field"] == field
    fix = error["details"][0]["fix"]
    if ";" in headers.get("content-type", ""):  # a parameter: the fix names the type without it
        assert f"Content-Type: {headers['content-type'].split(';')[0]}`" in fix
    elif field == "content-type":  # an unknown type: the fix names every accepted one
        assert ARROW_MEDIA_TYPE in fix and "application/json" in fix


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "application/json; charset=UTF-8"}, {"content-type": "Application/JSON"},
     {"content-type": "application/json", "content-encoding": "identity"}, {}],
)
def test_json_with_charset_identity_or_no_type_is_accepted(
    client: TestClient, sample_request: dict[str, Any], headers: dict[str, str]
) -> None:
    assert client.post("/v1/score", content=orjson.dumps(sample_request), headers=headers).status_code == 200


def test_arrow_in_several_batches_with_integer_columns_answers_like_rows(
    client: TestClient, sample_request: dict[str, Any]
) -> None:
    """Numeric columns of mixed Arrow types, nulls and chunks are converted in one block, exactly."""
    body = copy.deepcopy(sample_request)
    for i, c in enumerate(body["candidates"]):
        c["features"]["item_age_hours"] = i * 3  # integers: sent as an int64 column
        if i % 4 == 1:
            c["features"].pop("affinity")  # null in the Arrow column, the manifest default in both
    expected = without_timings(post_json(client, body).json())
    table = pa.ipc.open_stream(to_arrow(body)).read_all()
    assert table.schema.field("item_age_hours").type == pa.int64()
    half = table.num_rows // 2
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:  # two record batches: two chunks per column
        writer.write_table(table.slice(0, half))
        writer.write_table(table.slice(half))
    answer = post_arrow(client, bytes(sink.getvalue().to_pybytes()), accept="application/json")
    assert answer.status_code == 200, answer.text
    assert_close(without_timings(answer.json()), expected)
    # A NaN value (not a null) in the second chunk is named by its row in the whole table.
    values = table.column("affinity").to_pylist()
    row = half + 3
    values[row] = float("nan")
    with_nan = table.set_column(table.column_names.index("affinity"), "affinity", pa.array(values))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, with_nan.schema) as writer:
        writer.write_table(with_nan.slice(0, half))
        writer.write_table(with_nan.slice(half))
    error = error_of(post_arrow(client, bytes(sink.getvalue().to_pybytes())))
    assert error["details"][0]["field"] == f"columns.affinity[{row}]"
    assert error["details"][0]["candidate_index"] == row
