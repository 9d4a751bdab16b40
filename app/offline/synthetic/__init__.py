"""The synthetic impression log of the demo and the tests: its generator and its Parquet file."""

__all__: list[str] = []
