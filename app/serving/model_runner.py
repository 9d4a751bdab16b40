"""Run an exported ranker with onnxruntime: explicit threads, one session per model version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.artifacts.manifest import ModelManifest
from app.errors import ArtifactError

__all__ = ["ModelRunner"]


class ModelRunner:
    """An onnxruntime session for one model.onnx; `run` is safe to call from several threads."""

    def __init__(self, model_path: Path, manifest: ModelManifest, *, intra_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ArtifactError(
                model_path, "", f"onnxruntime cannot load the model: {exc}", "re-export the model"
            ) from None
        io = manifest.io
        self._inputs = (io.numeric_input, io.categorical_input)
        self._output = io.output
        self._check_signature(model_path, manifest)

    def _check_signature(self, model_path: Path, manifest: ModelManifest) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        for name in self._inputs:
            if name not in inputs:
                raise ArtifactError(
                    model_path, "inputs", f"graph has no input {name!r} (has {sorted(inputs)})",
                    "export with the input names the manifest's `io` declares",
                )
        if self._output not in outputs:
            raise ArtifactError(
                model_path, "outputs", f"graph has no output {self._output!r} (has {sorted(outputs)})",
                "export with the output name the manifest's `io` declares",
            )
        width = outputs[self._output].shape[-1]
        if isinstance(width, int) and width != len(manifest.tasks):
            raise ArtifactError(
                model_path, "outputs", f"output has {width} columns, the manifest names {len(manifest.tasks)} tasks",
                "export one logit column per manifest task, in order",
            )

    def run(
        self, numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """numeric float32 [B, N], categorical int64 [B, C] -> logits float32 [B, T]."""
        feeds = {self._inputs[0]: numeric, self._inputs[1]: categorical}
        (logits,) = self._session.run([self._output], feeds)
        return np.asarray(logits)
