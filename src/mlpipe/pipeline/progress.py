"""What the user sees while the pipeline runs: each step waiting, running, reused, done, failed
or skipped, with its duration, and a table of all of them at the end."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

STATES = ("waiting", "running", "reused", "done", "failed", "killed", "skipped")


@dataclass
class StepState:
    state: str = "waiting"
    started: float | None = None
    seconds: float | None = None
    detail: str = ""


class Progress:
    def __init__(self, steps: list[str], log: logging.Logger) -> None:
        self.steps = {name: StepState() for name in steps}
        self.log = log
        self._lock = threading.Lock()

    def update(self, step: str, state: str, detail: str = "") -> None:
        assert state in STATES, state
        with self._lock:
            entry = self.steps[step]
            now = time.monotonic()
            if state == "running":
                entry.started = now
            elif entry.started is not None and state in ("reused", "done", "failed", "killed"):
                entry.seconds = now - entry.started
            entry.state, entry.detail = state, detail
            finished = sum(s.state not in ("waiting", "running") for s in self.steps.values())
            took = f" in {entry.seconds:.1f} s" if entry.seconds is not None and state != "running" else ""
            self.log.info(
                "[%d/%d] %-15s %s%s%s",
                finished,
                len(self.steps),
                step,
                state,
                took,
                f": {detail}" if detail else "",
            )

    def table(self) -> str:
        rows = [("step", "state", "seconds", "detail")]
        for name, s in self.steps.items():
            rows.append((name, s.state, "" if s.seconds is None else f"{s.seconds:.1f}", s.detail))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
            for row in rows
        )
