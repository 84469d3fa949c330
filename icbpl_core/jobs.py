"""Training jobs: the app launches, cancels, resumes and reattaches to runs, each one a
subprocess running the command line (`python -m icbpl_core ...`) that outlives the
Streamlit script run (and the browser tab) that started it.

    run = launch(runs_dir, spec, request_id="...")   # a new run folder, training in the background
    state(run)                                       # starting / running / finished / failed / ...
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

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from . import atomic
from .runs import Run, create_run, list_runs, open_run

LOG_NAME = "train.log"
JOB_NAME = "job.json"
LOCK_NAME = ".job.lock"
DIR_LOCK_NAME = ".icbpl-launch.lock"
REQUESTS_DIR = ".requests"
ACTIVE = ("starting", "running")
RESUMABLE = ("cancelled", "interrupted", "failed")
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Processes this app process started, kept so they are reaped (no zombies) once they end.
_CHILDREN: dict[int, subprocess.Popen] = {}


class JobError(RuntimeError):
    """A job request that cannot be honoured; the message says why and what to do."""


class DuplicateJob(JobError):
    def __init__(self, message: str, run: Run) -> None:
        super().__init__(message)
        self.run = run


# -- processes -----------------------------------------------------------------------------------

def reap() -> None:
    """Collect the exit status of finished child processes started here."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)


def pid_alive(pid: int | None) -> bool:
    """Whether a process is alive on this machine (a zombie counts as dead)."""
    reap()
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _file_lock(path: Path, timeout: float = 30.0):
    """An exclusive advisory lock (flock) on `path`, shared by every process on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise JobError(f"{path.parent} is busy (another tab or process holds {path.name}); "
                                   "try again in a moment") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- state ---------------------------------------------------------------------------------------

def job_info(run: Run) -> dict:
    try:
        return json.loads(run.file(JOB_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _job_alive(job: dict) -> bool:
    return bool(job) and job.get("host") == socket.gethostname() and pid_alive(job.get("pid"))


def status(run: Run) -> dict:
    """The run's status with the job folded in: state is one of starting, running, finished,
    failed, cancelled, interrupted. 'starting': the job's process is up but training has not
    written its status yet (imports, opening the data)."""
    reap()
    job = job_info(run)
    raw = _read_status(run)
    if raw is None:
        if _job_alive(job):
            return {"state": "starting", "pid": job.get("pid"), "host": job.get("host"),
                    "started_at": job.get("launched_at")}
        out = {"state": "interrupted"}
        if job.get("cancel_requested_at"):
            out = {"state": "cancelled", "error": "cancelled before training started"}
        elif job:
            out["error"] = "the training process ended before it started training; see the log"
        return out
    out = run.status()
    if out.get("state") == "running" and out.get("host") == socket.gethostname() \
            and not pid_alive(out.get("pid")):
        out = {**out, "state": "interrupted"}
    # A newer job (resume) whose process has not written its status yet.
    if out.get("state") in RESUMABLE and _job_alive(job) \
            and job.get("launched_at", "") >= (raw.get("updated_at") or ""):
        out = {**out, "state": "starting", "pid": job.get("pid")}
    if out.get("state") == "interrupted" and job.get("cancel_requested_at") \
            and job.get("cancel_requested_at", "") >= (raw.get("updated_at") or ""):
        out = {**out, "state": "cancelled"}
    return out


def state(run: Run) -> str:
    return status(run)["state"]


def is_active(run: Run) -> bool:
    return state(run) in ACTIVE


def _read_status(run: Run) -> dict | None:
    try:
        return json.loads(run.file("status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# -- launching -----------------------------------------------------------------------------------

def worker_threads() -> int:
    """PyTorch threads of a training job: all cores but one, which stays with the app and the
    browser. With every core, the worker's threads spin against them: default digits took 240 s
    in the app against 56 s with one of this 2-core machine's threads (docs/BENCHMARKS.md)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _spawn(run: Run, args: list[str], kind: str) -> int:
    command = [sys.executable, "-m", "icbpl_core", *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(worker_threads()))
    with open(run.file(LOG_NAME), "ab") as log:
        log.write(f"--- {_now()} {kind}: {' '.join(command[1:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    previous = job_info(run)
    atomic.write_json(run.file(JOB_NAME), {
        "pid": proc.pid, "host": socket.gethostname(), "kind": kind, "command": command,
        "launched_at": _now(), "attempt": int(previous.get("attempt", 0)) + 1})
    return proc.pid


def _request_path(runs_dir: Path, request_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", request_id)[:100]
    return runs_dir / REQUESTS_DIR / f"{safe}.json"


def launch(runs_dir: str | Path, spec, request_id: str | None = None) -> Run:
    """Start training `spec` (a RunSpec) in a new run folder; returns the run at once.

    The same request_id twice (a double click, a rerun, a reload) returns the first run.
    A configuration identical to one already training raises DuplicateJob."""
    from .pipeline import ConfigError

    runs_dir = Path(runs_dir).absolute()
    try:
        spec = spec.resolved()
        spec.train.validate()
    except (ConfigError, ValueError) as exc:
        raise JobError(str(exc)) from exc
    config = spec.to_dict()
    with _file_lock(runs_dir / DIR_LOCK_NAME):
        if request_id:
            seen = _request_path(runs_dir, request_id)
            if seen.is_file():
                try:
                    return open_run(json.loads(seen.read_text())["run"])
                except Exception:  # noqa: BLE001 - a stale record: launch anew
                    pass
        for other in list_runs(runs_dir):
            if other.config == config and is_active(other):
                raise DuplicateJob(f"an identical run is already training: {other.id}", other)
        run = create_run(runs_dir, config)
        with _file_lock(run.file(LOCK_NAME)):
            _spawn(run, ["resume", str(run.path)], "train")
        if request_id:
            atomic.write_json(_request_path(runs_dir, request_id), {"run": str(run.path), "at": _now()})
    return run


def resume(run: Run) -> int:
    """Continue a cancelled, interrupted or failed run from its last checkpoint; returns the pid."""
    with _file_lock(run.file(LOCK_NAME)):
        current = state(run)
        if current in ACTIVE:
            raise JobError(f"run {run.id} is already {current}")
        if current == "finished":
            raise JobError(f"run {run.id} has already finished; start a new run to train again")
        return _spawn(run, ["resume", str(run.path)], "resume")


def cancel(run: Run) -> bool:
    """Ask the run's process to stop (SIGTERM); it finishes the current step, writes
    state 'cancelled' and can be resumed. Returns False when nothing was running."""
    with _file_lock(run.file(LOCK_NAME)):
        st = status(run)
        if st["state"] not in ACTIVE:
            return False
        pid = st.get("pid")
        if not pid or st.get("host", socket.gethostname()) != socket.gethostname():
            raise JobError(f"run {run.id} is running on another machine ({st.get('host')}); stop it there")
        job = job_info(run)
        if job:
            atomic.write_json(run.file(JOB_NAME), {**job, "cancel_requested_at": _now()})
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True


def wait(run: Run, timeout: float, poll: float = 0.2) -> str:
    """Wait until the run is no longer starting/running (or the timeout); returns its state."""
    deadline = time.monotonic() + timeout
    while True:
        current = state(run)
        if current not in ACTIVE or time.monotonic() > deadline:
            return current
        time.sleep(poll)


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
    st = st or status(run)
    if st.get("state") == "failed":
        return st.get("error") or _last_error_line(run) or "the training process failed; see the log"
    if st.get("state") == "interrupted":
        return st.get("error") or _last_error_line(run) or \
            "the training process stopped without finishing (killed, or the machine restarted)"
    if st.get("state") == "cancelled":
        return st.get("error") or "cancelled"
    return None


def _last_error_line(run: Run) -> str | None:
    for line in reversed(log_tail(run, 60).splitlines()):
        line = line.strip()
        if line.startswith("error:") or re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line):
            return line.removeprefix("error:").strip()
    return None
