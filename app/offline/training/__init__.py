"""`fusionrank train` and `export`: spec + log -> run folder -> servable bundle (torch, offline only).

Modules: `spec` (the YAML spec), `tabular` (streamed files), `encoding` (fitted statistics, model
inputs), `batches` (shuffled mini-batches), `models` (shared-bottom, MMoE, PLE), `losses` (masked
per-task losses), `constraints` (augmented Lagrangian), `loop` (the epoch loop), `evaluation`,
`run_folder` (what a run writes), `train` (the command), `onnx_export` and `bundle` (the export).
"""

__all__: list[str] = []
