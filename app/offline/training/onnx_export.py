"""Export a trained ranker to one ONNX file and prove that onnxruntime computes what torch does."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from torch import nn

from app.artifacts.manifest import ModelIO
from app.errors import ArtifactError

__all__ = [
    "PARITY_BATCH_SIZES",
    "PARITY_TOLERANCE",
    "export_onnx",
    "parity_max_abs_diff",
    "predict_logits",
    "strip_debug_metadata",
]

PARITY_BATCH_SIZES = (1, 7, 1000)
PARITY_TOLERANCE = 1e-4
OPSET = 18


def export_onnx(
    model: nn.Module, path: Path, numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64]
) -> None:
    """Write `path` (weights inside, no side .data file) with a dynamic batch axis.

    numeric/categorical: an example batch of at least 2 rows (the exporter specialises a batch of 1).
    """
    if len(numeric) < 2:
        raise ValueError("the example batch needs at least 2 rows")
    io = ModelIO()
    model.eval()
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        # The dynamo exporter emits deprecation chatter from its own dependencies.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(numeric[:2]), torch.from_numpy(categorical[:2])),
            str(path),
            input_names=[io.numeric_input, io.categorical_input],
            output_names=[io.output],
            dynamic_shapes=({0: batch}, {0: batch}),
            external_data=False,
            opset_version=OPSET,
            verbose=False,
        )
    strip_debug_metadata(path)


def strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node debugging metadata from the file at `path`, in place.

    The dynamo exporter annotates every node with the Python stack trace (absolute paths of the
    checkout and of the venv, line numbers), module paths and FX names. They do not change what the
    graph computes, but they make the bytes (and the manifest's sha256) depend on where and from
    which source lines the export ran; without them the same weights give the same file.
    """
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            graphs += [a.g for a in node.attribute if a.HasField("g")]
            graphs += [g for a in node.attribute for g in a.graphs]
        for info in (*graph.input, *graph.output, *graph.value_info):
            del info.metadata_props[:]
        for tensor in graph.initializer:
            del tensor.metadata_props[:]
        del graph.metadata_props[:]
    for function in model.functions:
        for node in function.node:
            del node.metadata_props[:]
    onnx.save(model, str(path))


def parity_max_abs_diff(
    model: nn.Module,
    path: Path,
    numeric: npt.NDArray[np.float32],
    categorical: npt.NDArray[np.int64],
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_TOLERANCE,
) -> float:
    """Largest |torch - onnxruntime| logit difference over held-out batches of each size.

    Raises `ArtifactError` above `tolerance`: such an export is never written into a bundle.
    """
    io = ModelIO()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for size in batch_sizes:
        if size > len(numeric):
            raise ValueError(f"parity batch {size} needs at least {size} held-out rows, got {len(numeric)}")
        n, c = numeric[:size], categorical[:size]
        (onnx_logits,) = session.run([io.output], {io.numeric_input: n, io.categorical_input: c})
        worst = max(worst, float(np.max(np.abs(onnx_logits - predict_logits(model, n, c)))))
    if worst > tolerance:
        raise ArtifactError(
            path, "parity", f"onnxruntime differs from torch by {worst:.3g} (tolerance {tolerance:g})",
            "check for operators the exporter does not translate faithfully",
        )
    return worst


@torch.no_grad()
def predict_logits(
    model: nn.Module, numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64], batch_size: int = 65536
) -> npt.NDArray[np.float32]:
    """Torch's logits [R, T] in eval mode, in batches (the reference side of the parity check)."""
    model.eval()
    out = [
        model(torch.from_numpy(numeric[i : i + batch_size]), torch.from_numpy(categorical[i : i + batch_size]))
        for i in range(0, len(numeric), batch_size)
    ]
    return torch.cat(out).numpy()
