"""Fixtures of the CLI tests: the tuning tests' synthetic logs (written once per session), shared with
tests/offline/tuning rather than written twice."""

from tests.offline.tuning.conftest import demo_shaped_log_path, segmented_log_path, small_log_path, uneven_log_path

__all__ = ["demo_shaped_log_path", "segmented_log_path", "small_log_path", "uneven_log_path"]
