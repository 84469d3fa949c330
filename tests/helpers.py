"""What several test modules use: the project's root, the command line as a user runs it, and
small image folders written from scikit-learn's digits."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"


def icbpl_command() -> list[str]:
    """The installed `icbpl` command of this environment (`python -m icbpl_core` if it is missing)."""
    script = Path(sys.executable).with_name("icbpl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "icbpl_core"]


def icbpl(*args, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the command line to its end; with `check`, it must succeed."""
    done = subprocess.run([*icbpl_command(), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def start_icbpl(*args) -> subprocess.Popen:
    return subprocess.Popen([*icbpl_command(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def run_folder(done: subprocess.CompletedProcess | str) -> Path:
    """The run folder `train` printed as stdout's last line."""
    out = done if isinstance(done, str) else done.stdout
    return Path(out.strip().splitlines()[-1])


def wait_until_stopped(run, timeout: float, poll: float = 0.2) -> str:
    """Wait until a run is no longer starting or running (or the timeout); returns its state."""
    import time

    from icbpl_core.store.runs import ACTIVE

    deadline = time.monotonic() + timeout
    while run.state in ACTIVE and time.monotonic() < deadline:
        time.sleep(poll)
    return run.state


def write_digit_pngs(folder: Path, n: int, classes: bool = False) -> None:
    """n digits as 8x8 PNGs: flat, or in class_<digit>/ subfolders."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(n):
        img = Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8), "L")
        target = folder / (f"class_{digits.target[i]}" if classes else "") / f"img_{i:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        img.save(target)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")
