"""Drift of the rows a run is about to score against the data the model was trained from: the
dataset's drift tests (`checks.drift_columns` by KL divergence, `checks.ks_columns` by the KS test),
with data_check's code and thresholds, on the columns the new rows have (the target, usually not
among them, is left out)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from mlpipe.data import drift
from mlpipe.data.drift import DriftThresholds
from mlpipe.data.spec import DatasetSpec

MODES = ("warn", "fail", "off")


@dataclass(frozen=True)
class DriftReport:
    measured: dict[str, float]  # data_check's metric names: kl.<column>, ks_pvalue.<column>
    drifted: list[str] = field(default_factory=list)  # one text per test that found drift
    left_out: list[str] = field(default_factory=list)  # columns the dataset checks, the new rows lack

    @property
    def metrics(self) -> dict[str, float]:
        return {**self.measured, "drift_tests_failed": len(self.drifted)}


def compare(
    reference: pd.DataFrame, scored: pd.DataFrame, spec: DatasetSpec, limits: DriftThresholds
) -> DriftReport:
    measured: dict[str, float] = {}
    drifted: list[str] = []
    left_out: list[str] = []
    tests = (("drift_columns", drift.category_drift), ("ks_columns", drift.numeric_drift))
    for key, test in tests:
        named = list(spec.checks.get(key) or [])
        columns = [c for c in named if c in scored.columns and c in reference.columns]
        left_out += [c for c in named if c not in columns]
        if not columns:
            continue
        if key == "ks_columns":  # new rows as users have them: a word in a number column is no number
            reference, scored = numbers(reference, columns), numbers(scored, columns)
        found = test(reference, scored, columns, limits)
        measured.update(found.measured)
        if found.drifted:
            drifted.append(found.message)
    return DriftReport(measured, drifted, left_out)


def numbers(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in columns})
