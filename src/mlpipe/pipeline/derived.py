"""Files derived from the step contracts: each component's MLproject (what `mlflow run
components/<x>` reads) and the README's step table; and the README's reference of the dataset
file's keys, from its schema (`mlpipe.data.dataset_schema`). `make contracts` (this module) writes
them; tests/test_contracts.py fails when a checked-in copy differs from what they say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mlpipe import project
from mlpipe.data import dataset_schema
from mlpipe.pipeline.components import Component, defaults, discover
from mlpipe.pipeline.contract import READS, WRITES, encode, unwrap_optional
from mlpipe.pipeline.planner import StepSpec, plan

README_BEGIN = "<!-- steps: generated from the contracts by `make contracts` -->"
README_END = "<!-- end of steps -->"
DATASET_BEGIN = "<!-- dataset keys: generated from src/mlpipe/data/dataset_schema.py by `make contracts` -->"
DATASET_END = "<!-- end of dataset keys -->"
# A component runs this project's code, whichever copy of the package is installed.
COMMAND_PREFIX = "PYTHONPATH=../../src${{PYTHONPATH:+:$PYTHONPATH}} python run.py"


def mlflow_type(annotation: object) -> str:
    """MLflow checks `float` parameters as numbers; everything else travels as text."""
    inner, optional = unwrap_optional(annotation)
    return "float" if inner in (int, float) and not optional else "string"


def render_mlproject(component: Component) -> str:
    contract = component.contract
    values = defaults(component)
    lines = [
        "# Generated from the contract in run.py by `make contracts`: edit run.py, then regenerate.",
        f"name: {component.name}",
        "conda_env: ../../conda.yml  # one environment for every step: the project's",
        "",
        "entry_points:",
        "  main:",
        "    parameters:",
    ]
    for p in contract.parameters():
        lines += [
            f"      {p.name}:",
            f"        description: {json.dumps(p.help)}",
            f"        type: {mlflow_type(p.annotation)}",
        ]
        if p.name in values:  # no default in config.yaml: `mlflow run` asks for it
            lines.append(f"        default: {json.dumps(encode(values[p.name]))}")
    options = " ".join(f"--{p.name} {{{p.name}}}" for p in contract.parameters())
    lines.append(f"    command: {json.dumps(f'{COMMAND_PREFIX} {options}')}")
    return "\n".join(lines) + "\n"


def pipeline_order(components: dict[str, Component]) -> list[Component]:
    """The components in the order the pipeline runs their steps (implementations of one step
    side by side)."""
    by_step: dict[str, list[Component]] = {}
    for component in components.values():
        by_step.setdefault(component.contract.step, []).append(component)
    specs = [
        StepSpec(
            step,
            options[0].name,
            reads={k: f"{a}:latest" for k, a in options[0].contract.reads().items()},
            writes=options[0].contract.writes(),
            after=options[0].contract.after,
        )
        for step, options in by_step.items()
    ]
    everything = {name for s in specs for name in s.read_names}
    return [c for stage in plan(specs, existing=everything) for s in stage for c in by_step[s.name]]


def steps_table(components: dict[str, Component]) -> str:
    rows = ["| step | component | reads | writes | what it does |", "| --- | --- | --- | --- | --- |"]
    for component in pipeline_order(components):
        c = component.contract
        reads = ", ".join(f"`{p.artifact}`" for p in c.parameters() if p.role == READS)
        writes = ", ".join(f"`{p.artifact}`" for p in c.parameters() if p.role == WRITES)
        rows.append(f"| `{c.step}` | `{component.name}` | {reads} | {writes} | {c.summary} |")
    return "\n".join(rows)


def readme_with_table(readme: str, table: str, begin: str = README_BEGIN, end: str = README_END) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f"README.md has no '{begin}' ... '{end}' block")
    return pattern.sub(lambda _: f"{begin}\n{table}\n{end}", readme)


def expected_files() -> dict[Path, str]:
    """Every derived file, as the contracts say it should read."""
    components = discover()
    tests_only = project.root() / "tests" / "components"  # steps the tests add to projects of their own
    extra = discover(tests_only) if tests_only.is_dir() else {}
    files = {c.folder / "MLproject": render_mlproject(c) for c in [*components.values(), *extra.values()]}
    readme = project.root() / "README.md"
    text = readme_with_table(readme.read_text(), steps_table(components))
    files[readme] = readme_with_table(text, dataset_schema.reference(), DATASET_BEGIN, DATASET_END)
    return files


def changed_files() -> dict[Path, str]:
    """The derived files that differ from what the contracts say, with what they should read."""
    return {
        path: text
        for path, text in expected_files().items()
        if not path.is_file() or path.read_text() != text
    }


def main() -> None:
    for path, text in changed_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(project.root())}")


if __name__ == "__main__":
    main()
