"""Distribution drift between a batch and the reference batch."""

from __future__ import annotations

import pandas as pd
from scipy import stats


def kl_divergence(reference: pd.Series, current: pd.Series, smoothing: float = 0.5) -> float:
    """KL(current || reference) of category frequencies, over the union of categories.

    Additive smoothing keeps it finite when a category is missing on one side.
    """
    ref_counts = reference.astype(str).value_counts()
    cur_counts = current.astype(str).value_counts()
    categories = ref_counts.index.union(cur_counts.index)
    p = cur_counts.reindex(categories, fill_value=0).to_numpy(dtype=float) + smoothing
    q = ref_counts.reindex(categories, fill_value=0).to_numpy(dtype=float) + smoothing
    return float(stats.entropy(p / p.sum(), q / q.sum()))


def ks_pvalue(reference: pd.Series, current: pd.Series) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (missing values left out)."""
    ref, cur = reference.dropna().to_numpy(), current.dropna().to_numpy()
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    return float(stats.ks_2samp(ref, cur).pvalue)


def sample_for_ks(values: pd.Series, size: int, seed: int = 0) -> pd.Series:
    """KS on 20k rows flags trivial shifts; compare fixed-size samples instead."""
    return values.sample(n=min(size, len(values)), random_state=seed) if size else values
