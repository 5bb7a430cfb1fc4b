"""basic_cleaning's logic and the schema checks behind its error lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipe.data.kinds.table.cleaning import clean
from mlpipe.data.spec import DatasetSpec
from mlpipe.errors import StepError
from mlpipe.models.sklearn_model import signature as signature_of


def test_bounds_dates_duplicates_and_the_report(nyc_small: pd.DataFrame, nyc_spec: DatasetSpec):
    raw = pd.concat([nyc_small, nyc_small.head(3)], ignore_index=True)  # 3 exact duplicates
    raw.loc[0, "price"] = 5  # below 10
    raw.loc[1, "longitude"] = -80.0  # outside New York
    raw.loc[2, "price"] = np.nan  # no target
    raw.loc[4, "reviews_per_month"] = np.nan  # a missing feature is kept (imputed later)
    report = clean(raw, nyc_spec, "basic_cleaning: raw")
    df = report.data
    assert report.dropped["price missing"] == 1
    assert report.dropped["price outside [10, 350]"] == 1 + int((nyc_small.price > 350).sum())
    assert report.dropped["longitude outside [-74.25, -73.5]"] == 1
    assert report.dropped["exact duplicate"] == 0  # the duplicated rows 0-2 were dropped already
    assert report.rows_in == len(raw) and report.rows_out == len(df)
    assert df.price.between(10, 350).all()
    assert pd.api.types.is_datetime64_any_dtype(df.last_review)
    assert df.id.tolist().count(nyc_small.id[4]) == 1  # kept despite its missing feature
    assert "rows in" in report.describe()


def test_exact_duplicates_are_dropped(nyc_small: pd.DataFrame, nyc_spec: DatasetSpec):
    raw = pd.concat([nyc_small, nyc_small.iloc[[10, 11]]], ignore_index=True)
    report = clean(raw, nyc_spec, "w")
    df = report.data
    assert report.dropped["exact duplicate"] == 2
    assert not df.duplicated().any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns=["room_type"]), r"w lacks required column\(s\) 'room_type'"),
        (lambda d: d.assign(price=np.nan), "target column 'price' is empty"),
        (
            lambda d: d.assign(minimum_nights=d.minimum_nights.astype(str).where(d.index != 7, "two")),
            "column 'minimum_nights' has non-numeric value 'two' in data row 8; expected numbers",
        ),
        (lambda d: d.assign(price=1.0), "every row was dropped by cleaning"),
    ],
)
def test_bad_input_is_one_clear_line(nyc_small: pd.DataFrame, nyc_spec: DatasetSpec, change, message):
    with pytest.raises(StepError, match=message) as info:
        clean(change(nyc_small), nyc_spec, "w")
    assert "\n" not in str(info.value)


def test_numbers_written_as_text_are_accepted(nyc_small: pd.DataFrame, nyc_spec: DatasetSpec):
    df = clean(nyc_small.assign(price=nyc_small.price.astype(str)), nyc_spec, "w").data
    assert pd.api.types.is_numeric_dtype(df.price)


def test_the_signature_names_the_features_with_the_type_of_their_role(nyc_spec: DatasetSpec):
    signature = signature_of(nyc_spec, "double", predict_methods=False)
    assert signature.inputs.input_names() == nyc_spec.features
    types = {c.name: c.type.name for c in signature.inputs.inputs}
    assert {types[c] for c in nyc_spec.roles["numeric"]} == {"double"}
    assert {
        types[c] for role in ("categorical", "ordinal", "text", "date") for c in nyc_spec.roles[role]
    } == {"string"}
    assert signature.inputs.pandas_types()  # what the scoring server reads text/csv with
    assert signature.params is None
    assert (
        signature_of(nyc_spec, "string", predict_methods=True).params.to_dict()[0]["name"] == "predict_method"
    )


def test_config_errors_name_the_problem():
    base = {
        "name": "x",
        "source": "x.csv",
        "target": "y",
        "task": "regression",
        "columns": {"numeric": ["a"]},
        "metrics": {"validation": "val_mae", "test": "mae", "direction": "minimize"},
    }
    with pytest.raises(
        StepError, match="key 'task' is 'forecast'; expected 'regression' or 'classification'"
    ):
        DatasetSpec.from_dict({**base, "task": "forecast"})
    with pytest.raises(StepError, match=r"unknown key 'columns.nums'; expected one of numeric, categorical"):
        DatasetSpec.from_dict({**base, "columns": {"nums": ["a"]}})
    with pytest.raises(StepError, match=r"column 'a' is named twice \(numeric and categorical\)"):
        DatasetSpec.from_dict({**base, "columns": {"numeric": ["a"], "categorical": ["a"]}})
    with pytest.raises(StepError, match="missing key 'target'"):
        DatasetSpec.from_dict({k: v for k, v in base.items() if k != "target"})
