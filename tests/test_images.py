"""Image folders: fetching, reading, the files images travel in, the split, and bad input."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlpipe.data.kinds.images import files as images
from mlpipe.digests import digest_path
from mlpipe.errors import StepError
from mlpipe.tracking.artifacts import ArtifactStore
from tests.conftest import DATASETS, run_component

DIGITS = str(DATASETS / "digits.yaml")

WHERE = "download: source 'test'"


def make_folder(root: Path, counts: dict[str, int], mode: str = "L", size: tuple[int, int] = (6, 5)) -> Path:
    """An ImageFolder of small random images: `counts` images per class."""
    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3}[mode]
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(
                root / label / f"{i}.png"
            )
    return root


def test_digits_are_served_as_an_image_folder(tmp_path: Path) -> None:
    folder = images.fetch_image_folder("sklearn://digits", tmp_path, WHERE)
    found = images.read_image_folder(folder, WHERE)
    assert len(found) == 1797
    assert found.classes == [str(d) for d in range(10)]
    assert found.shape == (1, 8, 8)
    assert found.images.dtype == np.uint8 and found.images.max() == 255 and found.images.min() == 0
    assert found.names[0] == "0/0000.png"


def test_folder_reads_with_labels_from_subfolders(tmp_path: Path) -> None:
    make_folder(tmp_path / "pets", {"cat": 3, "dog": 4}, mode="RGB")
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image: skipped like ImageFolder does")
    found = images.read_image_folder(tmp_path / "pets", WHERE)
    assert found.class_counts() == {"cat": 3, "dog": 4}
    assert found.shape == (3, 5, 6)  # channels, height, width
    with Image.open(tmp_path / "pets" / "dog" / "2.png") as image:
        expected = np.moveaxis(np.asarray(image), -1, 0)
    assert np.array_equal(found.images[list(found.names).index("dog/2.png")], expected)


@pytest.mark.parametrize("archive", ["tar.gz", "zip"])
def test_archive_path_and_url_sources(tmp_path: Path, archive: str) -> None:
    source = make_folder(tmp_path / "src" / "wrapped", {"a": 2, "b": 2})  # one top folder wraps the classes
    if archive == "zip":
        path = tmp_path / "images.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for file in source.rglob("*.png"):
                zf.write(file, file.relative_to(source.parent).as_posix())
    else:
        path = images.pack(source.parent, tmp_path / "images.tar.gz")
    for given in (str(path), path.as_uri()):
        folder = images.fetch_image_folder(given, tmp_path / f"fetched-{given[:4]}", WHERE)
        assert images.read_image_folder(folder, WHERE).class_counts() == {"a": 2, "b": 2}


def test_packed_and_array_files_have_reproducible_bytes(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "imgs", {"x": 2, "y": 3})
    first = images.pack(folder, tmp_path / "one" / images.RAW_FILE)
    shutil.copytree(folder, tmp_path / "copy")  # other file times, same content
    second = images.pack(tmp_path / "copy", tmp_path / "two" / images.RAW_FILE)
    assert digest_path(first) == digest_path(second)
    found = images.read_image_folder(folder, WHERE)
    a = images.write_arrays(found, tmp_path / "a" / images.ARRAYS_FILE)
    b = images.write_arrays(found, tmp_path / "b" / images.ARRAYS_FILE)
    assert digest_path(a) == digest_path(b)
    back = images.read_arrays(a, WHERE)
    assert np.array_equal(back.images, found.images) and list(back.labels) == list(found.labels)


def test_resize_makes_mixed_sizes_uniform(tmp_path: Path) -> None:
    make_folder(tmp_path / "f", {"a": 2}, size=(6, 5))
    make_folder(tmp_path / "f", {"b": 2}, size=(9, 7))
    with pytest.raises(StepError, match=r"b/0\.png' is 9x7 but .* is 6x5; set dataset.image.size"):
        images.read_image_folder(tmp_path / "f", WHERE)
    assert images.read_image_folder(tmp_path / "f", WHERE, size=(4, 4)).shape == (1, 4, 4)


def test_duplicates_are_dropped(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    shutil.copy(folder / "a" / "0.png", folder / "b" / "copy.png")
    kept, dropped = images.drop_duplicates(images.read_image_folder(folder, WHERE))
    assert (len(kept), dropped) == (4, 1)


def test_split_is_stratified_by_class(tmp_path: Path) -> None:
    found = images.read_image_folder(make_folder(tmp_path / "f", {"a": 10, "b": 20}), WHERE)
    trainval, test = (found.take(rows) for rows in images.split_image_rows(found, 0.2, 0, True, WHERE))
    assert test.class_counts() == {"a": 2, "b": 4} and trainval.class_counts() == {"a": 8, "b": 16}
    assert not set(test.names) & set(trainval.names)


# -- bad input: one line naming the path -----------------------------------------------------
def test_folder_without_class_subfolders(tmp_path: Path) -> None:
    make_folder(tmp_path / "flat", {"a": 2})
    for file in (tmp_path / "flat" / "a").iterdir():
        file.rename(tmp_path / "flat" / file.name)
    (tmp_path / "flat" / "a").rmdir()
    with pytest.raises(StepError, match=r"flat' has no class sub-folders \(found 2 loose image\(s\)\)"):
        images.read_image_folder(tmp_path / "flat", WHERE)


def test_unreadable_image(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    (folder / "b" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(StepError, match=r"image '.*b/broken\.png' could not be read"):
        images.read_image_folder(folder, WHERE)


def test_mixed_channel_counts(tmp_path: Path) -> None:
    make_folder(tmp_path / "f", {"a": 2}, mode="L")
    make_folder(tmp_path / "f", {"b": 2}, mode="RGB")
    with pytest.raises(StepError, match=r"b/0\.png' has 3 channel\(s\) but '.*a/0\.png' has 1"):
        images.read_image_folder(tmp_path / "f", WHERE)


def test_class_with_too_few_images_for_the_split(tmp_path: Path) -> None:
    found = images.read_image_folder(make_folder(tmp_path / "f", {"a": 5, "rare": 1}), WHERE)
    with pytest.raises(StepError, match=r"class 'rare' \(folder 'rare/'\) has 1 image\(s\)"):
        images.split_image_rows(found, 0.2, 0, True, "data_split: clean_data:v0 (images.npz)")


def test_empty_class_folder_and_unknown_sources(tmp_path: Path) -> None:
    make_folder(tmp_path / "f", {"a": 2})
    (tmp_path / "f" / "empty").mkdir()
    with pytest.raises(StepError, match=r"class folder '.*empty' holds no images"):
        images.read_image_folder(tmp_path / "f", WHERE)
    with pytest.raises(StepError, match="unknown image set 'sklearn://nope'"):
        images.fetch_image_folder("sklearn://nope", tmp_path, WHERE)
    (tmp_path / "data.csv").write_text("a\n1\n")
    with pytest.raises(StepError, match=r"'.*data\.csv' is neither a folder nor an archive"):
        images.fetch_image_folder(str(tmp_path / "data.csv"), tmp_path, WHERE)


def test_download_step_fails_in_one_line_and_logs_no_version(
    tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder(tmp_path / "f", {"a": 2, "b": 2})
    (folder / "a" / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    code, err = run_component("get_data", ["--source", str(folder), "--dataset_config", DIGITS], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: download: source") and "a/bad.jpg' could not be read" in lines[-1]
    assert store.versions("raw_data") == []
    (folder / "a" / "bad.jpg").unlink()
    code, err = run_component("get_data", ["--source", str(folder), "--dataset_config", DIGITS], capsys)
    assert code == 0, err
    [version] = store.versions("raw_data")
    assert version.file == images.RAW_FILE and version.metadata["classes"] == {"a": 2, "b": 2}
