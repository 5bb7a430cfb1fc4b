"""Data tests of an image dataset (`kind: images`), driven by the dataset config's `checks`
(run by data_check, with the fixtures of mlpipe.data.checking)."""

from __future__ import annotations

import pytest

from mlpipe.data.kinds.images.files import ImageSet
from mlpipe.data.spec import DatasetSpec


def test_known_classes(data: ImageSet, spec: DatasetSpec) -> None:
    expected = [str(c) for c in spec.checks.get("classes") or []]
    if not expected:
        pytest.skip("no checks.classes in the dataset config")
    unknown = sorted(set(data.classes) - set(expected))
    missing = sorted(set(expected) - set(data.classes))
    assert not unknown and not missing, f"unknown classes {unknown}, missing classes {missing}"


def test_images_per_class(data: ImageSet, spec: DatasetSpec) -> None:
    minimum = int(spec.checks.get("min_per_class", 2))
    short = {label: n for label, n in data.class_counts().items() if n < minimum}
    assert not short, f"classes with fewer than {minimum} images: {short}"


def test_image_shape(data: ImageSet, spec: DatasetSpec) -> None:
    expected = spec.checks.get("shape")
    if not expected:
        pytest.skip("no checks.shape in the dataset config")
    assert list(data.shape) == list(expected), f"images are {list(data.shape)}, expected {expected} (C, H, W)"


def test_pixel_values(data: ImageSet, spec: DatasetSpec) -> None:
    low, high = spec.checks.get("value_range", [0, 255])
    found = (int(data.images.min()), int(data.images.max()))
    assert low <= found[0] and found[1] <= high, (
        f"pixel values span {list(found)}, expected within [{low}, {high}]"
    )


def test_no_blank_images(data: ImageSet, spec: DatasetSpec) -> None:
    contrast = spec.checks.get("min_contrast")
    if contrast is None:
        pytest.skip("no checks.min_contrast in the dataset config")
    flat = data.images.reshape(len(data), -1)
    spread = flat.max(axis=1).astype(int) - flat.min(axis=1).astype(int)
    blank = data.names[spread < contrast]
    assert len(blank) == 0, f"{len(blank)} image(s) with contrast below {contrast}, e.g. {list(blank[:3])}"
