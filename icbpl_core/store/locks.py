"""Advisory file locks (flock), shared by every process on this machine: the app's tabs,
its background jobs and the command line."""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import IcbplError


class Busy(IcbplError):
    """Another process holds the lock."""


@contextmanager
def file_lock(path: str | Path, timeout: float | None = 30.0, poll: float = 0.05):
    """Hold an exclusive lock on `path` (created if missing); wait at most `timeout` seconds
    (None: as long as it takes), then raise Busy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise Busy(f"{path.parent} is busy (another process holds {path.name}); "
                               "try again in a moment") from None
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(path: str | Path) -> bool:
    """Whether some process holds the lock on `path` right now."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
