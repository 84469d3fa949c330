"""Small results kept by key as JSON in a folder of the cache: the auto recipe's choices and the
K suggestions, so that asking again with the same images and settings answers at once.

    CHOICES = ResultCache("choices", Choice.from_dict)
    CHOICES.read(key, cache_dir)            # the Choice, or None (absent or unreadable)
    CHOICES.write(key, choice, cache_dir)   # written atomically
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from . import atomic
from .files import cache_root


class ResultCache:
    def __init__(self, folder: str, from_dict: Callable[[dict], Any]) -> None:
        self.folder, self.from_dict = folder, from_dict

    def path(self, key: str, cache_dir) -> Path:
        return Path(cache_dir or cache_root()) / self.folder / f"{key}.json"

    def read(self, key: str, cache_dir):
        try:
            return self.from_dict(json.loads(self.path(key, cache_dir).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, key: str, result, cache_dir) -> None:
        path = self.path(key, cache_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(path, result.to_dict())
