"""Distribution drift between a batch and the reference batch, and the thresholds that judge it.

SciPy loads in the functions that use it: data_check's contract (the thresholds) is read by every
pipeline start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class DriftThresholds:
    """How far data may drift from the reference (data_check's parameters, set in config.yaml)."""

    kl_threshold: float = field(metadata={"help": "Largest KL divergence of a category distribution"})
    ks_alpha: float = field(metadata={"help": "Smallest KS p-value of a numeric column"})
    ks_sample_size: int = field(metadata={"help": "Rows sampled from each side for the KS test (0: all)"})


@dataclass(frozen=True)
class Drift:
    measured: dict[str, float]  # metric name -> statistic
    drifted: dict[str, float]  # column -> statistic, where it crossed the threshold
    message: str


def kl_divergence(reference: pd.Series, current: pd.Series, smoothing: float = 0.5) -> float:
    """KL(current || reference) of category frequencies, over the union of categories.

    Additive smoothing keeps it finite when a category is missing on one side.
    """
    from scipy import stats

    ref_counts, cur_counts = category_counts(reference), category_counts(current)
    categories = ref_counts.index.union(cur_counts.index)
    p = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float) + smoothing
    q = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=float) + smoothing
    return float(stats.entropy(p / p.sum(), q / q.sum()))


def category_counts(values: pd.Series) -> pd.Series:
    """How often each value occurs, by its text (missing counts as "nan"): counted before the
    values become text, so a million numbers are not each turned into a string."""
    counts = values.value_counts(dropna=False)
    counts.index = counts.index.astype(str)
    return counts.groupby(level=0).sum()


def ks_pvalue(reference: pd.Series, current: pd.Series) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (missing values left out)."""
    from scipy import stats

    ref, cur = reference.dropna().to_numpy(), current.dropna().to_numpy()
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    return float(stats.ks_2samp(ref, cur).pvalue)


def sample_for_ks(values: pd.Series, size: int, seed: int = 0) -> pd.Series:
    """KS on 20k rows flags trivial shifts; compare fixed-size samples instead."""
    return values.sample(n=min(size, len(values)), random_state=seed) if size else values


def category_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], limits: DriftThresholds
) -> Drift:
    divergences = {c: kl_divergence(reference[c], current[c]) for c in columns}
    drifted = {c: round(v, 4) for c, v in divergences.items() if v >= limits.kl_threshold}
    return Drift(
        {f"kl.{c}": v for c, v in divergences.items()},
        drifted,
        f"KL divergence from the reference at or above {limits.kl_threshold}: {drifted}",
    )


def numeric_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], limits: DriftThresholds
) -> Drift:
    size = limits.ks_sample_size
    pvalues = {
        c: ks_pvalue(sample_for_ks(reference[c], size), sample_for_ks(current[c], size)) for c in columns
    }
    drifted = {c: p for c, p in pvalues.items() if p < limits.ks_alpha}
    return Drift(
        {f"ks_pvalue.{c}": v for c, v in pvalues.items()},
        drifted,
        f"KS p-value below {limits.ks_alpha} (distribution shifted): {drifted}",
    )
