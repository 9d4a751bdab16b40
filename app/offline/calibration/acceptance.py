"""Calibration acceptance on demo-distribution data, at any size, in bounded memory.

Calibration is done when, on held-out demo data (whose generator drifts segments in the last week),
every task's calibrated calibration ratio lies in [0.97, 1.03] and Field-RCE drops by at least half.
The rarest task needs tens of millions of rows to measure that, so nothing here holds the rows:

1. rows of the demo distribution restricted to days [21, 28), the only days calibration uses, are
   generated chunk by chunk (`synthetic.generate_log` with a day window; chunk k has its own seed);
2. each chunk is encoded by the service's `FeatureEncoder` and scored by the bundle's model.onnx
   through the service's `ModelRunner`, exactly as a request's candidates would be;
3. days [21, 25) feed the fit statistics and days [25, 28) the held-out statistics, the demo's
   split (`app.offline.demo`): two `CalibrationStats` over the segment features;
4. the calibration is fitted from the fit statistics by `fit_statistics`, the code `calibrate fit` runs;
5. held-out calibration ratio and Field-RCE, raw and calibrated, come from the held-out statistics
   (`binned_metrics`).

Memory is bounded by the chunk size, whatever the row count: one chunk's generation, encoding and
scoring (about 1.1 kB per row: peak RSS 0.5 GB at the default 250k-row chunks, 1.3 GB at 1M-row
chunks, the interpreter, numpy and onnxruntime included), plus the two statistics tables
(2 x 4 tasks x 16 cells x 4096 bins x 3 sums x 8 bytes = 25 MB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.artifacts.calibration import CalibrationFile, FittedFor
from app.artifacts.loading import load_manifest
from app.artifacts.manifest import ModelManifest
from app.offline.calibration.binned_metrics import BinnedMetrics, binned_metrics
from app.offline.calibration.build import fit_statistics
from app.offline.calibration.fit import FitConfig
from app.offline.calibration.source import MISSING
from app.offline.calibration.stats import CalibrationStats
from app.offline.progress import progress_bar
from app.offline.synthetic import generator as syn
from app.serving.columns import CandidateColumns
from app.serving.features import FeatureEncoder
from app.serving.model_runner import ModelRunner

__all__ = [
    "FIT_DAYS",
    "HELD_OUT_DAYS",
    "RATIO_BAND",
    "AcceptanceConfig",
    "AcceptanceResult",
    "ScoredChunk",
    "run_acceptance",
    "score_chunks",
]

FIT_DAYS = (21.0, 25.0)
HELD_OUT_DAYS = (25.0, float(syn.DAYS))
RATIO_BAND = (0.97, 1.03)
MODEL_BATCH = 1 << 16


@dataclass(frozen=True, slots=True)
class AcceptanceConfig:
    """rows: impressions generated in days [21, 28), in chunks of `chunk_rows`.

    Chunk k is drawn from a seed derived from (seed, k), so the rows depend on seed and chunk_rows.
    """

    rows: int = 1_000_000
    chunk_rows: int = 250_000
    seed: int = 7
    shrinkage_prior: float = 30.0
    show_progress: bool = True


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """One chunk: the generated log (labels and masks [R, T] in it), its raw logits [R, T] and input codes."""

    log: syn.DemoLog
    logits: npt.NDArray[np.float64]
    categorical: npt.NDArray[np.int64]  # [R, C] the service's vocabulary codes, in manifest order


@dataclass(frozen=True, slots=True)
class AcceptanceResult:
    """The fitted calibration, its metrics per task on both splits, and the row counts."""

    calibration: CalibrationFile
    metrics: dict[str, BinnedMetrics]  # per task, on the held-out split
    fit_metrics: dict[str, BinnedMetrics]  # per task, on the fit split itself (in-sample)
    rows: int
    fit_rows: int
    held_out_rows: int
    segments: tuple[str, ...]

    def passes(self, task: str) -> tuple[bool, dict[str, bool]]:
        """(calibrated ratio inside [0.97, 1.03], feature -> Field-RCE at most half of the raw one)."""
        m = self.metrics[task]
        return (RATIO_BAND[0] <= m.ratio_after <= RATIO_BAND[1],
                {f: m.field_rce_after[f] <= m.field_rce_before[f] / 2 for f in self.segments})


def chunk_seed(seed: int, k: int) -> int:
    """An independent seed per chunk, derived from the run's seed (chunks of nearby runs do not repeat)."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def score_chunks(bundle_dir: Path, manifest: ModelManifest, config: AcceptanceConfig) -> Iterator[ScoredChunk]:
    """Generate days [21, 28) of the demo distribution chunk by chunk and score each with the bundle."""
    encoder = FeatureEncoder(manifest.features)
    runner = ModelRunner(bundle_dir / "model.onnx", manifest)
    for k, start in enumerate(range(0, config.rows, config.chunk_rows)):
        n = min(config.chunk_rows, config.rows - start)
        log = syn.generate_log(n, chunk_seed(config.seed, k), first_day=FIT_DAYS[0], last_day=HELD_OUT_DAYS[1])
        columns: dict[str, list[object] | np.ndarray] = {
            name: log.numeric[:, j] for j, name in enumerate(syn.NUMERIC)
        }
        columns.update({name: log.categorical[name].tolist() for name in syn.CATEGORICAL})
        encoded = encoder.encode(CandidateColumns(len(log), columns), {})
        # Model batches of 64k rows: onnxruntime's arena keeps the largest batch's activations for good.
        logits = np.concatenate([
            runner.run(encoded.numeric[i:i + MODEL_BATCH], encoded.categorical[i:i + MODEL_BATCH])
            for i in range(0, len(log), MODEL_BATCH)
        ]).astype(np.float64)
        yield ScoredChunk(log, logits, encoded.categorical)


def run_acceptance(bundle_dir: Path, config: AcceptanceConfig) -> AcceptanceResult:
    """Score, accumulate both splits, fit on the first, measure on the second; see the module docstring."""
    manifest = load_manifest(bundle_dir)  # checks model.onnx against the manifest's sha256
    tasks = tuple(manifest.task_names())
    segments = tuple(syn.SEGMENTS)
    fit = CalibrationStats(tasks=tasks, segment_features=segments)
    held = CalibrationStats(tasks=tasks, segment_features=segments)
    columns = [f.name for f in manifest.features.categorical]
    # Cells from the service's codes: code 0 (out of vocabulary) is a value without a correction.
    dictionaries = [[MISSING, *manifest.features.categorical[columns.index(s)].vocabulary] for s in segments]
    rows, split_rows = 0, [0, 0]
    with progress_bar(config.show_progress) as bar:
        job = bar.add_task("generating and scoring days 21-28", total=config.rows)
        for chunk in score_chunks(bundle_dir, manifest, config):
            hours = chunk.log.event_hours
            for s, (stats, (first, last)) in enumerate(((fit, FIT_DAYS), (held, HELD_OUT_DAYS))):
                rows_in = np.flatnonzero((hours >= first * 24) & (hours < last * 24))
                codes = [chunk.categorical[rows_in, columns.index(f)] for f in segments]
                cells = stats.cell_ids_encoded(codes, dictionaries, rows_in.size)
                for t, task in enumerate(tasks):
                    stats.add(task, chunk.logits[rows_in, t], chunk.log.labels[rows_in, t],
                              chunk.log.mask[rows_in, t], cells)
                split_rows[s] += rows_in.size
            rows += len(chunk.log)
            bar.advance(job, len(chunk.log))
    return evaluate(fit, held, manifest, config, rows=rows, fit_rows=split_rows[0], held_out_rows=split_rows[1])


def evaluate(
    fit: CalibrationStats, held: CalibrationStats, manifest: ModelManifest, config: AcceptanceConfig, *,
    rows: int, fit_rows: int, held_out_rows: int,
) -> AcceptanceResult:
    """Fit the calibration on `fit` as `calibrate fit` does, and measure it on `held`."""
    fit_config = FitConfig(method="platt", segments=fit.segment_features, shrinkage_prior=config.shrinkage_prior)
    tasks, vocabularies = fit_statistics(fit, {t: f"{manifest.name} output {t!r}" for t in fit.tasks}, fit_config,
                                         manifest=manifest, origin="calibration acceptance")
    calibration = CalibrationFile(
        schema_version=1, version="acceptance", created_at=datetime.now(UTC).replace(microsecond=0), tasks=tasks,
        model=FittedFor(name=manifest.name, version=manifest.version, sha256=manifest.model_sha256),
        notes=(f"acceptance run: global Platt + segments {list(fit.segment_features)} fitted on days"
               f" {FIT_DAYS[0]:g}-{FIT_DAYS[1]:g} ({fit_rows} rows), measured on days {HELD_OUT_DAYS[0]:g}-"
               f"{HELD_OUT_DAYS[1]:g} ({held_out_rows} rows)"),
    )
    return AcceptanceResult(
        calibration=calibration, metrics=binned_metrics(held, calibration, vocabularies),
        fit_metrics=binned_metrics(fit, calibration, vocabularies),
        rows=rows, fit_rows=fit_rows, held_out_rows=held_out_rows, segments=fit.segment_features,
    )
