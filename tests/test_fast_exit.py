"""Entry points end without the interpreter's teardown, but with everything a normal exit does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = """
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from mlpipe.pipeline.fast_exit import exit_after

out = Path(sys.argv[1])

def entry(how):
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    def late():
        time.sleep(0.3)
        (out / "thread").write_text("finished")
    threading.Thread(target=late).start()  # not a daemon: a normal exit waits for it
    pool = ThreadPoolExecutor(2)  # left open, like MLflow's upload pool: must not hang the exit
    pool.submit(time.sleep, 0.01).result()
    sys.stdout.write("unflushed output")
    if how == "code":
        sys.exit(3)
    if how == "text":
        sys.exit("fatal: a text reason")
    if how == "bug":
        raise ValueError("a bug")

exit_after(entry, sys.argv[2])
"""


def run(tmp_path: Path, how: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "entry.py"
    script.write_text(textwrap.dedent(SCRIPT))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), how], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(("how", "code"), [("return", 0), ("code", 3), ("text", 1)])
def test_exit_keeps_status_output_threads_and_exit_handlers(tmp_path: Path, how: str, code: int) -> None:
    result = run(tmp_path, how)
    assert result.returncode == code, result.stderr
    assert result.stdout == "unflushed output"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "finished"
    if how == "text":
        assert result.stderr.strip() == "fatal: a text reason"


def test_an_unexpected_exception_keeps_its_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "bug")
    assert result.returncode == 1
    assert "ValueError: a bug" in result.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
