"""Arrow columns of the served log: many logged requests of one binding turned into one record batch.

The writer thread (`app.monitoring.served_log`) hands over a run of requests answered by the same binding
(model, calibration and policy versions) on the same surface and hour. Their arrays are concatenated
first and every column is then built with one numpy or Arrow call for the whole run: the cost per call
(tens of microseconds) is paid once per run, not once per request, and no Python object is made per
candidate except the candidate ids of a row-JSON request (already Python strings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from app.artifacts.served_log import TOP_K_RULE, served_log_schema
from app.serving.scorer import ScoreOutcome

__all__ = ["Served", "ServedColumns"]

_STAGES = ("guardrail", "slate")


@dataclass(frozen=True, slots=True)
class Served:
    """What the writer needs of one answer: its arrays and ids, not the request's candidate rows (memory)."""

    ts: float  # epoch seconds
    request_id: str
    sticky_key: str | None
    surface: str
    arm: str
    ids: Sequence[object]
    outcome: ScoreOutcome


class _Vocabularies:
    """Per model version: feature names and one flat array of every vocabulary (index 1 + v of feature j
    is `flat[base[j] + v]`), so categorical indices become strings with one `take`."""

    def __init__(self, numeric: list[str], categorical: list[str], vocabularies: list[dict[str, int]]) -> None:
        self.numeric, self.categorical = list(numeric), list(categorical)
        values = [v for vocabulary in vocabularies for v in sorted(vocabulary, key=vocabulary.__getitem__)]
        sizes = [len(v) for v in vocabularies]
        self.base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if sizes else np.zeros(0, np.int64)
        self.flat = pa.array(values, pa.string())


class ServedColumns:
    """Turns a run of logged requests of one binding into a record batch of the served schema."""

    def __init__(self, features: bool) -> None:
        self.features = features
        self.schema = served_log_schema()
        self._names: dict[tuple[str, ...], pa.Array] = {}  # map keys, repeated (`_keys`)
        self._vocabularies: dict[tuple[str, str], _Vocabularies] = {}

    def _keys(self, names: Sequence[str], rows: int) -> pa.Array:
        """`names` repeated for `rows` rows (the keys of a map column): a zero-copy slice of a cached array,
        rebuilt only when a run has more rows than any before."""
        key = tuple(names)
        found = self._names.get(key)
        if found is None or len(found) < rows * len(key):
            size = max(rows, 2 * len(found) // max(len(key), 1) if found is not None else 0)
            found = self._names[key] = pa.array(list(key) * size, pa.string())
        return found.slice(0, rows * len(key))

    def batch(self, items: Sequence[Served]) -> pa.RecordBatch:
        """One row per candidate of every item, in order; the items share one binding and surface."""
        outcomes = [item.outcome for item in items]
        first = outcomes[0]
        binding = first.binding
        versions = binding.versions()
        sizes = np.array([len(item.ids) for item in items], dtype=np.int64)
        n = int(sizes.sum())
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        request = np.repeat(np.arange(len(items), dtype=np.int32), sizes)  # row -> its item
        position, propensity, rule, stage, rules = _placement(outcomes, starts, n)

        def per_request(values: list[str | None]) -> pa.Array:
            return pc.take(pa.array(values, pa.string()), pa.array(request))

        def constant(value: str) -> pa.Array:
            return pa.repeat(pa.scalar(value, pa.string()), n)

        tasks = self._keys(binding.bundle.manifest.task_names(), n)
        terms = self._keys(binding.policy.term_names, n)
        ts = np.repeat(np.array([int(item.ts * 1_000_000) for item in items], dtype=np.int64), sizes)
        columns = [
            per_request([item.request_id for item in items]), pa.array(ts, pa.timestamp("us", tz="UTC")),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)),
                                           pa.array([items[0].surface], pa.string())),
            per_request([item.sticky_key for item in items]),
            constant(versions["model"]), constant(versions["model_version"]),
            constant(versions["calibration_version"]), constant(versions["policy_version"]),
            per_request([item.arm for item in items]),
            _strings([item.ids for item in items]), pa.array((np.arange(n) - starts[request]).astype(np.int32)),
            pa.array(position, mask=position < 0),
            _pick(list(_STAGES), stage), _pick(rules, rule),
            _float_map(tasks, _stack([o.logits for o in outcomes])),
            _float_map(tasks, _stack([o.probabilities for o in outcomes])),
            pa.array(_stack([o.utility for o in outcomes]), pa.float64()), pa.array(propensity, mask=position < 0),
            _float_map(terms, _stack([o.contributions for o in outcomes])),
            *self._features(outcomes, n),
            *_attributes(self._keys, binding.policy.file.attributes, [o.attributes for o in outcomes], sizes),
        ]
        batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        # Candidates a cascade's first stage cut were never scored by the model: not logged.
        cut = [o.cascade.cut + start for o, start in zip(outcomes, starts.tolist(), strict=True)
               if o.cascade is not None and o.cascade.cut.size]
        if cut:
            keep = np.ones(n, dtype=bool)
            keep[np.concatenate(cut)] = False
            batch = batch.filter(pa.array(keep))
        return batch

    def _features(self, outcomes: list[ScoreOutcome], n: int) -> tuple[pa.Array, pa.Array]:
        encoded = [o.encoded for o in outcomes]
        if not self.features or any(e is None for e in encoded):
            return pa.nulls(n, self.schema.field("features_numeric").type), pa.nulls(
                n, self.schema.field("features_categorical").type
            )
        bundle = outcomes[0].binding.bundle
        key = (bundle.manifest.name, bundle.manifest.version)
        vocab = self._vocabularies.get(key)
        if vocab is None:
            encoder = bundle.encoder
            vocab = self._vocabularies[key] = _Vocabularies(
                encoder.numeric_names, encoder.categorical_names, encoder.vocabularies
            )
        numeric = _float_map(self._keys(vocab.numeric, n), _stack([e.numeric for e in encoded if e is not None]))
        codes = np.concatenate([e.categorical for e in encoded if e is not None])  # [n, C], 0 = out of vocabulary
        c = codes.shape[1]
        flat_index = (codes - 1 + vocab.base[None, :]).ravel()
        oov = (codes == 0).ravel()
        values = pc.take(vocab.flat, pa.array(np.where(oov, 0, flat_index), mask=oov)) if c else pa.array(
            [], pa.string()
        )
        offsets = pa.array(np.arange(0, n * c + 1, c, dtype=np.int32))
        return numeric, pa.MapArray.from_arrays(offsets, self._keys(vocab.categorical, n), values)


def _stack(arrays: list[npt.NDArray[np.generic]]) -> npt.NDArray[np.generic]:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _placement(outcomes: list[ScoreOutcome], starts: npt.NDArray[np.int64], n: int) -> tuple[
    npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.int32], npt.NDArray[np.int32], list[str]
]:
    """Per row: served position (-1: not served), propensity, filter rule and stage codes (-1: none), and
    the rule names the codes index."""
    position = np.full(n, -1, dtype=np.int32)
    propensity = np.ones(n)
    rule = np.full(n, -1, dtype=np.int32)
    stage = np.full(n, -1, dtype=np.int32)
    codes: dict[str, int] = {}
    for start, outcome in zip(starts.tolist(), outcomes, strict=True):
        ranked = outcome.ranked + start
        position[ranked] = np.arange(ranked.size, dtype=np.int32)
        if outcome.propensity is not None:
            propensity[ranked] = outcome.propensity
        for group in outcome.filtered:
            rows = group.indices + start
            rule[rows] = codes.setdefault(group.rule, len(codes))
            stage[rows] = _STAGES.index(group.stage) if group.stage in _STAGES else 0
    past_top_k = (position < 0) & (rule < 0)  # survivors ranked past top_k: not served, no rule removed them
    if past_top_k.any():
        rule[past_top_k] = codes.setdefault(TOP_K_RULE, len(codes))
        stage[past_top_k] = 1
    return position, propensity, rule, stage, list(codes)


def _float_map(keys: pa.Array, values: npt.NDArray[np.generic]) -> pa.MapArray:
    """values [B, K] -> a map array of B rows {keys[b * K + k]: values[b, k]} (`keys` already repeated)."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.MapArray.from_arrays(offsets, keys, pa.array(values.astype(np.float64, copy=False).ravel()))


def _strings(ids: list[Sequence[object]]) -> pa.Array:
    """Every item's candidate ids as one string array (Arrow columns concatenated, Python lists in one call)."""
    if all(isinstance(i, pa.Array | pa.ChunkedArray) for i in ids):
        chunks = [c.cast(pa.string()) for c in ids]  # type: ignore[attr-defined]
        return pa.chunked_array(chunks, pa.string()).combine_chunks()
    flat = list(chain.from_iterable(i.to_pylist() if isinstance(i, pa.Array | pa.ChunkedArray) else i for i in ids))
    return pa.array(flat if not flat or isinstance(flat[0], str) else [str(i) for i in flat], pa.string())


def _pick(names: list[str], index: npt.NDArray[np.int32]) -> pa.Array:
    """names[index] per row, null where index < 0."""
    if not names:
        return pa.nulls(index.size, pa.string())
    return pc.take(pa.array(names, pa.string()), pa.array(index, mask=index < 0))


def _attributes(keys: Callable[[Sequence[str], int], pa.Array], declared: Mapping[str, str],
                per_item: list[Mapping[str, object]], sizes: npt.NDArray[np.int64]) -> list[pa.Array]:
    """Three maps (number, string, boolean) of the declared attributes; a missing value is left out."""
    n = int(sizes.sum())
    out = []
    for kind, value_type in (("number", pa.float64()), ("string", pa.string()), ("boolean", pa.bool_())):
        names = [name for name, k in declared.items() if k == kind and any(name in c for c in per_item)]
        if not names:
            out.append(_empty_maps(n, value_type))
            continue
        k = len(names)
        # One column per attribute, converted in C, then interleaved row-major with one take.
        stacked = pa.concat_arrays([_attribute_array([c.get(name) for c in per_item], sizes, value_type)
                                    for name in names])
        order = (np.arange(k, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel()
        values = pc.take(stacked, pa.array(order))
        key_column = keys(names, n)
        if values.null_count == 0:  # every value present: k entries per row
            out.append(pa.MapArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), key_column,
                                               values))
            continue
        present = pc.is_valid(values).to_numpy(zero_copy_only=False)
        counts = present.reshape(n, k).sum(axis=1)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
        keep = pa.array(present)
        out.append(pa.MapArray.from_arrays(offsets, key_column.filter(keep), values.filter(keep)))
    return out


def _attribute_array(columns: list[object], sizes: npt.NDArray[np.int64], value_type: pa.DataType) -> pa.Array:
    """One attribute's columns of every item (float64 with NaN for missing, or a list with None; None: the
    item lacks it) as one array, null where missing."""
    if all(isinstance(c, np.ndarray) and c.dtype.kind == "f" for c in columns):
        stacked: npt.NDArray[np.float64] = np.concatenate(columns)  # type: ignore[arg-type]
        return pa.array(stacked, value_type, mask=np.isnan(stacked))
    parts = []
    for column, size in zip(columns, sizes.tolist(), strict=True):  # items that lack it, or read as lists
        if column is None:
            parts.append(pa.nulls(size, value_type))
        elif isinstance(column, np.ndarray):
            parts.append(pa.array(column, value_type, mask=np.isnan(column) if column.dtype.kind == "f" else None))
        else:
            parts.append(pa.array(column, value_type))
    return pa.concat_arrays(parts)


def _empty_maps(n: int, value_type: pa.DataType) -> pa.MapArray:
    return pa.MapArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()), pa.array([], value_type)
    )
