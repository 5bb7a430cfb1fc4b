"""`make new-step NAME=<name> [READS=<artifact>] [WRITES=<artifact>]`: a new, runnable step.

It writes `components/<name>/run.py` (the contract and a `run` that reads its input and logs its
output), a test of it under tests/, and the step's (empty) section in config.yaml, then derives
the MLproject file and the README row. The step is opt-in (`main.steps=...,<name>`) until its
contract says otherwise; wiring it into the pipeline is its `reads`/`writes`, nothing else.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mlpipe import project

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

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


def new_step(name: str, reads: str, writes: str, summary: str, root: Path) -> list[Path]:
    if not NAME.match(name):
        raise SystemExit(f"error: step name '{name}': expected lower-case letters, digits and '_'")
    folder = root / "components" / name
    test = root / "tests" / f"test_step_{name}.py"
    if folder.exists() or test.exists():
        raise SystemExit(f"error: {folder} or {test} exists already; pick another name")
    values = {"name": name, "reads": reads, "writes": writes, "summary": summary}
    folder.mkdir(parents=True)
    (folder / "run.py").write_text(RUN_PY.format(**values))
    test.write_text(TEST_PY.format(**values))
    config = root / "config.yaml"
    section = f"\n{name}: {{}}  # the parameters of components/{name}/run.py (make new-step)\n"
    text = config.read_text()
    marker = "\nhydra:"  # steps' sections go before Hydra's own settings
    config.write_text(text.replace(marker, section + marker, 1) if marker in text else text + section)
    return [folder / "run.py", test, config]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", help="the step's name (also its component folder)")
    parser.add_argument("--reads", default="clean_data", help="the artifact it reads")
    parser.add_argument("--writes", default=None, help="the artifact it writes (default: <name>_data)")
    parser.add_argument("--summary", default=None, help="what it does, in a user's words")
    args = parser.parse_args(argv)
    writes = args.writes or f"{args.name}_data"
    summary = args.summary or f"reads `{args.reads}` and logs `{writes}` (describe what it does)"
    root = project.root()
    for path in new_step(args.name, args.reads, writes, summary, root):
        print(f"wrote {path.relative_to(root)}")
    from mlpipe.pipeline import derived

    derived.main()


if __name__ == "__main__":
    main()
