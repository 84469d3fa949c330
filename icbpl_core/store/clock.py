"""Timestamps as the run store writes them: ISO 8601 in UTC, to the second."""
from __future__ import annotations

import time
from datetime import datetime, timezone


def iso(t: float | None = None) -> str:
    """`t` (seconds since the epoch; default now) as an ISO 8601 UTC timestamp."""
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).isoformat(timespec="seconds")


def seconds_since(stamp: str | None) -> float | None:
    """Seconds from an ISO timestamp to now, or None when it cannot be read."""
    try:
        return max(0.0, (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds())
    except (TypeError, ValueError):
        return None
