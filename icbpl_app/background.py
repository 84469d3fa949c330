"""A command-line job the Data & model page starts in the background and polls (the auto recipe's
choice, the K suggestion): one per set of options, in <runs dir>/<kind>/<key>/ with its log, its
pid and the JSON result the command writes with --out. The key hashes the options, so two tabs
asking the same thing share one job.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from icbpl_core import params
from icbpl_core.store.process import pid_alive

from .processes import spawn

RESULT, LOG = "result.json", "job.log"


def options(values: dict, names: tuple[str, ...]) -> list[str]:
    """Command-line options for the draft's values of the parameters `names`."""
    args = []
    for p in params.on("cli"):
        if p.name not in names:
            continue
        value = values.get(p.name)
        if p.type is bool:
            args += [p.flag] if value is not None and value != p.default else []
        elif value is not None:
            args += [p.flag, repr(value) if isinstance(value, float) else str(value)]
    return args


@dataclass
class Job:
    folder: Path
    progress_prefix: str            # the command's progress lines on stderr start with this

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def state(self) -> str:
        """none (never asked), running, done or failed."""
        if self.result() is not None:
            return "done"
        pid = self._pid()
        if pid is None:
            return "none"
        return "running" if pid_alive(pid) else "failed"

    def result(self) -> dict | None:
        try:
            return json.loads((self.folder / RESULT).read_text())
        except (OSError, ValueError):
            return None

    def result_as(self, from_dict):
        """The result read by `from_dict` (Choice.from_dict, ...); None when absent or not one."""
        data = self.result()
        try:
            return None if data is None else from_dict(data)
        except (TypeError, KeyError, ValueError):
            return None

    @property
    def progress(self) -> str:
        """The last progress line, or the error of a failed job."""
        for line in reversed(self._log().splitlines()):
            if line.startswith("error: ") or line.startswith("icbpl: error: "):
                return line.split("error: ", 1)[1]
            if line.startswith(self.progress_prefix):
                return line.removeprefix(self.progress_prefix)
        return "starting"

    def _pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text())
        except (OSError, ValueError):
            return None

    def _log(self) -> str:
        try:
            return (self.folder / LOG).read_text(errors="replace")[-20_000:]
        except OSError:
            return ""


def job_for(runs_dir: Path, kind: str, args: list[str], progress_prefix: str) -> Job:
    key = hashlib.sha256(json.dumps(args).encode()).hexdigest()[:16]
    return Job(Path(runs_dir) / kind / key, progress_prefix)


def start(job: Job, command: str, args: list[str]) -> Job:
    """`icbpl COMMAND ARGS --out result.json` for `job`, unless it is done or running already."""
    if job.state in ("done", "running"):
        return job
    job.folder.mkdir(parents=True, exist_ok=True)
    threads = {} if os.environ.get("OMP_NUM_THREADS") else {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) - 1))}
    proc = spawn("icbpl_core", [command, *args, "--out", str(job.folder / RESULT)], job.folder / LOG, threads)
    (job.folder / "pid").write_text(str(proc.pid))
    return job
