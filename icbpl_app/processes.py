"""Background processes the app starts (training jobs, projections): detached from the
Streamlit script run and the browser tab, output appended to a log file, reaped when they end."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from icbpl_core.store.clock import iso

# Processes this app process started, kept so they are reaped (no zombies) once they end.
_CHILDREN: dict[int, subprocess.Popen] = {}


def reap() -> None:
    """Collect the exit status of finished child processes started here."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)


def spawn(module: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `python -m module args...` in its own session, stdout and stderr appended to `log`
    after a header line; returns the process."""
    reap()
    command = [sys.executable, "-m", module, *args]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "ab") as handle:
        handle.write(f"--- {iso()} {' '.join(command[1:])}\n".encode())
        handle.flush()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                env=environment, start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    return proc
