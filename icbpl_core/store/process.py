"""Whether the process a run records is still alive."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """Whether a process is alive on this machine (a zombie counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, TypeError):
        return False
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def alive_here(record: dict) -> bool:
    """A {"pid", "host"} record of a process on this machine that is still alive."""
    return bool(record) and record.get("host") == socket.gethostname() and pid_alive(record.get("pid"))


def on_other_host(record: dict) -> bool:
    return bool(record.get("host")) and record.get("host") != socket.gethostname()
