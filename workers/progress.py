"""A dependency-free progress bar for stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws in place on a terminal; elsewhere (logs, pipes) writes only the final bar."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.interactive = self.stream.isatty()
        self._drawn_at = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.interactive and (now - self._drawn_at >= 0.05 or self.done >= self.total):
            self._draw("\r")
            self._drawn_at = now

    def close(self) -> None:
        self._draw("\r" if self.interactive else "")
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, start: str) -> None:
        filled = self.width * min(self.done, self.total) // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"{start}{self.label}[{bar}] {self.done}/{self.total}")
        self.stream.flush()
