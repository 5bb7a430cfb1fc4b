"""The scikit-learn preprocessing built from column roles, plus the custom transformers.

The model's first stage (`ModelInput`) takes the table as it was read (any extra columns,
integers or floats, text, missing values) and hands the feature columns on with numbers as numbers,
so training, testing and every client of the exported model give it the same rows. Custom
transformers live here (an importable module) so an exported model loads anywhere the package is,
and the exported model carries this package with it (`code_paths`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

from mlpipe.data.kinds.table.columns import as_strings, numbers
from mlpipe.data.spec import FEATURE_ROLES, DatasetSpec
from mlpipe.errors import StepError

INPUT = "model input"  # how the first stage's error lines start


class ModelInput(TransformerMixin, BaseEstimator):
    """The feature columns of a table (extra columns are left out), numeric ones as numbers: a
    float in a column of integers is used as a float, never truncated; a value that is not a number
    is refused with one line naming its column and row."""

    def __init__(self, features: list[str] | None = None, numeric: list[str] | None = None) -> None:
        self.features = features
        self.numeric = numeric

    def fit(self, X: Any, y: Any = None) -> ModelInput:
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        features, numeric = list(self.features or []), set(self.numeric or [])
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise StepError(
                f"{INPUT} lacks column(s) {', '.join(map(repr, missing))}; it needs {', '.join(features)}"
            )
        out = frame[features].copy()
        for column in features:
            if column in numeric:
                out[column] = numbers(out[column], INPUT).astype("float64")
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.features or [], dtype=object)


def model_input(spec: DatasetSpec) -> ModelInput:
    return ModelInput([c for role in FEATURE_ROLES for c in spec.roles[role]], list(spec.roles["numeric"]))


def string_frame(X: Any) -> pd.DataFrame:
    """Categorical input as objects with NaN for missing, so the imputers see it as missing."""
    return pd.DataFrame(X).apply(as_strings)


def text_column(values: Any) -> np.ndarray:
    """A 1-D array of strings, missing text as ''; TF-IDF needs exactly that."""
    series = pd.Series(np.asarray(values).ravel())
    return series.where(series.notna(), "").astype(str).to_numpy()


class DaysSince(TransformerMixin, BaseEstimator):
    """Days between each date and the latest date seen in training (missing stays missing)."""

    def fit(self, X: Any, y: Any = None) -> DaysSince:
        dates = self._dates(X)
        self.reference_ = dates.max(axis=None)
        self.n_features_in_ = dates.shape[1]
        self.feature_names_in_ = np.asarray(getattr(X, "columns", range(dates.shape[1])), dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        dates = self._dates(X)
        return (self.reference_ - dates).apply(lambda c: c.dt.days).to_numpy(dtype=float)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = self.feature_names_in_ if input_features is None else input_features
        return np.asarray([f"{n}_days_since" for n in names], dtype=object)

    @staticmethod
    def _dates(X: Any) -> pd.DataFrame:
        frame = pd.DataFrame(X)
        return frame.apply(lambda c: pd.to_datetime(c, errors="coerce", format="mixed"))


def build_preprocessor(spec: DatasetSpec, settings: dict[str, Any]) -> ColumnTransformer:
    """One branch per column role; text gets one TF-IDF branch per column."""
    roles = spec.roles
    branches: list[tuple[str, Any, Any]] = []
    if roles["numeric"]:
        branches.append(("numeric", SimpleImputer(strategy="median"), roles["numeric"]))
    if roles["categorical"]:
        encoder = OneHotEncoder(
            handle_unknown="infrequent_if_exist" if settings.get("one_hot_min_frequency") else "ignore",
            min_frequency=settings.get("one_hot_min_frequency"),
            sparse_output=True,
        )
        branches.append(
            (
                "categorical",
                make_pipeline(
                    FunctionTransformer(string_frame, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    encoder,
                ),
                roles["categorical"],
            )
        )
    if roles["ordinal"]:
        categories = [spec.ordinal_categories[c] for c in roles["ordinal"]]
        branches.append(
            (
                "ordinal",
                make_pipeline(
                    FunctionTransformer(string_frame, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="most_frequent"),
                    OrdinalEncoder(
                        categories=categories, handle_unknown="use_encoded_value", unknown_value=-1
                    ),
                ),
                roles["ordinal"],
            )
        )
    for column in roles["text"]:
        branches.append(
            (
                f"text_{column}",
                Pipeline(
                    [
                        ("as_text", FunctionTransformer(text_column, feature_names_out="one-to-one")),
                        (
                            "tfidf",
                            TfidfVectorizer(
                                max_features=int(settings.get("tfidf_max_features", 30)),
                                stop_words=settings.get("tfidf_stop_words", "english"),
                                binary=False,
                            ),
                        ),
                    ]
                ),
                column,  # a single name, so the branch receives a 1-D column
            )
        )
    if roles["date"]:
        branches.append(
            (
                "date",
                make_pipeline(DaysSince(), SimpleImputer(strategy="median", keep_empty_features=True)),
                roles["date"],
            )
        )
    return ColumnTransformer(branches, remainder="drop", sparse_threshold=0.0)
