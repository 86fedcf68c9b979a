"""Append-only JSON-lines file of every payload received; survives restarts."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class PayloadStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._end_cut_line()

    def _end_cut_line(self) -> None:
        """A crash mid-write leaves a last line without its newline: end it, so the next record
        starts on a line of its own instead of being glued to (and lost with) the cut one."""
        try:
            with open(self.path, "rb+") as f:
                if f.seek(0, os.SEEK_END) == 0:
                    return
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
                    f.flush()
                    os.fsync(f.fileno())
        except FileNotFoundError:
            pass

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (so what is printed comes out in the file's order)."""
        with self._lock:
            yield

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and fsync it; call with `locked()` held."""
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            # A notification acknowledged to Alertmanager must not be lost by a crash after it.
            os.fsync(f.fileno())

    def read_all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write; the rest is intact
        return records
