"""Ctrl-C and SIGTERM: what a signal turns into in the pipeline's process and in a step's process.

Both signals raise `Interrupted` (a KeyboardInterrupt, so no `except Exception` swallows it) in
the main thread; the pipeline then stops every step process, ends the runs it started as KILLED
and exits 130 (SIGINT) or 143 (SIGTERM); a clean-up that hangs (a store that does not answer) is
cut short after a bound, so a signal always ends the process. A process started by another
(main.py by `mlflow run`, a step worker by its warm parent) also asks the kernel for SIGTERM when
that parent dies, so a signal that kills only the top `mlflow run` process orphans nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by `signum`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def signal_name(interrupt: KeyboardInterrupt) -> str:
    """The signal behind an interrupt: a bare KeyboardInterrupt is Python's own Ctrl-C."""
    return str(interrupt) if isinstance(interrupt, Interrupted) else signal.SIGINT.name


def is_interrupt_exit(code: int | None) -> bool:
    """A process status that says it was stopped by Ctrl-C or SIGTERM: killed by the signal
    (negative, as Python reports it) or exited with the shell's code for it."""
    return code is not None and (-code in SIGNALS or code - 128 in SIGNALS)


_cleanup_s: float | None = None  # how long the clean-up after a signal may take (None: no limit)


def _raise(signum: int, frame: FrameType | None) -> None:
    # Once is enough: the clean-up that follows must not be cut short by a second Ctrl-C.
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if _cleanup_s is not None:
        end_after(_cleanup_s, signum)
    raise Interrupted(signum)


def raise_on_signals(cleanup_s: float | None = None) -> None:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread (call from the main thread);
    with `cleanup_s`, the process ends itself when its clean-up takes longer than that."""
    global _cleanup_s
    _cleanup_s = cleanup_s
    for sig in SIGNALS:
        signal.signal(sig, _raise)


def end_after(seconds: float, signum: int) -> None:
    """End this process `seconds` from now with the signal's exit code, whatever its main thread
    is doing then (stuck in a call that retries, a lock, a native library): a watchdog thread,
    since a stuck main thread runs no signal handler."""

    def watchdog() -> None:
        time.sleep(seconds)
        name = signal.Signals(signum).name
        with contextlib.suppress(OSError, ValueError):
            print(
                f"interrupted by {name}: the clean-up did not end within {seconds:.0f} s; stopped "
                "without it (a run left RUNNING is marked FAILED by the next pipeline)",
                file=sys.stderr,
                flush=True,
            )
        os._exit(128 + signum)

    threading.Thread(target=watchdog, name="mlpipe-stop-watchdog", daemon=True).start()


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (bookkeeping that must not be cut in
    half); one that came meanwhile is delivered when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send `signum` to this process when its parent ends (Linux; elsewhere a
    no-op). If the parent is already gone, the signal is sent now."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
