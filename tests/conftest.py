"""Every test: feature caches in a per-session temp folder (never the user's ~/.cache), no
downloads. The `slow` marker (full trainings, the browser) is what `make test-fast` leaves out.
When tests are skipped because a system package is missing, the last lines say which and the
command that installs it."""
from __future__ import annotations

import pytest

# A skip reason that starts with this names a missing system package and its install command.
MISSING = "missing system package:"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ICBPL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("ICBPL_OFFLINE", "1")


def pytest_terminal_summary(terminalreporter) -> None:
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if reason.startswith(MISSING):
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.section("skipped: system packages missing")
        for reason, count in reasons.items():
            terminalreporter.line(f"{count} test(s) skipped, {reason}")
        terminalreporter.line("install them all with: make system-deps")
