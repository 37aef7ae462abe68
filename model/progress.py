"""Progress lines for long steps: count, rate and ETA, at most one line every few seconds.

One `Progress` per run and process (`tracker(run_id, ...)`), shared by every DoFn instance
and thread of that process. Beam runs each DoFn in the process that owns its bundle, so
on one in-process DirectRunner the figures cover the whole run; on several processes or
Dataflow workers each logs its own share (the line says `this process`).
"""
import logging
import os
import threading
import time

log = logging.getLogger("earmark.progress")

_TRACKERS = {}
_TRACKERS_LOCK = threading.Lock()


def format_duration(seconds: float) -> str:
    """62.4 → '1m02s'; 3725 → '1h02m'."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts done (and, where known, total) units; `update` logs when a line is due."""

    def __init__(self, name: str, unit: str, total: float = None, every_seconds: float = 5.0,
                 scope: str = "", clock=time.monotonic):
        self.name, self.unit, self.total, self.scope = name, unit, total, scope
        self.every_seconds, self._clock = every_seconds, clock
        self.done = 0.0
        self._started = self._last = clock()
        self._lock = threading.Lock()

    def add_total(self, amount: float) -> None:
        with self._lock:
            self.total = (self.total or 0.0) + amount

    def update(self, amount: float = 1.0) -> None:
        with self._lock:
            self.done += amount
            now = self._clock()
            due = now - self._last >= self.every_seconds
            if due:
                self._last = now
        if due:
            log.info(self.line())

    def line(self) -> str:
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done / elapsed
        counted = f"{self.done:,.0f}" + (f"/{self.total:,.0f}" if self.total else "")
        text = f"{self.name}: {counted} {self.unit}, {rate:,.1f}/s"
        if self.total and rate > 0:
            left = max(self.total - self.done, 0.0) / rate
            text += f", {100 * self.done / self.total:.0f} %, ETA {format_duration(left)}"
        return text + (f" ({self.scope})" if self.scope else "")


def tracker(run_id: str, name: str, unit: str, total: float = None,
            every_seconds: float = 5.0) -> Progress:
    """This process's Progress for one run (`run_id`, e.g. a uuid made at launch) of a step
    `name`; made on first use, then shared."""
    with _TRACKERS_LOCK:
        if run_id not in _TRACKERS:
            _TRACKERS[run_id] = Progress(name, unit, total, every_seconds,
                                         scope=f"this process, pid {os.getpid()}")
        return _TRACKERS[run_id]
