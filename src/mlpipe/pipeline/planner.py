"""Planning: the selected steps as data (what each reads and writes), the order that follows
from it (a topological sort into stages of steps that can run together), and the errors that stop
a run before it starts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import parse_reference


@dataclass(frozen=True)
class StepSpec:
    name: str
    component: str  # folder under components/
    reads: dict[str, str] = field(default_factory=dict)  # parameter -> artifact reference
    writes: dict[str, str] = field(default_factory=dict)  # parameter -> artifact name
    params: dict[str, Any] = field(default_factory=dict)  # the other parameters, typed
    after: tuple[str, ...] = ()  # steps that must pass first though nothing flows (a gate)
    side_effects: bool = False  # changes more than its outputs: never reused from the cache

    @property
    def read_names(self) -> list[str]:
        return [parse_reference(ref)[0] for ref in self.reads.values()]

    def parameters(self) -> dict[str, Any]:
        return {**self.params, **self.reads, **self.writes}


def select(steps: Sequence[StepSpec], requested: str) -> list[StepSpec]:
    """`all`, or a comma-separated subset in any order; unknown names are an error."""
    if requested.strip() in ("all", ""):
        return list(steps)
    names = [n.strip() for n in requested.split(",") if n.strip()]
    known = {s.name for s in steps}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StepError(
            f"main: unknown step(s) {', '.join(repr(n) for n in unknown)} in main.steps; "
            f"expected some of: {', '.join(s.name for s in steps)}"
        )
    return [s for s in steps if s.name in names]


def dependencies(steps: Sequence[StepSpec], existing: Iterable[str] = ()) -> dict[str, set[str]]:
    """step -> the selected steps it waits for. A read must be written by a selected step or
    exist in the store already (`existing` names); two writers of one artifact are an error."""
    writer: dict[str, str] = {}
    for step in steps:
        for name in step.writes.values():
            if name in writer:
                raise StepError(
                    f"main: artifact '{name}' is written by both '{writer[name]}' and '{step.name}'"
                )
            writer[name] = step.name
    available = set(existing)
    selected = {s.name for s in steps}
    depends: dict[str, set[str]] = {}
    for step in steps:
        missing = [n for n in step.read_names if n not in writer and n not in available]
        if missing:
            raise StepError(
                f"main: step '{step.name}' reads {', '.join(repr(m) for m in missing)}, which no "
                "selected step writes and the store does not hold yet; add the step that writes it "
                "to main.steps"
            )
        depends[step.name] = {writer[n] for n in step.read_names if n in writer} | (
            set(step.after) & selected
        )
    return depends


def plan(steps: Sequence[StepSpec], existing: Iterable[str] = ()) -> list[list[StepSpec]]:
    """Stages of steps that can run together (a topological sort by levels); a cycle is an error."""
    depends = dependencies(steps, existing)
    stages: list[list[StepSpec]] = []
    done: set[str] = set()
    remaining = list(steps)
    while remaining:
        ready = [s for s in remaining if depends[s.name] <= done]
        if not ready:
            cycle = ", ".join(s.name for s in remaining)
            raise StepError(f"main: the steps {cycle} depend on each other in a cycle")
        stages.append(ready)
        done |= {s.name for s in ready}
        remaining = [s for s in remaining if s.name not in done]
    return stages
