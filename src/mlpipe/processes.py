"""Stopping processes this project started, by the pid it recorded: never by name, since other
people's servers and clusters may run on the same machine."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Is `pid` running (a zombie, exited but not reaped, is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == pgid:
                    members.append(int(entry.name))
    return [pid for pid in members if alive(pid)]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # our own child: do not leave a zombie
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
    """Send `sig` to one process; SIGKILL when it is still there after `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while alive(pid):
            _reap(pid)
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    _reap(pid)


def stop_group(leader: int, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
    """Stop the process group a process started with `start_new_session=True` leads (a server
    and its workers, a Ray node and its daemons): `sig`, then SIGKILL for what is left."""
    for signal_now, wait_s in ((sig, timeout_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal_now)
        deadline = time.monotonic() + wait_s
        while group_members(leader) and time.monotonic() < deadline:
            _reap(leader)
            time.sleep(0.2)
        _reap(leader)
        if not group_members(leader):
            return


def started(pid: int) -> str | None:
    """When `pid` started, as `<boot id>:<clock ticks since boot>` (Linux): with the pid, it
    names one process, even once the pid is reused or the machine rebooted; None if it is gone."""
    try:
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except (OSError, IndexError):
        return None
    return f"{boot}:{ticks}"


def still_running(pid: int, start: str | None) -> bool:
    """Is the process that had `pid` and started at `start` (see `started`) still there?"""
    if not alive(pid):
        return False
    return start is None or started(pid) in (None, start)
