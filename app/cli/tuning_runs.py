"""The bodies of `fusionrank tune ...` and `fusionrank simulate`: parse, run, write, summarise.

`app/cli/tune.py` only declares the options and imports this module when a command runs (it needs the
offline extra). Argument problems raise
`ValueError` with a message naming the option and the fix (the CLI shows it as a usage error).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.artifacts.loading import parse_artifact, read_yaml
from app.artifacts.policy import PolicyFile
from app.errors import ArtifactError, PolicyError
from app.offline.ope.evaluate import OpeSettings, ope_markdown, read_joined_log
from app.offline.tuning.cascade_replay import cascade_markdown, cascade_quality
from app.offline.tuning.constrained import ConstrainedTuner
from app.offline.tuning.frontier import frontier_markdown, plot_frontier, sweep_bounds, sweep_frontier
from app.offline.tuning.logs import CandidateLog, read_candidate_log
from app.offline.tuning.report import plot_pareto, simulation_markdown
from app.offline.tuning.simulation import (
    LocalReplayer,
    LogReplayer,
    PolicyVariant,
    emit_draft,
    grid_variants,
    model_replay,
    off_policy_estimates,
    pareto_front,
    tuned_variant,
)
from app.offline.tuning.targeting import NdcgGapTuner, RegretTuner

__all__ = [
    "LogReader", "model_replay_markdown", "ope_settings", "parse_pairs", "run_constrained", "run_fraction_tuner",
    "run_simulate",
]

ACCEPTED_ERROR = 0.02  # absolute fraction error sum under which targets count as reached


def parse_pairs(values: Sequence[str], option: str) -> dict[str, float]:
    """["click=0.5", ...] -> {"click": 0.5}; a malformed item names the option and the fix."""
    out: dict[str, float] = {}
    for item in values:
        name, sep, number = item.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = float("nan")
        if not sep or not name or value != value:
            raise ValueError(f"{option} {item!r}: expected NAME=NUMBER, e.g. {option} click=0.5")
        if name in out:
            raise ValueError(f"{option}: {name!r} is given twice")
        out[name] = value
    return out


def parse_grid(values: Sequence[str]) -> dict[str, list[float]]:
    """["click=0.5,1,2", ...] -> {"click": [0.5, 1.0, 2.0]}."""
    out: dict[str, list[float]] = {}
    for item in values:
        name, sep, numbers = item.partition("=")
        try:
            weights = [float(v) for v in numbers.split(",")]
        except ValueError:
            weights = []
        if not sep or not name or not weights:
            raise ValueError(f"--grid {item!r}: expected TERM=W1,W2,..., e.g. --grid hide_penalty=-1,-2,-4")
        out[name] = weights
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


LogReader = Callable[[list[str] | None], CandidateLog]  # tasks (None: all) -> the tuner's columns of the log


def run_fraction_tuner(
    kind: str, logs: Path, targets: Sequence[str], *, negative: Sequence[str], k: int | None, labels: bool,
    out: Path, show_progress: bool, reader: LogReader | None = None, epsilon: float | None = None,
) -> dict[str, Any]:
    """`tune ndcg-gap` (kind "ndcg_gap") or `tune regret`: fit, write weights.json, return its content."""
    wanted = parse_pairs(targets, "--target")
    unknown = [t for t in negative if t not in wanted]
    if unknown:
        raise ValueError(f"--negative {unknown}: only tasks given a --target can be negative")
    log = (reader or _local_reader(logs))(list(wanted))
    common: dict[str, Any] = {"targets": wanted, "negative": set(negative), "k": k, "show_progress": show_progress,
                              "epsilon": epsilon}
    tuner = NdcgGapTuner(**common) if kind == "ndcg_gap" else RegretTuner(labels=labels, **common)
    result = tuner.fit(log).to_dict()
    result["reached"] = result["abs_error_sum"] <= ACCEPTED_ERROR
    _write_json(out, result)
    return result


def run_constrained(
    logs: Path, *, tasks: Sequence[str], negative: Sequence[str], primary: str, labels: bool, bounds: Sequence[str],
    k: int, holdout: float, confidence: float, sweep: int, out: Path, show_progress: bool,
    reader: LogReader | None = None,
) -> dict[str, Any]:
    """`tune constrained`: fit at the given bounds, optionally sweep the first bound; write files."""
    limits = parse_pairs(bounds, "--bound")
    log = (reader or _local_reader(logs))(list(dict.fromkeys([*tasks, *limits])) if tasks else None)
    utility_tasks = list(tasks) or list(log.tasks)

    def make(bound_map: dict[str, float]) -> ConstrainedTuner:
        return ConstrainedTuner(tasks=utility_tasks, primary=primary, bounds=bound_map, negative=set(negative),
                                labels=labels, k=k, holdout=holdout, confidence=confidence,
                                show_progress=show_progress)

    first = next(iter(limits))
    points = []
    if sweep > 0:
        tuner = make(limits)
        values = sorted({*sweep_bounds(log, tuner, sweep), limits[first]})
        points = sweep_frontier(log, lambda b: make({**limits, first: b}), values)
    tuner = make(limits)
    # the answers for tighter bounds also meet this one: start from the best of them
    tuner.warm_starts = [p.weights for p in points if p.bound <= limits[first]]
    result = tuner.fit(log).to_dict()
    if points:
        png = plot_frontier(points, primary, first, k, out.with_name(f"{out.stem}_frontier.png"))
        table = frontier_markdown(points, primary, first, k)
        md = out.with_name(f"{out.stem}_frontier.md")
        md.write_text(f"# Frontier: NDCG@{k} of {primary} vs mean p_{first} in the top {k}\n\n"
                      f"Logs `{logs}`; each row is a constrained fit on the training groups, measured on the"
                      f" held-out groups.\n\n{table}\n![frontier]({png.name})\n", encoding="utf-8")
        result["frontier"] = {"png": str(png), "markdown": str(md), "points": [p.__dict__ for p in points]}
    _write_json(out, result)
    return result


def _local_reader(logs: Path) -> LogReader:
    def read(tasks: list[str] | None) -> CandidateLog:
        return read_candidate_log(logs, tasks=tasks, attributes=False)

    return read


def _load_policy_file(path: Path) -> PolicyFile:
    return parse_artifact(PolicyFile, read_yaml(path), path, error=PolicyError)


def run_simulate(
    logs: Path | str, policies: Sequence[Path], *, grid: Sequence[str], weights: Sequence[Path] = (), out: Path,
    k: int, top_k: int | None, context: Sequence[str], segments: Sequence[str], mix: Sequence[str], x: str | None,
    y: str | None, emit_policy: bool, pick: str | None, emit_version: str | None, show_progress: bool,
    replayer: LogReplayer | None = None, ope: OpeSettings | None = None, model: Path | None = None,
    model_calibration: str | None = None, cascade_store: Path | None = None,
) -> dict[str, Any]:
    """Replay policies (plus a weight grid and tuned weights on the first) on the logs; write report.md,
    pareto.png and results.json (and a draft policy). `replayer` (e.g. Spark's) replaces reading `logs` here.
    With `ope`, every variant's value is also estimated off-policy from the logged propensities; with `model`,
    that bundle rescores the logged features and every variant is replayed on its predictions too; with
    `cascade_store`, every policy with a `cascade` is replayed with both of its bundles from that store and
    compared with scoring every candidate with its main model (`app.offline.tuning.cascade_replay`)."""
    if not policies:
        raise ValueError("give at least one --policy (the --grid varies the first one)")
    if (ope is not None or model is not None or cascade_store is not None) and replayer is not None:
        raise ValueError("--ope, --model and --cascade-store run on the local engine: give --logs JOINED.parquet"
                         " without --engine spark")
    context_map = {name: column for name, column in (_split(c, "--context") for c in context)}
    local: CandidateLog | None = None
    log: LogReplayer
    if replayer is None:
        joined = ope is not None or model is not None or cascade_store is not None
        local = read_joined_log(Path(logs)) if joined else read_candidate_log(Path(logs))
        log = LocalReplayer(local)
    else:
        log = replayer
    variants: list[PolicyVariant] = []
    for path in policies:
        policy = _load_policy_file(path)
        label = f"{policy.surface}/{policy.version}"
        if any(v.label == label for v in variants):
            label = f"{label}#{len(variants) + 1}"
        variants.append(PolicyVariant(label, policy, str(path)))
    variants += grid_variants(variants[0], parse_grid(grid)) if grid else []
    for path in weights:
        tuned = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        if not isinstance(tuned, dict) or not isinstance(tuned.get("signed_weights"), dict):
            raise ValueError(f"--weights {path}: not a weights.json written by `fusionrank tune`"
                             " (needs a `signed_weights` object)")
        form = (str(tuned.get("form", "sum")), tuned.get("epsilon"))
        variants.append(tuned_variant(variants[0], tuned["signed_weights"], f"tuned:{path.stem}", str(path),
                                      form=form))
    segment_columns = list(segments) or [c for c in ("user_tenure",) if c in log.columns]
    mix_columns = list(mix) or [c for c in ("category", "item_type", "sponsored") if c in log.columns]
    for column in [*segment_columns, *mix_columns]:
        if column not in log.columns:
            raise ValueError(f"column {column!r} is not in {logs}; use one of {sorted(log.columns)}")
    base = variants[0].policy
    negatives = [t.task for t in base.utility if t.weight < 0]
    positives = [t.task for t in base.utility if t.weight > 0]
    x_metric = x or f"expected:{(negatives or [log.tasks[-1]])[0]}"
    y_metric = y or f"ndcg@{k}:{(positives or [log.tasks[0]])[0]}"
    segment_metrics = [f"ndcg@{k}:{t}" for t in log.tasks] + [f"expected:{t}" for t in log.tasks]
    result = log.simulate(variants, k=k, top_k=top_k, context=context_map, mix=mix_columns,
                          segments=segment_columns, segment_metrics=segment_metrics, show_progress=show_progress)
    first = result.metrics[variants[0].label]
    for metric in (x_metric, y_metric):
        if metric not in first:
            raise ValueError(f"unknown metric {metric!r} for --x/--y; use one of {sorted(first)}")
    points = {label: (m[x_metric], m[y_metric]) for label, m in result.metrics.items()}
    front = pareto_front(points)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_pareto(result, x_metric, y_metric, front, out / "pareto.png")
    emitted = None
    chosen = None
    if emit_policy:
        same = {v.label for v in variants if v.policy.utility == variants[0].policy.utility}
        chosen = pick or _pick(points, front, variants[0].label, same)
        match = [v for v in variants if v.label == chosen]
        if not match:
            raise ValueError(f"--pick {chosen!r}: no such variant; use one of {[v.label for v in variants]}")
        values = result.metrics[chosen]
        note = f"Simulated on {logs}: {x_metric}={values[x_metric]:.5g}, {y_metric}={values[y_metric]:.5g}."
        emitted = str(emit_draft(match[0], out / "policies", version=emit_version,
                                 taken=_versions_in_use(match[0].policy.surface, policies, out / "policies"),
                                 note=note))
    report = simulation_markdown(result, log_path=str(logs), x=x_metric, y=y_metric, front=front, plot=png.name,
                                 emitted=emitted)
    estimates = None
    if ope is not None and local is not None:
        settings = replace(ope, segments=ope.segments or tuple(segment_columns))
        estimates = off_policy_estimates(local, variants, settings, top_k=top_k, context=context_map)
        report += "\n## Off-policy estimates\n\n" + "\n".join(
            ope_markdown(label, value) for label, value in estimates.items())
    replayed = None
    if model is not None and local is not None:
        replay_ope = replace(ope, segments=ope.segments or tuple(segment_columns)) if ope is not None else None
        replayed = model_replay(local, variants, model, k=k, calibration=model_calibration, ope=replay_ope,
                                top_k=top_k, context=context_map)
        report += model_replay_markdown(replayed)
    cascades = None
    if cascade_store is not None and local is not None:
        cascades = {v.label: cascade_quality(local, v.policy, v.source, cascade_store, k=k, top_k=top_k,
                                             context=context_map) for v in variants if v.policy.cascade is not None}
        if not cascades:
            raise ValueError("--cascade-store: no --policy declares a `cascade` to replay")
        report += "".join(cascade_markdown(label, quality) for label, quality in cascades.items())
    (out / "report.md").write_text(report, encoding="utf-8")
    summary = {"k": k, "x": x_metric, "y": y_metric, "pareto": front, "metrics": result.metrics,
               "segments": result.segments, "variants": {v.label: v.source for v in variants},
               "emitted_policy": emitted, "picked": chosen}
    if estimates is not None:
        summary["ope"] = estimates
    if replayed is not None:
        summary["model_replay"] = replayed
    if cascades is not None:
        summary["cascade"] = cascades
    _write_json(out / "results.json", summary)
    return summary


def model_replay_markdown(replayed: dict[str, Any]) -> str:
    """The report.md section of `--model`: predictions and slates of the replayed bundle against the served."""
    lines = ["", f"## Replay of {replayed['model']} on the logged features", "",
             "| task | served mean p | replayed mean p | mean abs diff | label mean | served p/label |"
             " replayed p/label |", "|---|---|---|---|---|---|---|"]
    for task, m in replayed["predictions"].items():
        lines.append(f"| {task} | {m['served_mean']:.4g} | {m['replayed_mean']:.4g} | {m['mean_abs_diff']:.4g} |"
                     f" {m['label_mean']:.4g} | {m['served_ratio']:.3g} | {m['replayed_ratio']:.3g} |")
    lines += ["", f"| policy | top-{replayed['k']} overlap with served | mean rank shift | same first |",
              "|---|---|---|---|"]
    for label, r in replayed["rankings"].items():
        lines.append(f"| {label} | {r['topk_overlap']:.3f} | {r['mean_rank_shift']:.3f} | {r['same_first']:.3f} |")
    for label, value in replayed.get("ope", {}).items():
        lines += ["", ope_markdown(f"{label} with {replayed['model']}", value)]
    return "\n".join(lines) + "\n"


def ope_settings(k: int, metrics: Sequence[str], confidence: float, bootstrap: int, seed: int) -> OpeSettings:
    """The `--ope-*` options, checked: the interval's confidence lies strictly between 0 and 1."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"--confidence {confidence}: give the interval's confidence in [0.5, 1), e.g. 0.95")
    return OpeSettings(k=k, metrics=tuple(dict.fromkeys(metrics)), confidence=confidence, n_bootstrap=bootstrap,
                       seed=seed)


def _versions_in_use(surface: str, policies: Sequence[Path], drafts: Path) -> set[str]:
    """Versions of `surface` among the replayed policy files, the files beside them and earlier drafts."""
    taken = set()
    for path in [*policies, *drafts.joinpath(surface).glob("*.yaml")]:
        for sibling in [path, *path.parent.glob("*.yaml")]:
            try:
                policy = _load_policy_file(sibling)
            except ArtifactError:
                continue  # not a policy (or not a valid one): it holds no version
            if policy.surface == surface:
                taken.add(policy.version)
    return taken


def _pick(points: dict[str, tuple[float, float]], front: list[str], base: str, same: set[str]) -> str:
    """Default variant to emit: on the Pareto front and with other weights than the base, the best y
    among those no worse than the base on x; failing that, the front's lowest x; failing that, the base."""
    others = [n for n in front if n not in same]
    no_worse = [n for n in others if points[n][0] <= points[base][0]]
    if no_worse:
        return max(no_worse, key=lambda n: points[n][1])
    return min(others, key=lambda n: points[n][0]) if others else base


def _split(item: str, option: str) -> tuple[str, str]:
    name, sep, column = item.partition("=")
    if not sep or not name or not column:
        raise ValueError(f"{option} {item!r}: expected NAME=COLUMN, e.g. {option} user_segment=user_tenure")
    return name, column
