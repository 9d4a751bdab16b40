"""Export the GBT family to one ONNX graph that the unchanged serving runner feeds.

Each task's booster is converted by onnxmltools' LightGBM converter as a *regressor*: its text model
is re-read with the objective renamed `regression`, so the converted graph outputs the raw score (the
logit) instead of a probability; `trees_per_ensemble` trees go into each TreeEnsemble node and the
partial sums are added in double. The graphs are then joined behind the ONNX contract's inputs:

    numeric float32 [B, N], categorical int64 [B, C]
      -> Concat(numeric, Cast<float>(categorical)) [B, N + C]
      -> one converted ensemble per task (+ its offset) [B, 1] each
      -> Concat -> logits float32 [B, T]

Only the default and `ai.onnx.ml` operator sets are used, so onnxruntime alone runs it.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from app.artifacts.manifest import ModelIO
from app.offline.training.gbt.ranker import GBTRanker

__all__ = ["PARITY_TOLERANCE", "export_gbt_onnx", "regressor_view"]

PARITY_TOLERANCE = 1e-5
FEATURES = "features"


def regressor_view(booster: lgb.Booster) -> lgb.Booster:
    """The same trees with the objective renamed `regression`: predictions are raw scores."""
    lines = []
    for line in booster.model_to_string().split("\n"):
        if line.startswith("objective="):
            continue
        if line.startswith("[objective:"):
            line = "[objective: regression]"
        lines.append(line)
        if line.startswith("num_tree_per_iteration="):  # a custom objective's model has no objective line
            lines.append("objective=regression")
    return lgb.Booster(model_str="\n".join(lines))


def _task_graph(booster: lgb.Booster, n_features: int, t: int, trees: int) -> onnx.ModelProto:
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    converted = convert_lightgbm(
        regressor_view(booster),
        name=f"task{t}",
        initial_types=[(FEATURES, FloatTensorType([None, n_features]))],
        zipmap=False,
        # The converter refuses to split an ensemble of at most `trees` trees (one node suffices then).
        split=trees if booster.num_trees() > trees else None,
    )
    model: onnx.ModelProto = compose.add_prefix(converted, prefix=f"t{t}_", rename_inputs=False)
    return model


def export_gbt_onnx(model: GBTRanker, path: Path, n_numeric: int, n_categorical: int, trees_per_ensemble: int) -> None:
    """Write `path`: one graph, inputs and output named as the manifest's `io` declares."""
    io = ModelIO()
    n_features = n_numeric + n_categorical
    nodes = [
        helper.make_node("Cast", [io.categorical_input], ["categorical_float"], to=TensorProto.FLOAT),
        helper.make_node("Concat", [io.numeric_input, "categorical_float"], [FEATURES], axis=1),
    ]
    initializers = []
    opsets: dict[str, int] = {"": 13, "ai.onnx.ml": 1}
    task_outputs = []
    for t, (booster, offset) in enumerate(zip(model.boosters, model.offsets, strict=True)):
        part = _task_graph(booster, n_features, t, trees_per_ensemble)
        for imported in part.opset_import:
            opsets[imported.domain] = max(opsets.get(imported.domain, 1), imported.version)
        nodes += list(part.graph.node)
        initializers += list(part.graph.initializer)
        (output,) = [o.name for o in part.graph.output]
        shifted = f"t{t}_logit"
        initializers.append(numpy_helper.from_array(np.array([[offset]], dtype=np.float32), f"t{t}_offset"))
        nodes.append(helper.make_node("Add", [output, f"t{t}_offset"], [shifted]))
        task_outputs.append(shifted)
    nodes.append(helper.make_node("Concat", task_outputs, [io.output], axis=1))
    graph = helper.make_graph(
        nodes,
        "fusionrank_gbt",
        [
            helper.make_tensor_value_info(io.numeric_input, TensorProto.FLOAT, ["batch", n_numeric]),
            helper.make_tensor_value_info(io.categorical_input, TensorProto.INT64, ["batch", n_categorical]),
        ],
        [helper.make_tensor_value_info(io.output, TensorProto.FLOAT, ["batch", len(model.boosters)])],
        initializer=initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())],
        producer_name="fusionrank",
    )
    onnx_model.ir_version = min(onnx_model.ir_version, 9)  # readable by onnxruntime >= 1.18
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
