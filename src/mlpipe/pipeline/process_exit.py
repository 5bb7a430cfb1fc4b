"""How a step's process ended, when it did not succeed, in a user's words: the signal that killed
it (the out-of-memory killer's SIGKILL told apart when the kernel's count of its kills rose), or
the code it exited with."""

from __future__ import annotations

import signal
from pathlib import Path

OOM_KILLER = "out-of-memory killer"


def describe_exit(code: int | None, oom_kills_before: int | None = None) -> str:
    """What ended a step's process that did not succeed, in a user's words (`oom_kills_before`:
    `out_of_memory_kills()` as it started, to tell the out-of-memory killer's SIGKILL apart)."""
    if code is None:
        return "its process did not end"
    if code < 0:
        sig = signal.Signals(-code)
        now = out_of_memory_kills()
        if (
            sig == signal.SIGKILL
            and oom_kills_before is not None
            and now is not None
            and now > oom_kills_before
        ):
            return f"its process was killed by SIGKILL: the kernel's {OOM_KILLER} ended a process meanwhile"
        hint = {
            signal.SIGKILL: f" (what the {OOM_KILLER} sends when memory runs out, and kill -9)",
            signal.SIGSEGV: " (a segmentation fault)",
            signal.SIGBUS: " (a bus error)",
            signal.SIGABRT: " (an abort)",
        }.get(sig, "")
        return f"its process was killed by {sig.name}{hint}"
    if code == 255:
        return "its process ended with status 255 (or its warm parent ended before it)"
    return f"its process exited with code {code} without reporting an error"


def out_of_memory_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has ended since boot (Linux)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None
