"""The gradient-boosted family (`training.model.kind: gbt`): one LightGBM booster per task.

Modules: `params` (the spec block), `ranker` (the trained boosters as a model with the networks'
call signature), `fit` (per-task training with label masks, weights and early stopping), `moo` (the
Moo-GBT constrained objective and its dual trajectory), `onnx` (one ONNX graph with a [B, T] logits
output, served by the unchanged runner). Nothing is imported here, so `spec` can import `params`.
"""

__all__: list[str] = []
