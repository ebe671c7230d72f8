"""Progress of a run: an overall bar and one bar per running job, redrawn on one line of a terminal; plain lines
(one per finished job) otherwise."""
from __future__ import annotations

import sys
import threading

WIDTH = 12


def bar(value: int, total: int, width: int = WIDTH) -> str:
    filled = int(width * value / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    def __init__(self, total: int, stream=None):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.jobs: dict[str, tuple] = {}          # job name -> (value, max, server)
        self.lock = threading.Lock()

    def step(self, job: str, value: int, total: int, server: str) -> None:
        with self.lock:
            self.jobs[job] = (value, total, server)
            self._draw()

    def finished(self, job: str) -> None:
        with self.lock:
            self.jobs.pop(job, None)
            self.done += 1
            self._draw()

    def dropped(self, job: str) -> None:
        with self.lock:
            self.jobs.pop(job, None)
            self._draw()

    def line(self) -> str:
        parts = [f"{bar(self.done, self.total)} {self.done}/{self.total}"]
        for name, (value, total, server) in sorted(self.jobs.items()):
            parts.append(f"{name[:24]} {bar(value, total, 8)} {value}/{total} @{server.split('//')[-1]}")
        return " | ".join(parts)

    def _draw(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line()[:200])
            self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
