"""One batch scored in one process: the step's own, or a worker of the pool, which loads each model
once (`start`) and then scores batch after batch (`score`), always through the pyfunc flavor
(`mlpipe.models.scoring`), so it works for any model the pipeline exports.

A batch the model refuses is split in halves until the refused rows are found, each with the
model's reason; the rest of the batch is scored. What a model accepts is the model's business (its
first stage, its signature): nothing here knows about columns, tensors or frameworks.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlpipe.data.spec import DatasetSpec
from mlpipe.inference.ledger import probabilities_json

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

WHERE = "inference"
SAMPLE = 5  # rows of a refused batch tried one by one before it is split: all refused alike
SAMPLED_BATCH = 20  # ... in a batch at least this long means the source, not a row, is wrong
REASON_LENGTH = 500
SCHEMA_FAILURE = "Failed to enforce schema of data"  # how MLflow's pyfunc starts a schema refusal

_models: dict[str, PyFuncModel] = {}
_spec: DatasetSpec | None = None


class ExtraColumns(logging.Filter):
    """MLflow warns on every call that the columns beyond the signature are ignored: the exported
    model takes the rows as users have them, extra columns included, on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Found extra inputs in the model input" not in record.getMessage()


def start(folders: dict[str, str], spec: DatasetSpec) -> None:
    """Load every model once in this process (workers forked from it inherit them)."""
    from mlpipe.models import scoring

    global _spec
    _spec = spec
    quiet = logging.getLogger("mlflow.models.utils")
    if not any(isinstance(f, ExtraColumns) for f in quiet.filters):
        quiet.addFilter(ExtraColumns())
    _models.clear()  # a previous run's, in a process that runs several steps
    loaded: dict[str, PyFuncModel] = {}
    for name, folder in folders.items():
        loaded[folder] = loaded.get(folder) or scoring.load(folder)
        _models[name] = loaded[folder]


def limit_threads(threads: int) -> None:
    """In a worker: cap the math libraries' threads, so the workers share the cores instead of
    fighting over them, and no thread pool the parent started is used after the fork."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


def start_worker(folders: dict[str, str], spec: DatasetSpec, threads: int) -> None:
    """A worker that did not inherit the models (started by spawn): load them."""
    start(folders, spec)
    limit_threads(threads)


@dataclass(frozen=True)
class BatchResult:
    model: str
    rows: list[int]  # the source rows scored, in order
    predictions: list[str]  # as the ledger records them
    probabilities: list[str | None]  # JSON, for classifiers
    rejected: dict[int, str]  # source row -> why
    seconds: float
    refused_alike: str = ""  # every row tried was refused with this reason: the source is wrong


def reason_of(error: BaseException) -> str:
    """A refusal's reason, short and the same for rows refused alike: MLflow's schema check
    prints the whole input frame in its message (spaced by the values), so its own cause is
    taken instead."""
    if SCHEMA_FAILURE in str(error) and error.__context__ is not None:
        return f"model input schema: {reason_of(error.__context__)}"[:REASON_LENGTH]
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:REASON_LENGTH]


def in_source_terms(reason: str, row: int) -> str:
    """The model names a refused row by its place in the one-row batch it was given (`data row
    1`): name the row of the source instead."""
    return re.sub(r"\bdata row 1\b", f"data row {row + 1}", reason)


def alike(reason: str) -> str:
    return re.sub(r"\d+", "#", reason)


@dataclass
class Outcome:
    positions: np.ndarray  # the rows of the data scored, in order
    values: np.ndarray  # their predictions
    probabilities: np.ndarray | None  # (rows, classes), for classifiers
    refused: dict[int, str]  # row of the data -> reason
    classes: list[Any] | None = None

    @classmethod
    def refusal(cls, position: int, reason: str) -> Outcome:
        return cls(np.zeros(0, dtype=int), np.zeros(0), None, {position: reason})

    def __add__(self, other: Outcome) -> Outcome:
        """Two parts of a batch, in order (a part whose rows were all refused adds only those)."""
        parts = [o for o in (self, other) if len(o.positions)] or [self]
        probabilities = [p.probabilities for p in parts]
        return Outcome(
            np.concatenate([p.positions for p in parts]),
            np.concatenate([p.values for p in parts]),
            None if any(p is None for p in probabilities) else np.concatenate(probabilities),
            {**self.refused, **other.refused},
            self.classes or other.classes,
        )


def predict_rows(model: PyFuncModel, data: Any, spec: DatasetSpec, positions: np.ndarray) -> Outcome:
    """Score the rows at `positions` (whatever the model raises is its refusal of them)."""
    from mlpipe.models import scoring

    whole = len(positions) == spec.kind.size(data)  # all of it, in order: no copy
    prediction = scoring.predict(model, data if whole else spec.kind.take(data, positions), spec)
    return Outcome(positions, np.asarray(prediction.values), prediction.probabilities, {}, prediction.classes)


def predict_isolating(
    model: PyFuncModel, data: Any, spec: DatasetSpec, positions: np.ndarray, refusal: Exception | None = None
) -> Outcome:
    """Score the rows at `positions`; when the model refuses them (`refusal`: it did already),
    split them in halves until the refused rows are alone."""
    if refusal is None:
        try:
            return predict_rows(model, data, spec, positions)
        except Exception as error:
            refusal = error
    if len(positions) == 1:
        return Outcome.refusal(int(positions[0]), reason_of(refusal))
    middle = len(positions) // 2
    return predict_isolating(model, data, spec, positions[:middle]) + predict_isolating(
        model, data, spec, positions[middle:]
    )


def refused_alike(model: PyFuncModel, data: Any, spec: DatasetSpec, size: int) -> str:
    """The reason, when a few rows spread over the batch, tried one by one, are all refused
    alike (a missing column, a model that cannot read this source): then splitting the batch
    would only find every row refused, slowly."""
    if size < SAMPLED_BATCH:
        return ""
    reasons = []
    for position in np.linspace(0, size - 1, SAMPLE).astype(int):
        outcome = predict_isolating(model, data, spec, np.asarray([position]))
        if len(outcome.positions):
            return ""
        reasons.append(in_source_terms(outcome.refused[int(position)], 0))
    return reasons[0] if len({alike(r) for r in reasons}) == 1 else ""


def prediction_texts(values: np.ndarray) -> list[str]:
    """Predictions as the ledger keeps them: floats as the shortest text that reads back exactly."""
    return [str(v) for v in (values.astype(str) if values.dtype.kind == "f" else values).tolist()]


def score(model_name: str, rows: list[int], batch: Any) -> BatchResult:
    """Score one batch (`rows` are the source rows it holds, `batch` what the kind made of them)."""
    assert _spec is not None, "scorer.start was not called in this process"
    spec, model = _spec, _models[model_name]
    started = time.perf_counter()
    data, not_loaded = spec.kind.load_batch(batch, spec, WHERE)
    loaded = [row for i, row in enumerate(rows) if i not in not_loaded]
    rejected = {rows[i]: reason for i, reason in not_loaded.items()}
    outcome = Outcome(np.zeros(0, dtype=int), np.zeros(0), None, {})
    if loaded:
        everything = np.arange(len(loaded))
        try:
            outcome = predict_rows(model, data, spec, everything)
        except Exception as error:
            reason = refused_alike(model, data, spec, len(loaded))
            if reason:
                return BatchResult(model_name, [], [], [], {}, time.perf_counter() - started, reason)
            outcome = predict_isolating(model, data, spec, everything, error)
    for position, reason in outcome.refused.items():
        rejected[loaded[position]] = in_source_terms(reason, loaded[position])
    classes, probabilities = outcome.classes, outcome.probabilities
    return BatchResult(
        model_name,
        [loaded[p] for p in outcome.positions.tolist()],
        prediction_texts(outcome.values),
        [None] * len(outcome.positions)
        if probabilities is None or not classes
        else [probabilities_json(classes, row) for row in probabilities],
        rejected,
        time.perf_counter() - started,
    )
