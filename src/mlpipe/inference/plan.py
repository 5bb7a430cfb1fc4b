"""Which rows each model must score, against the ledger: a key it has not seen, content that
changed, or another model version than the one named now (or every row, with `full`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlpipe.data.kinds import NewData
from mlpipe.inference.ledger import Ledger
from mlpipe.inference.models import Model

REASONS = ("new", "changed", "rescored", "skipped")

Task = tuple[str, list[int]]  # a batch: the model's name and the source rows


@dataclass
class ModelPlan:
    model: Model
    todo: list[int] = field(default_factory=list)  # source rows to score, in order
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    gone: list[str] = field(default_factory=list)  # keys in the ledger the source no longer has
    scored: int = 0
    rejected: int = 0


def plan(new: NewData, rows: list[int], model: Model, ledger: Ledger, dataset: str, full: bool) -> ModelPlan:
    """Which rows `model` must score: new keys, changed content, another model version (or all)."""
    known = ledger.known(dataset, model.name, [new.keys[r] for r in rows])
    result = ModelPlan(model)
    for row in rows:
        entry = known.get(new.keys[row])
        if entry is None:
            reason = "new"
        elif entry[0] != new.hashes[row]:
            reason = "changed"
        elif entry[1] != model.version or full:
            reason = "rescored"
        else:
            reason = "skipped"
        result.counts[reason] += 1
        if reason != "skipped":
            result.todo.append(row)
    return result


def batches(plans: list[ModelPlan], size: int) -> list[Task]:
    return [(p.model.name, p.todo[i : i + size]) for p in plans for i in range(0, len(p.todo), size)]
