"""Data tests of an image dataset (`kind: images`), driven by the dataset config's `checks`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpipe.drift import kl_divergence, ks_pvalue, sample_for_ks
from mlpipe.images import ImageSet
from mlpipe.schema import DatasetSpec


def brightness(images: ImageSet) -> pd.Series:
    """Mean pixel value of each image: a cheap summary whose shift means the images changed."""
    return pd.Series(images.images.reshape(len(images), -1).mean(axis=1))


def test_image_count(images: ImageSet, spec: DatasetSpec) -> None:
    low, high = spec.checks.get("rows", [1, None])
    assert len(images) >= low, f"{len(images)} images, expected at least {low}"
    if high is not None:
        assert len(images) <= high, f"{len(images)} images, expected at most {high}"


def test_known_classes(images: ImageSet, spec: DatasetSpec) -> None:
    expected = [str(c) for c in spec.checks.get("classes") or []]
    if not expected:
        pytest.skip("no checks.classes in the dataset config")
    unknown = sorted(set(images.classes) - set(expected))
    missing = sorted(set(expected) - set(images.classes))
    assert not unknown and not missing, f"unknown classes {unknown}, missing classes {missing}"


def test_images_per_class(images: ImageSet, spec: DatasetSpec) -> None:
    minimum = int(spec.checks.get("min_per_class", 2))
    short = {label: n for label, n in images.class_counts().items() if n < minimum}
    assert not short, f"classes with fewer than {minimum} images: {short}"


def test_image_shape(images: ImageSet, spec: DatasetSpec) -> None:
    expected = spec.checks.get("shape")
    if not expected:
        pytest.skip("no checks.shape in the dataset config")
    assert list(images.shape) == list(expected), (
        f"images are {list(images.shape)}, expected {expected} (C, H, W)"
    )


def test_pixel_values(images: ImageSet, spec: DatasetSpec) -> None:
    low, high = spec.checks.get("value_range", [0, 255])
    found = (int(images.images.min()), int(images.images.max()))
    assert low <= found[0] and found[1] <= high, (
        f"pixel values span {list(found)}, expected within [{low}, {high}]"
    )


def test_no_blank_images(images: ImageSet, spec: DatasetSpec) -> None:
    contrast = spec.checks.get("min_contrast")
    if contrast is None:
        pytest.skip("no checks.min_contrast in the dataset config")
    flat = images.images.reshape(len(images), -1)
    spread = flat.max(axis=1).astype(int) - flat.min(axis=1).astype(int)
    blank = images.names[spread < contrast]
    assert len(blank) == 0, f"{len(blank)} image(s) with contrast below {contrast}, e.g. {list(blank[:3])}"


def test_class_drift(
    images: ImageSet,
    ref_images: ImageSet,
    spec: DatasetSpec,
    kl_threshold: float,
    measurements: dict[str, Any],
) -> None:
    if "label" not in (spec.checks.get("drift_columns") or []):
        pytest.skip("label is not in drift_columns of the dataset config")
    divergence = kl_divergence(pd.Series(ref_images.labels), pd.Series(images.labels))
    measurements["kl.label"] = divergence
    assert divergence < kl_threshold, (
        f"class distribution KL divergence from the reference {divergence:.4f}, expected below {kl_threshold}"
    )


def test_brightness_drift(
    images: ImageSet,
    ref_images: ImageSet,
    spec: DatasetSpec,
    ks_alpha: float,
    ks_sample_size: int,
    measurements: dict[str, Any],
) -> None:
    if "brightness" not in (spec.checks.get("ks_columns") or []):
        pytest.skip("brightness is not in ks_columns of the dataset config")
    pvalue = ks_pvalue(
        sample_for_ks(brightness(ref_images), ks_sample_size),
        sample_for_ks(brightness(images), ks_sample_size),
    )
    measurements["ks_pvalue.brightness"] = pvalue
    assert np.isnan(pvalue) or pvalue >= ks_alpha, f"mean-brightness KS p-value {pvalue:.3g} below {ks_alpha}"
