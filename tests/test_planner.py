"""Planning: selection, order, stages and the errors that stop a run before it starts."""

from __future__ import annotations

import pytest

from mlpipe.errors import StepError
from mlpipe.pipeline.config import load
from mlpipe.pipeline.definition import pipeline_steps
from mlpipe.pipeline.planner import StepSpec, plan, select


def names(stages: list[list[StepSpec]]) -> list[list[str]]:
    return [[s.name for s in stage] for stage in stages]


@pytest.fixture(scope="module")
def default_steps(tmp_path_factory: pytest.TempPathFactory) -> list[StepSpec]:
    folder = tmp_path_factory.mktemp("cfg")
    return pipeline_steps(load(), folder / "dataset.yaml", folder / "model.yaml")


def test_default_pipeline_stages(default_steps: list[StepSpec]):
    assert names(plan(default_steps)) == [
        ["download"],
        ["basic_cleaning"],
        ["data_check", "data_split"],  # independent: they run side by side
        ["train"],  # waits for the split and for the data check
        ["test_model"],
    ]


def test_subset_reads_existing_artifacts_from_the_store(default_steps: list[StepSpec]):
    chosen = select(default_steps, "test_model,train")
    assert names(plan(chosen, existing={"trainval_data", "test_data"})) == [["train"], ["test_model"]]


def test_missing_input_is_an_error_before_anything_runs(default_steps: list[StepSpec]):
    with pytest.raises(StepError, match="'train' reads 'trainval_data', which no selected step writes"):
        plan(select(default_steps, "train"))


def test_unknown_step_names(default_steps: list[StepSpec]):
    with pytest.raises(
        StepError, match=r"unknown step\(s\) 'trian' in main.steps; expected some of: download"
    ):
        select(default_steps, "download,trian")
    assert [s.name for s in select(default_steps, " all ")] == [s.name for s in default_steps]


def test_duplicate_writers_and_cycles():
    a = StepSpec("a", "c", reads={"i": "y:latest"}, writes={"o": "x"})
    b = StepSpec("b", "c", reads={"i": "x:latest"}, writes={"o": "y"})
    with pytest.raises(StepError, match="cycle"):
        plan([a, b])
    with pytest.raises(StepError, match="'x' is written by both 'a' and 'c'"):
        plan([a, StepSpec("c", "c", writes={"o": "x"})], existing={"y"})


def test_gates_order_steps_without_data_flow():
    first = StepSpec("check", "c")
    second = StepSpec("train", "c", after=("check",))
    assert names(plan([second, first])) == [["check"], ["train"]]
    assert names(plan([second])) == [["train"]]  # a gate that is not selected does not block
