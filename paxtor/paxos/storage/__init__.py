"""The durable acceptor log, by concern.

- `paxtor.paxos.storage.log`: `AcceptorLog`, group commit and its writer;
- `paxtor.paxos.storage.sync_thread`: where a write+fsync runs (the hub or a thread);
- `paxtor.paxos.storage.recovery`: replay at open, and the rebuild that resumes a failed log;
- `paxtor.paxos.storage.compaction`: a snapshot installed durably, older files removed;
- `paxtor.paxos.storage.files`: durable directories, segments, the `Disk` tests fault;
- `paxtor.paxos.storage.errors`: what it raises.

The file format is pure and lives in `paxtor.paxos.log_format`.
"""

from paxtor.paxos.storage.errors import AcceptorLogClosed, AcceptorLogCorrupt, AcceptorLogError, AcceptorLogFailed
from paxtor.paxos.storage.files import fsync_directory, make_directory_durably
from paxtor.paxos.storage.log import SYNC_BUCKETS, AcceptorLog, Durability, Ticket
from paxtor.paxos.storage.sync_thread import SYNC_DWELL, SyncPlacement

__all__ = [
    "AcceptorLog",
    "AcceptorLogClosed",
    "AcceptorLogCorrupt",
    "AcceptorLogError",
    "AcceptorLogFailed",
    "Durability",
    "SYNC_BUCKETS",
    "SYNC_DWELL",
    "SyncPlacement",
    "Ticket",
    "fsync_directory",
    "make_directory_durably",
]
