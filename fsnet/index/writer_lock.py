"""One writer per index: a run that publishes a version holds ``<index>/WRITER`` from before it looks at the
versions there until it has published (or failed).

Two runs at once (a scheduled re-index overlapping a manual one) would otherwise both take CURRENT's successor as
their version, write into the same folder, and the one finishing last would index both runs' rows; and a run
removes the versions above CURRENT as an interrupted run's leftovers, which a running one's are not. The second run
stops instead, in one line naming the first (host, process, start) and exit 2; nothing of either is lost.

The file is created only if absent (``Storage.create``: a conditional PUT on S3, a hard link on a local disk), so
exactly one of two runs gets it. A run that died without removing it (SIGKILL, a lost node) leaves it behind: on the
same host a holder whose process is gone is stale and taken over; a holder on another host cannot be checked from
here, and the line says which file to remove once that run is known to be gone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import uuid
from dataclasses import dataclass

from fsnet.errors import FsnetError, StorageError
from fsnet.storage import Storage, join

LOCK_FILE = "WRITER"


class IndexBusy(FsnetError):
    """Another run is writing this index now."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass
class WriterLock:
    storage: Storage
    url: str  # the lock file's
    token: str  # this holder's, in the file: release removes only its own

    @classmethod
    def acquire(cls, storage: Storage, index_url: str) -> "WriterLock":
        """Hold the index's writer lock, taking over a stale one (its holder's process gone, on this host); else
        IndexBusy naming the holder."""
        url = join(index_url, LOCK_FILE)
        token = uuid.uuid4().hex
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "token": token,
        }
        data = json.dumps(record).encode()
        for _ in range(2):  # a stale holder is removed once, then the file is created again
            if storage.create(url, data):
                return cls(storage, url, token)
            try:
                holder = json.loads(storage.read_text(url))
            except (StorageError, json.JSONDecodeError, UnicodeDecodeError):
                holder = None  # removed meanwhile (its run just ended), or not a lock of ours: try again once
            if holder is not None and holder.get("host") == record["host"] and not _alive(int(holder.get("pid", 0))):
                storage.remove(url)  # its process is gone: the run was killed; its leftovers go with the next steps
            elif holder is not None:
                where = "this host" if holder.get("host") == record["host"] else f"host {holder.get('host')}"
                raise IndexBusy(
                    f"{index_url}: another run is writing this index (process {holder.get('pid')} on {where}, "
                    f"since {holder.get('started')}); run again when it has finished, or remove {url} if that run "
                    "is gone"
                )
        raise IndexBusy(f"{index_url}: could not take {url} (another run took it at the same moment); run again")

    def __enter__(self) -> "WriterLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Remove the lock if it is still this holder's."""
        try:
            held = json.loads(self.storage.read_text(self.url)).get("token")
        except (StorageError, json.JSONDecodeError, UnicodeDecodeError):
            return
        if held == self.token:
            self.storage.remove(self.url)
