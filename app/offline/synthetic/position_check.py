"""Does position debiasing recover the true relevance? A synthetic log with a known position bias, two runs.

The log (`generate_log(position_bias=B)`): a logging ranker ordered each request by item popularity,
which the true click logit ignores, and a click's logit dropped by `B * log2(1 + position)`. A plain
model credits popularity with the clicks the top positions caused; a model trained with
`dataset.position` (a training-only tower, neutralised at export) should not. Both are scored on the
test split against the truth the generator knows (`true_p_click`, the click probability without the
position term), request by request:
- ``ndcg@10``: NDCG of the model's click ranking with the true click probabilities as gains;
- ``kendall_tau``: Kendall's tau between the model's click logits and the true probabilities;
- ``popularity_corr``: correlation of the click logit with log popularity (truth: none at equal
  relevance; the plain model's is inflated by the position effect).

    python -m app.offline.synthetic.position_check OUT [--rows 120000] [--bias 1.0] [--epochs 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq

from app.offline.synthetic import generator as syn
from app.offline.synthetic.log_file import write_demo_log
from app.offline.training.encoding import encode_features, feature_schema
from app.offline.training.event_time import event_seconds
from app.offline.training.onnx_export import predict_logits
from app.offline.training.run_folder import RunFolder
from app.offline.training.spec import TrainSpec
from app.offline.training.train import train_spec
from app.serving.features import FeatureEncoder

__all__ = ["position_spec", "relevance_agreement", "run_check"]

LOG_NUMERIC = ("user_activity", "user_age_days", "item_price", "item_age_hours", "item_popularity")


def position_spec(*, debiased: bool, epochs: int = 4, seed: int = 7) -> TrainSpec:
    """A click-only spec of the synthetic log; `debiased` adds `dataset.position: {column: position}`."""
    dataset: dict[str, Any] = {
        "group_id": "request_id", "candidate_id": "item_id", "event_time": "event_time",
        "numeric": [{"name": n, "log": n in LOG_NUMERIC, "default": 0.0} for n in syn.NUMERIC],
        "categorical": list(syn.CATEGORICAL),
        "tasks": [{"name": "click", "label": "click", "label_window_hours": 1.0}],
        "split": {"valid_start": syn.event_time(21 * 24).isoformat(), "test_start": syn.event_time(25 * 24).isoformat(),
                  "label_cutoff": syn.event_time(syn.DAYS * 24 + 48).isoformat()},
    }
    if debiased:
        dataset["position"] = {"column": "position", "buckets": 20, "dropout": 0.1}
    return TrainSpec.model_validate({
        "schema_version": 1, "name": "debiased" if debiased else "plain", "dataset": dataset,
        "training": {"model": {"kind": "shared_bottom", "hidden": [32, 16]}, "epochs": epochs, "batch_size": 512,
                     "learning_rate": 0.003, "seed": seed, "early_stopping_patience": epochs},
    })


def relevance_agreement(run: Path, data: Path, *, k: int = 10) -> dict[str, float]:
    """The run's (served, position-free) click ranking against `true_p_click` on the test split, per request."""
    spec, fitted, model, _ = RunFolder(run).load()
    table = pq.read_table(data)
    seconds = event_seconds(table.column("event_time"), data, "event_time")
    table = table.take(np.flatnonzero(seconds >= fitted.test_start))
    batch = table.combine_chunks().to_batches()[0]
    numeric, categorical = encode_features(
        FeatureEncoder(feature_schema(spec.dataset, fitted, training=True)), batch, spec.dataset, data
    )
    logits = predict_logits(model, numeric, categorical)[:, spec.task_names().index("click")].astype(np.float64)
    truth = table.column("true_p_click").to_numpy()
    popularity = np.log(table.column("item_popularity").to_numpy())
    groups = table.column("request_id").to_numpy()
    ndcg, tau, corr = [], [], []
    for rows in np.split(np.argsort(groups, kind="stable"), np.flatnonzero(np.diff(np.sort(groups))) + 1):
        if len(rows) < 2:
            continue
        ndcg.append(_ndcg(logits[rows], truth[rows], k))
        tau.append(_kendall_tau(logits[rows], truth[rows]))
        corr.append(float(np.corrcoef(logits[rows], popularity[rows])[0, 1]))
    return {f"ndcg@{k}": float(np.nanmean(ndcg)), "kendall_tau": float(np.nanmean(tau)),
            "popularity_corr": float(np.nanmean(corr)), "requests": float(len(ndcg))}


def run_check(out: Path, *, rows: int, bias: float, epochs: int, seed: int = 7) -> dict[str, dict[str, float]]:
    """Write the log, train the plain and the debiased model, score both; label -> agreement."""
    data = write_demo_log(out / "log.parquet", rows, seed, position_bias=bias)
    result = {}
    for debiased in (False, True):
        spec = position_spec(debiased=debiased, epochs=epochs, seed=seed)
        run = train_spec(spec, data, out / spec.name, memory="memory", show_progress=False).run
        result[spec.name] = relevance_agreement(run, data)
    return result


def _ndcg(scores: npt.NDArray[np.float64], gains: npt.NDArray[np.float64], k: int) -> float:
    discount = 1.0 / np.log2(np.arange(min(k, len(gains))) + 2.0)
    dcg = float((gains[np.argsort(-scores, kind="stable")][: len(discount)] * discount).sum())
    ideal = float((np.sort(gains)[::-1][: len(discount)] * discount).sum())
    return dcg / ideal if ideal > 0 else float("nan")


def _kendall_tau(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Kendall's tau-a of two score vectors (pairs tied in either count as 0)."""
    i, j = np.triu_indices(len(a), 1)
    return float(np.mean(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--bias", type=float, default=1.0, help="B in click logit - B * log2(1 + position)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    result = run_check(args.out, rows=args.rows, bias=args.bias, epochs=args.epochs, seed=args.seed)
    print("| model | ndcg@10 vs true relevance | Kendall tau vs true relevance | corr(click logit, log popularity) |")
    print("|---|---:|---:|---:|")
    for label, m in result.items():
        print(f"| {label} | {m['ndcg@10']:.4f} | {m['kendall_tau']:.4f} | {m['popularity_corr']:.4f} |")


if __name__ == "__main__":
    main()
