"""The control plane: what each surface serves, how that changes, and the files that persist it.

`Registry` owns the lock, every install of a new serving snapshot, each surface's declared rollout
file (`policies/<surface>/rollout.yaml`: written by admin changes under a lock with compare-and-swap on
its generation, applied whole by every replica's watcher; see `app.control.declared` and
`app.control.rollout_state`), the audit trail and the rollback history; `PolicyWatcher` feeds it the
file changes; `GoldenBatch` checks a
binding on its bundle's golden batch before it serves; `load_snapshot` builds the start-up snapshot.
The control plane imports the hot path (`app.serving`) and the file contracts (`app.artifacts`),
never the HTTP layer (`app.api`) or the wire protocol (`app.protocol`): the golden-batch decoder is
handed in by whoever builds the registry.
"""

from app.control.audit import PolicyChange
from app.control.lifecycle import Served, Triple
from app.control.loader import BundleCache, load_snapshot
from app.control.registry import Registry
from app.control.store import describe_store, served_from_files
from app.control.switching import SnapshotHolder
from app.control.warmup import DryRun, GoldenBatch, GoldenDecoder
from app.control.watcher import PolicyWatcher

__all__ = [
    "BundleCache",
    "DryRun",
    "GoldenBatch",
    "GoldenDecoder",
    "PolicyChange",
    "PolicyWatcher",
    "Registry",
    "Served",
    "SnapshotHolder",
    "Triple",
    "describe_store",
    "load_snapshot",
    "served_from_files",
]
