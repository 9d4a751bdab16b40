"""Every fast path of the scoring hot path answers what the general path answers.

Each fast path (small batches in plain Python, the vectorised calibration, the Arrow answer from arrays,
the metric children resolved once) is checked against the general path it short-cuts: alone on random
inputs, and end to end on the shipped bundle (with segment corrections) with every fast path on vs off.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import app.protocol.arrow as arrow_module
import app.serving.calibration as calibration_module
import app.serving.features as features_module
import app.serving.slate as slate_module
from app.api.score import _answer
from app.api.state import ServiceState
from app.artifacts import (
    CalibrationFile,
    CategoricalFeature,
    FeatureSchema,
    FittedFor,
    IsotonicParams,
    ModelManifest,
    NumericFeature,
    PlattParams,
    ReferenceDistribution,
    SegmentCalibration,
    SegmentParams,
    TaskCalibration,
    TaskSpec,
    TemperatureParams,
    TrainingWindow,
)
from app.control.loader import load_snapshot
from app.monitoring.metrics import ServiceMetrics
from app.protocol.arrow import ARROW_MEDIA_TYPE
from app.protocol.arrow_out import arrow_answer
from app.protocol.response import score_response
from app.serving.calibration import CalibrationSet
from app.serving.features import FeatureEncoder
from app.serving.slate import occurrence_rank, over_per_value, value_codes
from app.settings import Settings
from bench.common import arrow_with, columns_with, request_with, segmented_store

SHA = "a" * 64
VOCABULARY = ["new", "old", "mid"]


def _manifest(tasks: int) -> ModelManifest:
    return ModelManifest(
        schema_version=1, name="m", version="1", tasks=[TaskSpec(name=f"t{i}", polarity="positive")
                                                         for i in range(tasks)],
        features=FeatureSchema(
            numeric=[NumericFeature(name="x")],
            categorical=[CategoricalFeature(name="tenure", vocabulary=VOCABULARY),
                         CategoricalFeature(name="kind", vocabulary=["a", "b"])],
        ),
        model_sha256=SHA,
        training_window=TrainingWindow(start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"),
        created_at="2026-01-02T00:00:00Z", code_version="test",
    )


def _calibration(tasks: dict[str, TaskCalibration]) -> CalibrationFile:
    return CalibrationFile(
        schema_version=1, version="1", model=FittedFor(name="m", version="1", sha256=SHA),
        created_at="2026-01-02T00:00:00Z", tasks=tasks,
    )


def _task(params: Any, segments: list[SegmentCalibration]) -> TaskCalibration:
    return TaskCalibration(calibrator=params, segments=segments, bucket_edges=[0.5],
                           reference=ReferenceDistribution(fractions=[0.5, 0.5]))


@settings(max_examples=60, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["platt", "temperature"]), min_size=1, max_size=4),
    scales=st.lists(st.floats(0.05, 5), min_size=4, max_size=4),
    offsets=st.lists(st.floats(-5, 5), min_size=4, max_size=4),
    depths=st.lists(st.integers(0, 2), min_size=4, max_size=4),
    z=st.lists(st.floats(-40, 40), min_size=1, max_size=30),
    seed=st.integers(0, 1000),
)
def test_vectorised_calibration_equals_per_task(
    kinds: list[str], scales: list[float], offsets: list[float], depths: list[int], z: list[float], seed: int
) -> None:
    """Platt and temperature tasks with 0-2 segment layers (on the same features), composed once: equal
    to 1e-12 (the composition rounds differently from the step-by-step loop)."""
    features = ["tenure", "kind"]
    tasks = {}
    for i, kind in enumerate(kinds):
        params = PlattParams(a=scales[i], b=offsets[i]) if kind == "platt" else TemperatureParams(temperature=scales[i])
        segments = [
            SegmentCalibration(feature=features[k], values={"new" if k == 0 else "a": SegmentParams(
                a=scales[(i + k + 1) % 4], b=offsets[(i + k) % 4], count=10)})
            for k in range(depths[i])
        ]
        tasks[f"t{i}"] = _task(params, segments)
    calibration = CalibrationSet(_calibration(tasks), _manifest(len(kinds)))
    assert calibration._affine is not None
    rng = np.random.default_rng(seed)
    logits = np.array([[v + t for t in range(len(kinds))] for v in z], dtype=np.float32)
    categorical = np.stack([rng.integers(0, 4, len(z)), rng.integers(0, 3, len(z))], axis=1)
    fast, general = calibration.apply(logits, categorical), calibration.apply_per_task(logits, categorical)
    np.testing.assert_allclose(fast, general, rtol=0, atol=1e-12)


def test_calibration_keeps_the_general_path_when_not_affine_features_differ_or_combinations_are_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    knots = IsotonicParams(x=[-1.0, 1.0], y=[0.2, 0.8])
    on_tenure = SegmentCalibration(feature="tenure", values={"new": SegmentParams(a=2.0, b=0.1, count=10)})
    on_kind = SegmentCalibration(feature="kind", values={"a": SegmentParams(a=2.0, b=0.1, count=10)})
    isotonic = _calibration({"t0": _task(knots, []), "t1": _task(PlattParams(a=1.0, b=0.0), [])})
    mixed = _calibration({"t0": _task(PlattParams(a=1.0, b=0.0), [on_tenure]),
                          "t1": _task(PlattParams(a=1.0, b=0.0), [on_kind])})
    assert CalibrationSet(isotonic, _manifest(2))._affine is None
    assert CalibrationSet(mixed, _manifest(2))._affine is None
    both = _calibration({"t0": _task(PlattParams(a=1.0, b=0.0), [on_tenure, on_kind])})
    assert CalibrationSet(both, _manifest(1))._affine is not None  # (3 + 1) x (2 + 1) combinations x 1 task
    monkeypatch.setattr(calibration_module, "MAX_FOLDED_ENTRIES", 11)
    assert CalibrationSet(both, _manifest(1))._affine is None


VALUES = st.one_of(st.none(), st.sampled_from([*VOCABULARY, "unknown", ""]))


@settings(max_examples=80, deadline=None)
@given(column=st.lists(VALUES, min_size=1, max_size=40),
       context=st.one_of(st.none(), st.sampled_from(["old", "unknown"])))
def test_small_categorical_column_equals_the_general_path(column: list[str | None], context: str | None) -> None:
    encoder = FeatureEncoder(_manifest(1).features)
    rows = [{"tenure": v} if v is not None else {} for v in column]
    ctx = {} if context is None else {"tenure": context}
    small = encoder._small_categorical_column("tenure", 0, rows, ctx)
    assert small == encoder._categorical_column("tenure", 0, rows, ctx).tolist()


@pytest.mark.parametrize("bad", [3, 1.5, True, ["x"], {"a": 1}])
def test_small_categorical_column_leaves_a_bad_value_to_the_general_path(bad: Any) -> None:
    encoder = FeatureEncoder(_manifest(1).features)
    rows = [{"tenure": "new"}, {"tenure": bad}]
    assert encoder._small_categorical_column("tenure", 0, rows, {}) is None
    assert encoder._small_categorical_column("tenure", 0, rows[:1], {"tenure": 7}) is None


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", 1, 2.0, True])), max_size=40),
       limit=st.integers(0, 3), seed=st.integers(0, 1000))
def test_over_per_value_equals_occurrence_rank(values: list[Any], limit: int, seed: int) -> None:
    order = np.random.default_rng(seed).permutation(len(values)).astype(np.intp)
    general = occurrence_rank(value_codes(values)[order]) >= limit
    assert over_per_value(values, order.tolist(), limit) == general.tolist()


@settings(max_examples=60, deadline=None)
@given(codes=st.lists(st.integers(-1, 6), max_size=60))
def test_occurrence_rank_counts_earlier_equal_codes(codes: list[int]) -> None:
    expected, seen = [], {}
    for code in codes:
        expected.append(0 if code < 0 else seen.get(code, 0))
        if code >= 0:
            seen[code] = seen.get(code, 0) + 1
    assert occurrence_rank(np.array(codes, dtype=np.intp)).tolist() == expected


# End to end on the shipped bundle with segment corrections: every fast path on, then off.


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> ServiceState:
    store = segmented_store(tmp_path_factory.mktemp("fast"), "demo")
    service = ServiceState(settings=Settings(model_store=store[0], policies=store[1]), metrics=ServiceMetrics())
    service.install(load_snapshot(*store))
    assert service.snapshot.route("home").binding(None).calibration._affine is not None  # the fast path is taken
    return service


def _general_paths(monkeypatch: pytest.MonkeyPatch, state: ServiceState) -> None:
    monkeypatch.setattr(features_module, "SMALL_BATCH", -1)
    monkeypatch.setattr(slate_module, "SMALL_SLATE", -1)
    monkeypatch.setattr(arrow_module, "SMALL_STRING_COLUMN", -1)
    for route in state.snapshot.surfaces.values():
        for binding in route.bindings():
            monkeypatch.setattr(binding.calibration, "_affine", None)


def _body(fmt: str, n: int, options: dict[str, Any]) -> tuple[bytes, str]:
    if fmt == "arrow":
        table = pa.ipc.open_stream(arrow_with(n)).read_all()
        envelope = orjson.loads(table.schema.metadata[b"fusionrank.request"])
        envelope["options"] = options
        table = table.replace_schema_metadata({b"fusionrank.request": orjson.dumps(envelope)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes(), ARROW_MEDIA_TYPE
    body = columns_with(n) if fmt == "columns" else request_with(n)
    body["options"] = options
    return orjson.dumps(body), "application/json"


def _answers(state: ServiceState, fmt: str, n: int, options: dict[str, Any]) -> dict[str, Any]:
    body, media = _body(fmt, n, options)
    out = _answer(state, body, media, False, time.perf_counter(), {})
    answer: dict[str, Any] = orjson.loads(out)
    return answer


def _assert_close(fast: Any, general: Any, path: str = "") -> None:
    if isinstance(fast, float) or isinstance(general, float):
        assert abs(fast - general) <= 1e-12, path
    elif isinstance(fast, dict):
        assert fast.keys() == general.keys(), path
        for key in fast:
            if key != "timings_ms":
                _assert_close(fast[key], general[key], f"{path}.{key}")
    elif isinstance(fast, list):
        assert len(fast) == len(general), path
        for i, (a, b) in enumerate(zip(fast, general, strict=True)):
            _assert_close(a, b, f"{path}[{i}]")
    else:
        assert fast == general, path


@pytest.mark.parametrize("fmt", ["rows", "columns", "arrow"])
@pytest.mark.parametrize("n", [1, 10, 64, 65, 300])
def test_answers_equal_with_and_without_the_fast_paths(
    state: ServiceState, monkeypatch: pytest.MonkeyPatch, fmt: str, n: int
) -> None:
    cases = [{"debug": False, "return_filtered": True}, {"debug": True}]
    fast = [_answers(state, fmt, n, options) for options in cases]
    with monkeypatch.context() as patched:
        _general_paths(patched, state)
        general = [_answers(state, fmt, n, options) for options in cases]
    assert fast[0]["candidates"]  # something was ranked
    for a, b in zip(fast, general, strict=True):
        _assert_close(a, b)


@pytest.mark.parametrize("n", [1, 10, 300])
@pytest.mark.parametrize("debug", [False, True])
def test_the_arrow_answer_from_arrays_is_the_stream_of_the_json_answer(
    state: ServiceState, n: int, debug: bool
) -> None:
    from app.protocol.score import decode_score, encode_score
    from app.serving.answer import answer

    body, media = _body("rows", n, {"debug": debug, "return_filtered": True})
    envelope, request = decode_score(body, media, max_candidates=5000, max_decoded_bytes=1 << 28)
    answered = answer(state.snapshot, request)
    tasks = answered.outcome.binding.bundle.manifest.task_names()
    general = arrow_answer(score_response(envelope, request.candidates, answered.outcome), tasks)
    assert encode_score(envelope, answered, arrow=True) == general


def test_metric_series_are_resolved_once_and_count_the_same(state: ServiceState) -> None:
    body, media = _body("rows", 10, {})
    before = state.metrics.exposition()
    _answer(state, body, media, False, time.perf_counter(), {})
    cache = state.metrics.series
    assert len(cache._series) == 1
    series = next(iter(cache._series.values()))
    requests = series.requests._value.get()
    _answer(state, body, media, False, time.perf_counter(), {})
    assert series.requests._value.get() == requests + 1
    assert series.requests is state.metrics.served_requests.labels("home", "stable", "1", "1", "1")
    assert before != state.metrics.exposition()
    state.metrics.observe_snapshot(state.snapshot)  # a new snapshot: resolved again on the next answer
    assert not cache._series


@pytest.mark.parametrize("n", [3, 200])
def test_an_unsent_column_encodes_as_a_column_of_nulls(n: int) -> None:
    """A feature no candidate sends (filled from the context at once) == the same feature sent as null."""
    schema = FeatureSchema(numeric=[NumericFeature(name="x", default=2.5), NumericFeature(name="y")],
                           categorical=[CategoricalFeature(name="tenure", vocabulary=VOCABULARY)])
    encoder = FeatureEncoder(schema)
    unsent = [{"y": float(i)} for i in range(n)]
    nulls = [{"y": float(i), "x": None, "tenure": None} for i in range(n)]
    for context in ({}, {"x": 7.0, "tenure": "old"}, {"tenure": "unknown"}):
        a, b = encoder.encode(unsent, context), encoder.encode(nulls, context)
        np.testing.assert_array_equal(a.numeric, b.numeric)
        np.testing.assert_array_equal(a.categorical, b.categorical)


@pytest.mark.parametrize("bad", [None, "", "x" * 257])
def test_arrow_ids_checked_in_cpp_still_refuse_a_bad_id(bad: str | None) -> None:
    from app.errors import InvalidRequest
    from app.protocol.arrow import SMALL_STRING_COLUMN, decode_arrow_request

    n = SMALL_STRING_COLUMN + 50
    ids = [f"c{i}" for i in range(n)]
    ids[n - 3] = bad  # type: ignore[call-overload]
    batch = pa.RecordBatch.from_pydict({"id": pa.array(ids, type=pa.string())}, metadata={
        b"fusionrank.request": orjson.dumps({"request_id": "r", "surface": "home"})})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    with pytest.raises(InvalidRequest) as error:
        decode_arrow_request(sink.getvalue().to_pybytes(), max_candidates=5000, max_decoded_bytes=1 << 28)
    assert error.value.details[0].field == f"columns.id[{n - 3}]"
