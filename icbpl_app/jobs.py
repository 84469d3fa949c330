"""Training jobs: the app launches, cancels, resumes and reattaches to runs, each one a
subprocess running the command line (`python -m icbpl_core ...`) that outlives the
Streamlit script run (and the browser tab) that started it.

    run = launch(runs_dir, spec, request_id="...")   # a new run folder, training in the background
    run.state                                        # starting / running / finished / failed / ...
    cancel(run)                                      # SIGTERM: the run stops cleanly, state 'cancelled'
    resume(run)                                      # continues a stopped run from its last epoch

How a launch works: the app creates the run folder (config.json, exactly what `train`
would write) and starts `python -m icbpl_core resume RUN_DIR` in it, which trains from
scratch when there is no checkpoint yet. So the folder is known before the process
starts, and its stdout/stderr go to RUN_DIR/train.log from the first byte. job.json
records the process (pid, host, command) until the run writes its own status.json.

Several browser tabs, several app processes: one job per run folder. Launch requests
carry an id (one per click); a request seen before returns the run it created, never a
second one. An identical configuration that is already training is refused. Both checks
and the start happen under a lock file in the runs directory; resume and cancel take a
lock file in the run folder, and a run whose process is alive is never started twice.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
from contextlib import contextmanager
from pathlib import Path

from icbpl_core.errors import IcbplError
from icbpl_core.store import atomic
from icbpl_core.store.clock import iso
from icbpl_core.store.locks import Busy, file_lock
from icbpl_core.store.process import on_other_host
from icbpl_core.store.runs import ACTIVE, Run, create_run, list_runs, open_run, writable_folder

from .processes import spawn
from .state import explain, message

LOG_NAME = "train.log"
LOCK_NAME = ".job.lock"
DIR_LOCK_NAME = ".icbpl-launch.lock"
REQUESTS_DIR = ".requests"


class JobError(RuntimeError):
    """A job request that cannot be honoured; the message says why and what to do."""


class DuplicateJob(JobError):
    def __init__(self, message: str, run: Run) -> None:
        super().__init__(message)
        self.run = run


# -- launching -----------------------------------------------------------------------------------

def worker_threads(processes: int = 1) -> int:
    """PyTorch threads of each training process: all cores but one, which stays with the app and
    the browser, shared between the processes; with every core, the worker's threads spin against
    them (docs/BENCHMARKS.md#app-training-time)."""
    return max(1, ((os.cpu_count() or 2) - 1) // max(1, processes))


def _spawn(run: Run, kind: str, gpus: int | None = None) -> int:
    """`python -m icbpl_core resume RUN_DIR [--gpus N]` (which trains from scratch when there is no
    checkpoint yet), recorded in the run's job.json; a resume uses as many processes as before."""
    gpus = gpus or int(run.job().get("gpus") or 1)
    env = {} if os.environ.get("OMP_NUM_THREADS") else {"OMP_NUM_THREADS": str(worker_threads(gpus))}
    proc = spawn("icbpl_core", ["resume", str(run.path), *(["--gpus", str(gpus)] if gpus > 1 else [])],
                 run.file(LOG_NAME), env)
    run.record_job(fresh=True, pid=proc.pid, host=socket.gethostname(), kind=kind, command=proc.args,
                   launched_at=iso(), attempt=int(run.job().get("attempt", 0)) + 1, gpus=gpus)
    return proc.pid


@contextmanager
def _lock(path: Path):
    try:
        with file_lock(path):
            yield
    except Busy as exc:
        raise JobError(str(exc)) from None


def _request_path(runs_dir: Path, request_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", request_id)[:100]
    return runs_dir / REQUESTS_DIR / f"{safe}.json"


def launch(runs_dir: str | Path, spec, request_id: str | None = None, gpus: int = 1,
           files: dict[str, dict] | None = None) -> Run:
    """Start training `spec` (a RunSpec) in a new run folder, in `gpus` processes (torchrun above
    one); returns the run at once. `files`: JSON files the run folder holds before training starts
    (the auto recipe's choice.json, a retrain's guidance.json).

    The same request_id twice (a double click, a rerun, a reload) returns the first run.
    A configuration identical to one already training raises DuplicateJob."""
    runs_dir = Path(runs_dir).absolute()
    try:
        spec = spec.resolved()
        writable_folder(runs_dir)
    except IcbplError as exc:
        raise JobError(message(exc)) from exc
    config = spec.to_dict()
    with _lock(runs_dir / DIR_LOCK_NAME):
        if request_id:
            seen = _request_path(runs_dir, request_id)
            if seen.is_file():
                try:
                    return open_run(json.loads(seen.read_text())["run"])
                except Exception:  # noqa: BLE001 - a stale record: launch anew
                    pass
        for other in list_runs(runs_dir):
            if other.config == config and other.active:
                raise DuplicateJob(f"an identical run is already training: {other.id}", other)
        run = create_run(runs_dir, config)
        for name, content in (files or {}).items():
            atomic.write_json(run.file(name), content)
        with _lock(run.file(LOCK_NAME)):
            _spawn(run, "train", gpus)
        if request_id:
            atomic.write_json(_request_path(runs_dir, request_id), {"run": str(run.path), "at": iso()})
    return run


def resume(run: Run) -> int:
    """Continue a cancelled, interrupted or failed run from its last checkpoint; returns the pid."""
    with _lock(run.file(LOCK_NAME)):
        current = run.state
        if current in ACTIVE:
            raise JobError(f"run {run.id} is already {current}")
        if current == "finished":
            raise JobError(f"run {run.id} has already finished; start a new run to train again")
        return _spawn(run, "resume")


def cancel(run: Run) -> bool:
    """Ask the run's process to stop (SIGTERM); it finishes the current step, writes
    state 'cancelled' and can be resumed. Returns False when nothing was running."""
    with _lock(run.file(LOCK_NAME)):
        st = run.status()
        if st["state"] not in ACTIVE:
            return False
        pid = st.get("pid")
        if not pid or on_other_host(st):
            raise JobError(f"run {run.id} is running on another machine ({st.get('host')}); stop it there")
        if run.job():
            run.record_job(cancel_requested_at=iso())
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True


def log_tail(run: Run, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last lines of the run's log (progress, warnings, errors of the training process)."""
    path = run.file(LOG_NAME)
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return "\n".join(text.splitlines()[-lines:])


def error_message(run: Run, st: dict | None = None) -> str | None:
    """Why a run failed or stopped, in plain words, or None."""
    from .uploads import uploaded_name, without_upload_paths

    st = st or run.status()
    if st.get("state") == "failed":
        if st.get("error"):
            return explain(st["error"], st.get("setting"), upload=uploaded_name(run.config.get("data_root")) is not None)
        return without_upload_paths(_last_error_line(run) or "the training process failed; see the log")
    if st.get("state") == "interrupted":
        return without_upload_paths(st.get("error") or _last_error_line(run) or
                                    "the training process stopped without finishing (killed, or the machine "
                                    "restarted)")
    if st.get("state") == "cancelled":
        return without_upload_paths(st.get("error") or "cancelled")
    return None


def _last_error_line(run: Run) -> str | None:
    for line in reversed(log_tail(run, 60).splitlines()):
        line = line.strip()
        if line.startswith("error:") or re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line):
            return line.removeprefix("error:").strip()
    return None
