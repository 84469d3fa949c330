"""The engine's errors. Each says what is wrong in the engine's words; `setting` names the
parameter (params.py) or knob that fixes it, so the command line can point at its flag and
the app at its field, each in its own words (cli.hint, the app's state.hint)."""
from __future__ import annotations


class IcbplError(Exception):
    """Base of the engine's errors; `setting` is a parameter name, "cache_dir" or None."""

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ConfigError(IcbplError, ValueError):
    """A run specification that cannot work."""


class ParamError(ConfigError):
    """One parameter's value is out of its declared range or choices.

    str(error) is "<name> <problem>"; `problem` alone ("must be ..., got ...") lets each
    surface name the parameter its own way."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}", setting=name)
        self.problem = problem


class DatasetError(IcbplError, ValueError):
    """A dataset that cannot be loaded; the message says what is missing."""


class BackboneError(IcbplError, ValueError):
    """A backbone that cannot be built; the message says what is missing."""


class RunError(IcbplError, ValueError):
    """A run folder that cannot be used as asked."""


class CacheError(IcbplError, OSError):
    """The feature cache folder cannot be written."""

    def __init__(self, message: str) -> None:
        IcbplError.__init__(self, message, setting="cache_dir")


class DiskFull(IcbplError, OSError):
    """A write failed for want of space; the message names the path."""
