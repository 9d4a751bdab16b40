"""Multi-task rankers on one shared input layer: shared-bottom, MMoE and PLE (same forward contract)."""

__all__: list[str] = []
