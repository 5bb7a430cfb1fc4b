"""`make new-step NAME=<name> [READS=<artifact>] [WRITES=<artifact>]`: a new, runnable step.

It writes `components/<name>/run.py` (the contract and a `run` that reads its input and logs its
output), a test of it under tests/, and the step's (empty) section in config.yaml, then derives
the MLproject file and the README row. The step is opt-in (`main.steps=...,<name>`) until its
contract says otherwise; wiring it into the pipeline is its `reads`/`writes`, nothing else.

Every name is checked before anything is written (a step, component or config section that
exists, a Python keyword, characters other than an identifier's), and the files are changed as
one: on any failure, the derivation's included, the project is left as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import keyword
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import NAME_PATTERN

WHAT = "new-step"  # the prefix of error lines
USAGE = "make new-step NAME=<name> [READS=<artifact>] [WRITES=<artifact>]"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Top-level keys of config.yaml that are not steps' sections, taken even where it lacks them.
RESERVED = ("defaults", "hydra", "main", "tracking")

RUN_PY = '''"""{name}: {summary}"""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.pipeline.contract import StepContract, StepParams, reads, writes
from mlpipe.pipeline.step import run_script, step_run


@dataclass(frozen=True)
class Params(StepParams):
    input_artifact: str = reads("{reads}")
    output_artifact: str = writes("{writes}")
    # A parameter: `threshold: float = param("what it means")` here, its value in config.yaml's
    # `{name}:` section (defaults live there only), then `make contracts`.


# opt_in: it runs when named in main.steps; drop it to make the step part of `all`.
CONTRACT = StepContract("{name}", Params, __doc__, opt_in=True)


def run(params: Params) -> None:
    with step_run(CONTRACT, params) as step:
        version, data = step.read_data(params.input_artifact)
        result = data  # the step's one thing: data in, data out (a plain function is easiest to test)
        size = step.spec.kind.size
        step.log_metrics({{"rows_in": size(data), "rows_out": size(result)}})
        description = f"{writes} made by {name} from {{version.ref}}"
        step.log_data(result, params.output_artifact, "{writes}", description, {{"input": version.ref}})


if __name__ == "__main__":
    run_script(CONTRACT, run)
'''

TEST_PY = '''"""{name}: runs alone against a real store, and in the pipeline when named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from mlpipe.data.tables import write_table
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import DATASETS, run_component


def test_{name}_logs_its_output(store: ArtifactStore, capsys, tmp_path: Path, nyc_raw: pd.DataFrame) -> None:
    client = MlflowClient()
    run = client.create_run(store.experiment_id)
    path = write_table(nyc_raw.head(100), tmp_path / "{reads}.parquet")
    store.log(run.info.run_id, "{reads}", path, "{reads}", "input of the test")
    client.set_terminated(run.info.run_id)
    argv = ["--dataset_config", str(DATASETS / "nyc_airbnb.yaml")]
    code, err = run_component("{name}", argv, capsys)
    assert code == 0, err
    assert store.resolve("{writes}:latest").metadata["rows"] == 100
'''


def check_names(name: str, reads: str, writes: str, root: Path) -> None:
    """Raise one line when `name` cannot be a new step, or `reads`/`writes` a name of an artifact
    it can read or write: before anything is written."""
    if not NAME.match(name):
        raise StepError(
            f"{WHAT}: step name {name!r}: expected a lower-case identifier (a letter, then "
            "lower-case letters, digits and '_'), e.g. row_report"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise StepError(f"{WHAT}: step name {name!r} is a Python keyword; pick another name")
    from mlpipe.pipeline.components import discover
    from mlpipe.yaml_file import load_yaml

    components = discover(root / "components")
    implementing = sorted(f"components/{c.name}" for c in components.values() if c.contract.step == name)
    if name in components or (root / "components" / name).exists():
        step = f" (the component of step '{components[name].contract.step}')" if name in components else ""
        raise StepError(
            f"{WHAT}: step name {name!r} is taken: components/{name} exists{step}; pick another name"
        )
    if implementing:
        raise StepError(
            f"{WHAT}: step name {name!r} is taken: {' and '.join(implementing)} "
            f"implement{'s' if len(implementing) == 1 else ''} step "
            f"'{name}'; pick another name"
        )
    config = load_yaml(root / "config.yaml", f"{WHAT}: {root / 'config.yaml'}") or {}
    groups = {p.name for p in (root / "conf").iterdir() if p.is_dir()} if (root / "conf").is_dir() else set()
    if name == "all":
        raise StepError(f"{WHAT}: step name 'all' means every step in main.steps; pick another name")
    if name in config or name in RESERVED:
        raise StepError(
            f"{WHAT}: step name {name!r} is taken: a top-level key of config.yaml; pick another name"
        )
    if name in groups:
        raise StepError(
            f"{WHAT}: step name {name!r} is taken: the config group conf/{name}/; pick another name"
        )
    test = root / "tests" / f"test_step_{name}.py"
    if test.exists():
        raise StepError(f"{WHAT}: {test.relative_to(root)} exists already; pick another name")
    for option, artifact in (("READS", reads), ("WRITES", writes)):
        if not NAME_PATTERN.match(artifact):
            raise StepError(
                f"{WHAT}: {option}={artifact!r}: expected an artifact name of letters, digits, '_' and '-'"
            )
    writers = {a: c.name for c in components.values() for a in c.contract.writes().values()}
    if writes in writers:
        raise StepError(
            f"{WHAT}: WRITES={writes!r}: components/{writers[writes]} writes that artifact already "
            "(no two steps write the same one); name another"
        )
    if reads == writes:
        raise StepError(f"{WHAT}: READS and WRITES are both {reads!r}; a step cannot read what it writes")


class Changes:
    """Files written as one change: each by a temporary file moved into place, and all put back
    as they were by `undo` (a new file or folder removed, an edited one restored)."""

    def __init__(self) -> None:
        self._before: list[tuple[Path, str | None]] = []

    def write(self, path: Path, text: str) -> None:
        self._before.append((path, path.read_text() if path.exists() else None))
        replace_file(path, text)

    def add_folder(self, folder: Path, files: dict[str, str]) -> None:
        """A new folder with `files`, appearing whole (built aside, then renamed into place)."""
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            for file_name, text in files.items():
                (staging / file_name).write_text(text)
            staging.rename(folder)  # fails when the folder appeared meanwhile
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._before.append((folder, None))

    def undo(self) -> None:
        for path, text in reversed(self._before):
            with contextlib.suppress(OSError):
                if text is not None:
                    replace_file(path, text)
                elif path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        self._before.clear()


def replace_file(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as f:
            f.write(text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o7777)
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def config_with_section(text: str, name: str) -> str:
    section = f"\n{name}: {{}}  # the parameters of components/{name}/run.py (make new-step)\n"
    marker = "\nhydra:"  # steps' sections go before Hydra's own settings
    return text.replace(marker, section + marker, 1) if marker in text else text + section


@contextlib.contextmanager
def all_or_nothing() -> Iterator[Changes]:
    changes = Changes()
    try:
        yield changes
    except BaseException:
        changes.undo()
        raise


def write_step(changes: Changes, name: str, reads: str, writes: str, summary: str, root: Path) -> list[Path]:
    values = {"name": name, "reads": reads, "writes": writes, "summary": summary}
    folder = root / "components" / name
    test = root / "tests" / f"test_step_{name}.py"
    config = root / "config.yaml"
    changes.add_folder(folder, {"run.py": RUN_PY.format(**values)})
    changes.write(test, TEST_PY.format(**values))
    changes.write(config, config_with_section(config.read_text(), name))
    return [folder / "run.py", test, config]


def new_step(name: str, reads: str, writes: str, summary: str, root: Path) -> list[Path]:
    """Check the names, then write the step's run.py, its test and its config section (all, or
    none on a failure); return the files written."""
    check_names(name, reads, writes, root)
    with all_or_nothing() as changes:
        return write_step(changes, name, reads, writes, summary, root)


def scaffold(name: str, reads: str, writes: str, summary: str, root: Path) -> list[Path]:
    """`new_step`, then its MLproject file and README row derived: one change, undone whole when
    any part fails."""
    check_names(name, reads, writes, root)
    with all_or_nothing() as changes:
        written = write_step(changes, name, reads, writes, summary, root)
        from mlpipe.pipeline import derived

        try:
            for path, text in derived.changed_files().items():
                changes.write(path, text)
                written.append(path)
        except StepError:
            raise
        except Exception as e:  # a component or file the derivation cannot read: say which, in one line
            raise StepError(
                f"{WHAT}: deriving the MLproject files and README failed ({type(e).__name__}: {e}); "
                "nothing was written"
            ) from e
    return written


class OneLineParser(argparse.ArgumentParser):
    """Bad options in one `error:` line (with the usage hint), not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        print(
            f"error: {WHAT}: {message}; usage: {USAGE}",
            file=sys.stderr,
        )
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the step's name (also its component folder)")
    parser.add_argument("--reads", default="clean_data", help="the artifact it reads")
    parser.add_argument("--writes", default=None, help="the artifact it writes (default: <name>_data)")
    parser.add_argument("--summary", default=None, help="what it does, in a user's words")
    args = parser.parse_args(argv)
    writes = args.writes or f"{args.name}_data"
    summary = args.summary or f"reads `{args.reads}` and logs `{writes}` (describe what it does)"
    root = project.root()
    try:
        written = scaffold(args.name, args.reads, writes, summary, root)
    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    for path in written:
        print(f"wrote {path.relative_to(root)}")


if __name__ == "__main__":
    main()
