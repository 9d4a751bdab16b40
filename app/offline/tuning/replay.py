"""Replay logged candidate sets under a policy with the service's own composition code.

Each group is one request: `compose_utility`, `evaluate_guardrails` and `apply_slate` from
`app.serving` run exactly as in `app.serving.scorer.score`, on the logged calibrated predictions
instead of the model's (the logs already hold them, so no model file is needed). Context
attributes for overrides come from group-level log columns (`context={"user_segment":
"user_tenure"}`); utility and guardrails are row-wise and run once per distinct context, the slate
rules once per group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.manifest import FeatureSchema, ModelManifest, NumericFeature, TaskSpec, TrainingWindow
from app.artifacts.policy import PolicyFile
from app.errors import PolicyError
from app.offline.progress import progress_bar
from app.offline.tuning.logs import CandidateLog, LogError
from app.serving.attributes import AttributeColumns
from app.serving.guardrails import evaluate_guardrails
from app.serving.policy import CompiledPolicy
from app.serving.ranking import rank_slate
from app.serving.slate import apply_slate
from app.serving.utility import compose_utility

__all__ = ["PolicyReplay", "compile_for_log", "log_attributes", "replay_policy"]

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class PolicyReplay:
    """What a policy would have served for every logged group (flat rows sorted by group)."""

    label: str
    policy: PolicyFile
    utility: npt.NDArray[np.float64]  # [R] the policy's utility
    guardrail: IntArray  # [R] index of the first guardrail that removed the row, -1 if none
    slate_rule: IntArray  # [R] index into `slate_rules` of the rule that dropped the row, -1 if none
    slate_rules: tuple[str, ...]
    served: IntArray  # [G, K] flat rows in answer order, -1 past the end of the slate


def compile_for_log(policy: PolicyFile, log: CandidateLog, path: Path | str) -> CompiledPolicy:
    """Compile a policy against the log's tasks (the logs stand in for the model manifest)."""
    for i, term in enumerate(policy.utility):
        if term.task not in log.tasks:
            raise PolicyError(path, f"utility[{i}].task", f"task {term.task!r} has no p_{term.task} column in"
                              f" {log.path}", f"add the column to the log or use one of {list(log.tasks)}")
    for i, guard in enumerate(policy.guardrails):
        if guard.task is not None and guard.task not in log.tasks:
            raise PolicyError(path, f"guardrails[{i}].task", f"task {guard.task!r} has no p_{guard.task} column in"
                              f" {log.path}", f"add the column to the log or use one of {list(log.tasks)}")
    for name in policy.attributes:
        if name not in log.columns:
            raise LogError(log.path, name, f"attribute {name!r} declared by {path} is not a column of the log",
                           "log the attribute for every candidate (empty where unknown)")
    return CompiledPolicy(policy, _stand_in_manifest(policy, log))


def _stand_in_manifest(policy: PolicyFile, log: CandidateLog) -> ModelManifest:
    """A manifest whose tasks are the log's prediction columns: compiling a policy reads only the
    task names, and the logs already hold calibrated predictions, so no model file is needed."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return ModelManifest(
        schema_version=1, name=policy.model.name, version=policy.model.version,
        tasks=[TaskSpec(name=t, polarity="positive") for t in log.tasks],
        features=FeatureSchema(numeric=[NumericFeature(name="logged_predictions")], categorical=[]),
        model_sha256="0" * 64, training_window=TrainingWindow(start=epoch, end=epoch), created_at=epoch,
        code_version=f"logs {log.path}",
    )


def log_attributes(log: CandidateLog, declared: Mapping[str, str]) -> AttributeColumns:
    """The declared attributes as the service reads them: numbers as float64 with NaN for missing,
    strings and booleans as lists of Python values with None for missing."""
    columns: AttributeColumns = {}
    for name, kind in declared.items():
        values = log.columns[name]
        if kind == "number":
            if values.dtype.kind not in "iuf":
                raise LogError(log.path, name, "is declared number by the policy but is not numeric",
                               "write numbers (empty where unknown)")
            columns[name] = values.astype(np.float64)
            continue
        items = values.tolist()
        if kind == "vector":
            columns[name] = _vectors(log, name, items)
            continue
        want = str if kind == "string" else bool
        if not all(v is None or type(v) is want for v in items):
            raise LogError(log.path, name, f"is declared {kind} by the policy but holds other values",
                           f"write {kind} values (empty where unknown)")
        columns[name] = items
    return columns


def _vectors(log: CandidateLog, name: str, items: list[Any]) -> npt.NDArray[np.float64]:
    """A vector attribute's column: [R, D] float64, NaN rows where missing."""
    present = [i for i, v in enumerate(items) if v is not None]
    lengths = {len(items[i]) if isinstance(items[i], (list, tuple, np.ndarray)) else -1 for i in present}
    if len(lengths) > 1 or -1 in lengths:
        raise LogError(log.path, name, "is declared vector by the policy but is not a list of numbers of one length",
                       "write one list of numbers per candidate, all of one length (empty where unknown)")
    out = np.full((len(items), lengths.pop() if lengths else 1), np.nan)
    if present:
        out[present] = np.array([list(items[i]) for i in present], dtype=np.float64)
    return out


def replay_policy(
    log: CandidateLog,
    policy: PolicyFile,
    path: Path | str,
    *,
    label: str,
    context: Mapping[str, str] | None = None,
    top_k: int | None = None,
    show_progress: bool = False,
) -> PolicyReplay:
    """Serve every group of `log` under `policy`; `top_k` plays the request's top_k option."""
    compiled = compile_for_log(policy, log, path)
    attributes = log_attributes(log, policy.attributes)
    probabilities = log.predictions[log.mask]  # [R, T] flat rows, in order
    rows = len(probabilities)
    utility = np.zeros(rows)
    first = np.full(rows, -1, dtype=np.intp)
    group_of_row = np.repeat(np.arange(log.n_groups), log.sizes)
    for rows_of_context in _context_classes(log, context or {}, group_of_row):
        ctx = {key: value for key, value in rows_of_context[0].items()}
        idx = rows_of_context[1]
        effective = compiled.resolve(ctx)
        part = {name: _take(col, idx) for name, col in attributes.items()}
        # normalisation (`ranking.normalize`) is within each request: idx holds whole groups, in order
        segments = np.flatnonzero(np.r_[True, np.diff(group_of_row[idx]) != 0]) if compiled.formed else None
        _, utility[idx] = compose_utility(probabilities[idx], part, compiled, effective.weights, segments=segments)
        triggered = evaluate_guardrails(probabilities[idx], part, compiled, effective)
        removed = triggered.any(axis=1)
        if removed.any():  # (a policy without guardrails has no column to take the argmax of)
            first[idx] = np.where(removed, np.argmax(triggered, axis=1), -1)
    ranking = policy.ranking
    rule_names = tuple([r.name for r in policy.slate.max_per_value] + [r.name for r in policy.slate.max_matching]
                       + ([r.name for r in ranking.max_share] if ranking is not None else []))
    slate_rule = np.full(rows, -1, dtype=np.intp)
    limit = _min_defined(top_k, policy.slate.top_k)
    width = min(limit, log.row.shape[1]) if limit is not None else log.row.shape[1]
    served = np.full((log.n_groups, width), -1, dtype=np.intp)
    with progress_bar(show_progress) as bar:
        job = bar.add_task(f"replay {label}", total=log.n_groups)
        for g, (start, size) in enumerate(zip(log.starts.tolist(), log.sizes.tolist(), strict=True)):
            local = {name: _slice(col, start, start + size) for name, col in attributes.items()}
            kept = np.flatnonzero(first[start:start + size] < 0)
            if ranking is None:
                slate = apply_slate(kept, utility[start:start + size], local, policy.slate, limit)
            else:  # the logs carry no request history: nothing seen, no negative feedback
                slate, _ = rank_slate(kept, utility[start:start + size], local, ranking, policy.slate, limit, {})
            served[g, :len(slate.ranked)] = start + slate.ranked
            for dropped, rule in slate.dropped:
                slate_rule[start + dropped] = rule_names.index(rule)
            if g % 256 == 0:
                bar.update(job, completed=g)
        bar.update(job, completed=log.n_groups)
    return PolicyReplay(label, policy, utility, first, slate_rule, rule_names, served)


def _context_classes(
    log: CandidateLog, context: Mapping[str, str], group_of_row: IntArray
) -> list[tuple[dict[str, Any], IntArray]]:
    """Rows grouped by the context their group presents: [(context attributes, flat rows)]."""
    if not context:
        return [({}, np.arange(len(group_of_row)))]
    keys = []
    for name, column in context.items():
        if column not in log.columns:
            raise LogError(log.path, column, f"context column for {name!r} is missing",
                           f"add the column or drop `--context {name}={column}`")
        values = log.columns[column][log.starts]  # the group's first row speaks for the group
        keys.append([v.item() if isinstance(v, np.generic) else v for v in values])
    per_group = list(zip(*keys, strict=True))
    classes: dict[tuple[Any, ...], list[int]] = {}
    for g, key in enumerate(per_group):
        classes.setdefault(key, []).append(g)
    names = list(context)
    out = []
    for key, groups in classes.items():
        rows = np.flatnonzero(np.isin(group_of_row, groups))
        out.append(({n: v for n, v in zip(names, key, strict=True) if v is not None}, rows))
    return out


def _take(column: Any, index: IntArray) -> Any:
    if isinstance(column, np.ndarray):
        return column[index]
    return [column[i] for i in index]


def _slice(column: Any, start: int, stop: int) -> Any:
    return column[start:stop]


def _min_defined(*values: int | None) -> int | None:
    defined = [v for v in values if v is not None]
    return min(defined) if defined else None
