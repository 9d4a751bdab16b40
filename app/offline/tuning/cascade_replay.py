"""`simulate --cascade-store`: what a policy's two-stage cascade loses against scoring every candidate.

Both bundles rescore the logged features (`app.offline.ope.model_replay.rescored_log`, so the log must
carry the features: a joined log). The reference is the policy replayed on the main model's predictions
for every candidate; the cascade keeps, per request, the `top_n` candidates with the best first-stage
score (the first stage's calibrated `task`, or the policy's utility on its predictions, as served by
`app.serving.cascade`) and replays the policy on the main model's predictions of those only. Reported
at k, means over requests:
- ``overlap@k``: share of the reference top k the cascade's top k holds;
- ``ndcg@k``: NDCG of the cascade's top k, gains = the reference utility rank (k for the reference's
  first, 1 for its k-th, 0 beyond);
- ``utility@k``: summed main-model utility of each top k, and ``utility_ratio`` cascade / reference
  (over requests where the reference sum is positive);
- ``same_top_k``: share of requests whose top k is the same list; ``cut_share``: share of candidates cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.artifacts.policy import PolicyFile
from app.errors import PolicyError
from app.offline.ope.model_replay import rescored_log
from app.offline.tuning.logs import CandidateLog
from app.offline.tuning.replay import replay_policy

__all__ = ["cascade_markdown", "cascade_quality", "keep_rows"]


def cascade_quality(
    log: CandidateLog, policy: PolicyFile, path: Path | str, model_store: Path, *, k: int,
    top_k: int | None = None, context: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The cascade of `policy` against scoring every candidate with its main model (see the module doc)."""
    spec = policy.cascade
    if spec is None:
        raise PolicyError(path, "cascade", "the policy declares no cascade to replay",
                          "add `cascade:` to the policy, or drop --cascade-store")
    heavy = rescored_log(log, model_store / policy.model.name / policy.model.version, policy.calibration_version).log
    light = rescored_log(log, model_store / spec.model.name / spec.model.version, spec.calibration_version).log
    plain = policy.model_copy(update={"cascade": None})
    if spec.task is not None:
        first = light.predictions[light.mask][:, light.task_index(spec.task, field="cascade.task")]
    else:
        first = replay_policy(light, plain, path, label="first stage", context=context).utility
    keep = _top_n_rows(log, first, spec.top_n)
    reference = replay_policy(heavy, plain, path, label="all candidates", context=context, top_k=top_k)
    cascaded_log, rows = keep_rows(heavy, keep)
    cascaded = replay_policy(cascaded_log, plain, path, label="cascade", context=context, top_k=top_k)
    served = np.where(cascaded.served >= 0, rows[np.maximum(cascaded.served, 0)], -1)  # back to the log's rows
    out: dict[str, Any] = dict(_compare(reference.served[:, :k], served[:, :k], reference.utility, k))
    out.update({
        "k": k, "top_n": spec.top_n, "task": spec.task,
        "first_stage": f"{spec.model.name}/{spec.model.version} calibration {spec.calibration_version}",
        "model": f"{policy.model.name}/{policy.model.version} calibration {policy.calibration_version}",
        "requests": int(log.n_groups), "requests_cut": int((log.sizes > spec.top_n).sum()),
        "cut_share": float(1.0 - keep.sum() / max(len(keep), 1)),
    })
    return out


def keep_rows(log: CandidateLog, keep: npt.NDArray[np.bool_]) -> tuple[CandidateLog, npt.NDArray[np.intp]]:
    """The log with only the flat rows where `keep` [R] is True, and those rows' positions in `log`."""
    rows = np.flatnonzero(keep)
    group_of_row = np.repeat(np.arange(log.n_groups), log.sizes)
    sizes = np.bincount(group_of_row[rows], minlength=log.n_groups).astype(np.intp)
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.intp)
    width = int(sizes.max()) if len(sizes) else 0
    mask = np.arange(width)[None, :] < sizes[:, None]
    row = np.where(mask, starts[:, None] + np.arange(width), -1).astype(np.intp)
    flat_predictions = log.predictions[log.mask][rows]
    flat_labels = log.labels[log.mask][rows]
    predictions = np.zeros((log.n_groups, width, len(log.tasks)))
    labels = np.full((log.n_groups, width, len(log.tasks)), np.nan)
    predictions[mask], labels[mask] = flat_predictions, flat_labels
    kept = dataclasses.replace(
        log, starts=starts, sizes=sizes, row=row, mask=mask, predictions=predictions, labels=labels,
        columns={name: values[rows] for name, values in log.columns.items()},
    )
    return kept, rows


def _top_n_rows(log: CandidateLog, scores: npt.NDArray[np.float64], top_n: int) -> npt.NDArray[np.bool_]:
    """[R] True for each request's `top_n` best first-stage scores (NaN last), as the service picks them."""
    keep = np.zeros(len(scores), dtype=bool)
    keyed = -np.where(np.isnan(scores), -np.inf, scores)
    for start, size in zip(log.starts.tolist(), log.sizes.tolist(), strict=True):
        if size <= top_n:
            keep[start:start + size] = True
        else:
            keep[start + np.argsort(keyed[start:start + size], kind="stable")[:top_n]] = True
    return keep


def _compare(
    reference: npt.NDArray[np.intp], cascade: npt.NDArray[np.intp], utility: npt.NDArray[np.float64], k: int
) -> dict[str, float]:
    """Means over requests of the cascade's top k [G, k] against the reference's (flat rows, -1 = empty)."""
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    overlap, ndcg, same, u_ref, u_cas, ratios = [], [], [], [], [], []
    for ref, cas in zip(reference.tolist(), cascade.tolist(), strict=True):
        ref = [r for r in ref if r >= 0]
        cas = [c for c in cas if c >= 0]
        if not ref:
            continue
        gain = {r: float(len(ref) - i) for i, r in enumerate(ref)}
        ideal = float(sum(g * d for g, d in zip(sorted(gain.values(), reverse=True), discount, strict=False)))
        ndcg.append(sum(gain.get(c, 0.0) * d for c, d in zip(cas, discount, strict=False)) / ideal)
        overlap.append(len(set(ref) & set(cas)) / len(ref))
        same.append(float(ref == cas))
        ref_sum, cas_sum = float(utility[ref].sum()), float(utility[cas].sum()) if cas else 0.0
        u_ref.append(ref_sum)
        u_cas.append(cas_sum)
        if ref_sum > 0:
            ratios.append(cas_sum / ref_sum)
    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return {
        f"overlap@{k}": mean(overlap), f"ndcg@{k}": mean(ndcg), "same_top_k": mean(same),
        f"utility@{k}_all": mean(u_ref), f"utility@{k}_cascade": mean(u_cas), "utility_ratio": mean(ratios),
    }


def cascade_markdown(label: str, quality: Mapping[str, Any]) -> str:
    """The report.md section of one policy's cascade replay."""
    k = quality["k"]
    return (
        f"\n## Cascade of {label}: quality lost against scoring every candidate\n\n"
        f"First stage {quality['first_stage']} passes top_n={quality['top_n']} to {quality['model']};"
        f" {quality['requests_cut']} of {quality['requests']} requests had more candidates"
        f" ({quality['cut_share']:.1%} of all candidates cut).\n\n"
        f"| metric | value |\n|---|---|\n"
        f"| overlap@{k} | {quality[f'overlap@{k}']:.4f} |\n| ndcg@{k} vs all | {quality[f'ndcg@{k}']:.4f} |\n"
        f"| same top {k} | {quality['same_top_k']:.4f} |\n"
        f"| utility@{k} all / cascade | {quality[f'utility@{k}_all']:.5g} / {quality[f'utility@{k}_cascade']:.5g} |\n"
        f"| utility ratio | {quality['utility_ratio']:.4f} |\n"
    )
