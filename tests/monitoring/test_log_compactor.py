"""Hot Arrow files of the served log become whole Parquet files: in a low-priority child, again after a
crash (idempotent), and in the writer thread itself when the child falls behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.monitoring.log_compactor import Compactor, compact_root, convert, final_name
from app.monitoring.log_files import LogFiles, open_filesystem

SCHEMA = pa.schema([("x", pa.float64()), ("name", pa.string())], metadata={b"fusionrank.log": b"served"})


def _sealed(root: Path, batches: int = 3) -> list[str]:
    sealed: list[str] = []
    fs, base = open_filesystem(str(root))
    files = LogFiles(fs, base, "served", SCHEMA, rotate_bytes=1 << 30, rotate_seconds=60, hot=True,
                     on_sealed=sealed.append)
    for i in range(batches):
        files.write("surface=home/date=2026-01-01/hour=00",
                    pa.record_batch([pa.array(np.arange(5.0) + i), pa.array(["a"] * 5)], schema=SCHEMA))
    assert list(root.rglob(".*.arrows.tmp")) and not list(root.rglob("*.parquet"))  # open: hidden, Arrow
    files.close_all()
    return sealed


def test_a_sealed_file_converts_once_to_the_same_rows(tmp_path: Path) -> None:
    (sealed,) = _sealed(tmp_path)
    assert Path(sealed).name.startswith(".") and sealed.endswith(".arrows")
    assert not list(tmp_path.rglob("*.parquet"))  # sealed, still hidden
    assert convert(sealed) == 15
    table = pq.read_table(final_name(sealed))
    assert table["x"].to_pylist() == [float(v) for i in range(3) for v in np.arange(5.0) + i]
    assert table.schema.metadata[b"fusionrank.log"] == b"served"
    assert convert(sealed) == 0 and compact_root(tmp_path) == []  # done: nothing left to convert
    assert pq.read_table(tmp_path / "served").num_rows == 15 and not list(tmp_path.rglob(".*"))


def test_the_child_converts_what_it_is_handed_and_what_a_dead_writer_left(tmp_path: Path) -> None:
    left = _sealed(tmp_path)  # sealed before the compactor started: a killed server's
    compactor = Compactor(str(tmp_path))
    compactor.start()
    for sealed in _sealed(tmp_path, batches=2):
        compactor.seal(sealed)
    assert compactor.stop(timeout=60)
    assert not list(tmp_path.rglob(".*.arrows"))
    assert pq.read_table(tmp_path / "served").num_rows == 15 + 10
    assert Path(final_name(left[0])).is_file()


def test_a_writer_whose_child_is_behind_converts_itself(tmp_path: Path) -> None:
    compactor = Compactor(str(tmp_path), max_pending=0)  # never started: every file is converted in place
    (sealed,) = _sealed(tmp_path)
    compactor.seal(sealed)
    assert Path(final_name(sealed)).is_file() and not Path(sealed).exists()
    assert compactor.stop(timeout=1)


def test_a_writer_whose_child_died_converts_itself(tmp_path: Path) -> None:
    compactor = Compactor(str(tmp_path))
    compactor.start()
    process = compactor._process
    assert process is not None
    process.kill()
    process.wait(10)
    (sealed,) = _sealed(tmp_path)
    compactor.seal(sealed)
    assert Path(final_name(sealed)).is_file() and not Path(sealed).exists()
    assert compactor.stop(timeout=1)
