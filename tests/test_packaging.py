"""The project's files agree with each other: pins, components, MLproject parameters."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import COMPONENTS_DIR, PROJECT_ROOT

PIN = re.compile(r"([\w\-]+(?:\[[\w,\-]+\])?)==([\w.]+)")  # name[extras]==version


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return dict(PIN.fullmatch(d).groups() for d in project["dependencies"])


def test_conda_env_pins_the_same_versions_as_pyproject():
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda_pins = dict(PIN.fullmatch(p).groups() for p in pip if "==" in p)
    assert conda_pins == pyproject_pins()
    assert "-e ." in pip


def test_every_component_is_a_runnable_mlflow_project():
    for folder in sorted(p for p in COMPONENTS_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")):
        project = yaml.safe_load((folder / "MLproject").read_text())
        assert project["name"] == folder.name
        assert (folder / project["conda_env"]).is_file() and (folder / "run.py").is_file()
        command = project["entry_points"]["main"]["command"]
        for parameter in project["entry_points"]["main"]["parameters"]:
            assert f"{{{parameter}}}" in command, f"{folder.name}: {parameter} not passed to run.py"


def test_top_level_project_entry_point():
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    parameters = project["entry_points"]["main"]["parameters"]
    assert parameters["steps"]["default"] == "all" and parameters["hydra_options"]["default"] == ""
