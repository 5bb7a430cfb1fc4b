"""fault: fails the way it is told to (tests only): ends the ways a real step can, for the tests of
the pipeline's executors and of interrupts. Tests put it beside the real components in a project
of their own."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from mlpipe.pipeline.contract import StepContract, StepParams, param, writes
from mlpipe.pipeline.step import run_script, step_run


@dataclass(frozen=True)
class Params(StepParams):
    how: str = param(
        "exit (os._exit(3)), sigkill, segfault, oom:<memory cgroup folder> (join it, then allocate), "
        "hang (log, sleep a minute, then publish), or deaf (the same, ignoring SIGINT and SIGTERM, "
        "as a native library's own handlers may)"
    )
    output_artifact: str = writes("fault_output")


CONTRACT = StepContract("fault", Params, __doc__, opt_in=True)


def allocate_until_killed() -> None:
    blocks = []
    while True:
        blocks.append(bytearray(64 << 20))  # bytearray writes every page: the memory is really used


def run(params: Params) -> None:
    with step_run(CONTRACT, params) as step:
        how, _, where = params.how.partition(":")
        step.log.info("failing: %s", params.how)
        if how == "exit":
            os._exit(3)
        elif how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "segfault":
            ctypes.string_at(0)
        elif how == "oom":
            (Path(where) / "cgroup.procs").write_text(str(os.getpid()))
            allocate_until_killed()
        elif how in ("hang", "deaf"):
            if how == "deaf":
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, signal.SIG_IGN)
            step.log.info("hanging")
            time.sleep(60)
            output = step.workdir / "late.txt"
            output.write_text("published after a minute")
            step.log_artifact(params.output_artifact, output, "fault_output", "what a hang publishes")


if __name__ == "__main__":
    run_script(CONTRACT, run)
