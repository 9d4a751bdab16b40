"""Turn sealed hot files of the served log (Arrow IPC) into the Parquet files readers see, at low priority.

The served-log writer (`app.monitoring.served_log`) appends Arrow record batches to a hidden hot file and,
when it closes, renames it to a hidden sealed ``.<name>.arrows`` (`app.monitoring.log_files`). Encoding
Parquet costs more CPU than building the rows, so it is done here, in a child process at nice 19: on a busy
replica it runs in the CPU time serving leaves, and it never holds the server's GIL. `convert` writes
``.<name>.parquet.<pid>.tmp`` next to the sealed file, renames it to ``<name>.parquet`` and deletes the sealed
file. Converting a file twice gives the same final file, so a converter that dies mid-way, or two that
take the same file, lose nothing: a sealed file left behind (the server was killed, the child died) is
converted by the next compactor to start on that root (it scans for them first), or by
`fusionrank logs compact`.

`Compactor` is the parent's side: it starts the child (`python -m app.monitoring.log_compactor ROOT`),
hands it each sealed path on its standard input, and bounds the backlog: when `max_pending` handed-over
files are still unconverted, the writer thread converts the next one itself (the writer slows down, its
queue fills, and requests are dropped and counted instead of filling the disk). So it does when the child
is not running (it died): the files the dead child held stay sealed until the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pyarrow as pa

from app.monitoring.log_files import HOT_SUFFIX, parquet_writer

__all__ = ["Compactor", "compact_root", "convert", "final_name"]

log = logging.getLogger("fusionrank.served_log")

_ROW_GROUP_ROWS = 32_768


def final_name(sealed: str) -> str:
    """``<folder>/.<name>.arrows`` -> ``<folder>/<name>.parquet``."""
    folder, _, file = sealed.rpartition("/")
    return f"{folder}/{file[1:-len(HOT_SUFFIX)]}.parquet"


def convert(sealed: str) -> int:
    """Write the Parquet file of one sealed hot file and delete it; the rows written (0: already done)."""
    final = final_name(sealed)
    temp = f"{final.rpartition('/')[0]}/.{final.rpartition('/')[2]}.{os.getpid()}.tmp"
    rows = 0
    try:
        source = pa.memory_map(sealed)
    except FileNotFoundError:  # another converter finished it
        return 0
    with source:
        reader = pa.ipc.open_stream(source)
        with parquet_writer(temp, reader.schema) as writer:
            pending: list[pa.RecordBatch] = []
            count = 0
            for batch in reader:
                pending.append(batch)
                count += batch.num_rows
                if count >= _ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, reader.schema))
                    rows, pending, count = rows + count, [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending, reader.schema))
                rows += count
    os.replace(temp, final)
    with contextlib.suppress(FileNotFoundError):
        os.remove(sealed)
    return rows


def compact_root(root: Path) -> list[str]:
    """Convert every sealed hot file under `root` (the log path); the Parquet files written."""
    done = []
    for sealed in sorted(root.rglob(f".*{HOT_SUFFIX}")):
        if convert(str(sealed)):
            done.append(final_name(str(sealed)))
    return done


class Compactor:
    """The served log's child compactor process, started by the writer thread."""

    def __init__(self, root: str, max_pending: int = 4) -> None:
        self.root, self.max_pending = root, max_pending
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: list[str] = []
        self._warned = False

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own module, the configured log path
            [sys.executable, "-m", "app.monitoring.log_compactor", self.root], stdin=subprocess.PIPE,
            close_fds=True,
        )
        with contextlib.suppress(OSError):  # low priority from the start (the child renices itself too)
            os.setpriority(os.PRIO_PROCESS, self._process.pid, 19)

    def seal(self, sealed: str) -> None:
        """Hand a sealed file over; convert it here when the child is `max_pending` files behind."""
        self._pending = [p for p in self._pending if os.path.exists(p)]
        if len(self._pending) >= self.max_pending:
            convert(sealed)
            return
        process = self._process
        if process is not None and process.poll() is None:
            try:
                stdin: IO[bytes] = process.stdin  # type: ignore[assignment]
                stdin.write(sealed.encode() + b"\n")
                stdin.flush()
                self._pending.append(sealed)
                return
            except OSError:  # it died between the poll and the write
                pass
        if not self._warned:  # never started, or died: what it held stays sealed for the next start
            log.warning("the served-log compactor is not running: the writer thread encodes Parquet itself")
            self._warned = True
        convert(sealed)

    def stop(self, timeout: float) -> bool:
        """Close the child's input (it converts what it holds, then exits); True when it finished in time."""
        process, self._process = self._process, None
        if process is None:
            return True
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the served-log compactor did not finish within %.0f s; it goes on converting after exit,"
                      " or `fusionrank logs compact` converts what it leaves", timeout)
            return False
        return True


def main(argv: list[str]) -> int:
    """The child: convert what an earlier run left under the root, then each path read from stdin, until EOF
    (its parent closing stdin, or dying). It ignores SIGTERM and SIGINT, which a process group's stop sends
    to it and its parent alike: the parent's drain still hands it the files it closes."""
    os.nice(19)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = Path(argv[0])
    compact_root(root)
    for line in sys.stdin.buffer:
        path = line.decode().strip()
        if not path:
            continue
        started = time.monotonic()
        try:
            convert(path)
        except Exception:  # one bad file must not stop the others; it stays sealed for `logs compact`
            log.exception("could not convert %s", path)
        log.debug("converted %s in %.2f s", path, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
