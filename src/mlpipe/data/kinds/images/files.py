"""Image datasets: fetching an image folder, reading it, and the files images travel in.

An image dataset is a folder with one sub-folder per class (torchvision's `ImageFolder` layout).
Between steps images travel in two forms, both with reproducible bytes so that identical content
is the same artifact version:
- `raw_data` is the folder as fetched, packed into `images.tar.gz` (the files unchanged);
- `clean_data`, `trainval_data` and `test_data` are `images.npz`: the decoded pixels as uint8
  `images` (N, C, H, W), the class name of each image in `labels`, its path in `names`.
"""

from __future__ import annotations

import gzip
import tarfile
import urllib.parse
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.data.sources import fetch
from mlpipe.errors import StepError
from mlpipe.project import resolve_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
RAW_FILE = "images.tar.gz"
ARRAYS_FILE = "images.npz"
BUILTIN = {"digits"}  # sklearn://<name>: image sets a package ships, written out as a folder
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entries carry this date: same content, same bytes


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # str (N,): the class (sub-folder) name of each image
    names: np.ndarray  # str (N,): the image's path inside the folder, for error lines

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def take(self, rows: np.ndarray) -> ImageSet:
        return ImageSet(self.images[rows], self.labels[rows], self.names[rows])

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels.tolist()).items()))


# -- fetching --------------------------------------------------------------------------------
def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def fetch_image_folder(source: str, dest: Path, where: str) -> Path:
    """The source as a local ImageFolder: `sklearn://digits`, a folder, or an archive given as
    a path or URL (unpacked into `dest`)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "sklearn":
        if parsed.netloc not in BUILTIN:
            raise StepError(f"{where}: unknown image set '{source}'; expected one of sklearn://digits")
        return write_digits_folder(dest / parsed.netloc)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:
        local = resolve_path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else source)
        if local.is_dir():
            return local
    if not is_archive(parsed.path):
        raise StepError(
            f"{where}: image source '{source}' is neither a folder nor an archive "
            f"({', '.join(ARCHIVE_SUFFIXES)}); expected a folder with one sub-folder per class"
        )
    archive = fetch(source, dest / "archive", where)
    return unpack(archive, dest / "unpacked", where)


def write_digits_folder(folder: Path) -> Path:
    """scikit-learn's 8x8 digits (pixel values 0-16) as 8-bit grayscale PNGs, one folder per digit."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    for number, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        target = folder / str(label) / f"{number:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(target)
    return folder


def unpack(archive: Path, dest: Path, where: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")  # refuses absolute paths and links out of dest
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise StepError(f"{where}: archive '{archive.name}' could not be unpacked: {e}") from e
    return dest


def pack(folder: Path, target: Path) -> Path:
    """A tar.gz of the folder whose bytes depend only on the file names and contents."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        target.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf,
    ):
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(file.relative_to(folder).as_posix())
            info.size = file.stat().st_size
            info.mode = 0o644
            with file.open("rb") as f:
                tf.addfile(info, f)
    return target


# -- reading an image folder -----------------------------------------------------------------
def class_folders(folder: Path, where: str) -> list[Path]:
    """The class sub-folders; an archive that wraps them in one top folder is looked into."""
    if not folder.is_dir():
        raise StepError(f"{where}: image folder '{folder}' not found")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if len(subfolders) == 1 and not loose and any(p.is_dir() for p in subfolders[0].iterdir()):
        return class_folders(subfolders[0], where)
    if not subfolders:
        found = f"{len(loose)} loose image(s)" if loose else "nothing"
        raise StepError(
            f"{where}: image folder '{folder}' has no class sub-folders (found {found}); "
            "expected one sub-folder of images per class"
        )
    return subfolders


CHANNELS = {"1": 1, "L": 1, "I;16": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def read_image(path: Path, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """One image as uint8 (C, H, W); resized to `size` (height, width) when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return pixels_of(image, size)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise StepError(f"{where}: image '{path}' could not be read: {e}") from e


def pixels_of(image: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded PIL image as uint8 (C, H, W), its mode made one of CHANNELS' (as every image is
    read: training data, new data, and what a served model is sent); resized when asked."""
    from PIL import Image

    if image.mode == "P":  # a palette image: its colours, with transparency if any
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode not in CHANNELS or image.mode in ("1", "I;16"):
        image = image.convert("RGB" if len(image.getbands()) >= 3 else "L")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)


def read_image_folder(
    folder: Path, where: str, size: tuple[int, int] | None = None, same_size: bool = True
) -> ImageSet:
    """Every image under the class sub-folders. Files that are not images by suffix are skipped
    (as ImageFolder does); an unreadable image, a class without images, mixed channel counts or
    (without `size`) mixed sizes are errors naming the file. With `same_size=False` images of
    any size are only checked: the result keeps their labels and names, and one pixel of each."""
    images, labels, names = [], [], []
    first: tuple[Path, tuple[int, ...]] | None = None
    for class_dir in class_folders(folder, where):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise StepError(
                f"{where}: class folder '{class_dir}' holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        for file in files:
            pixels = read_image(file, size, where)
            if first is None:
                first = (file, pixels.shape)
            elif pixels.shape[0] != first[1][0]:
                raise StepError(
                    f"{where}: image '{file}' has {pixels.shape[0]} channel(s) but '{first[0]}' has "
                    f"{first[1][0]}; expected one channel count for every image"
                )
            elif pixels.shape != first[1] and same_size:
                raise StepError(
                    f"{where}: image '{file}' is {pixels.shape[2]}x{pixels.shape[1]} but '{first[0]}' is "
                    f"{first[1][2]}x{first[1][1]}; set dataset.image.size to resize every image"
                )
            images.append(pixels if same_size else pixels[:, :1, :1])
            labels.append(class_dir.name)
            names.append(file.relative_to(class_dir.parent).as_posix())
    return ImageSet(np.stack(images), np.asarray(labels, dtype=str), np.asarray(names, dtype=str))


# -- the arrays file between steps -----------------------------------------------------------
def write_arrays(images: ImageSet, path: Path) -> Path:
    """An `.npz` numpy reads with `np.load`, written with fixed entry dates (reproducible bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in ("images", "labels", "names"):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(getattr(images, key)), allow_pickle=False)
    return path


def read_arrays(path: Path, where: str) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            result = ImageSet(data["images"], data["labels"], data["names"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise StepError(
            f"{where}: '{path.name}' is not an image arrays file (images, labels, names): {e}"
        ) from e
    if result.images.ndim != 4 or result.images.dtype != np.uint8 or len(result.images) != len(result.labels):
        raise StepError(
            f"{where}: '{path.name}' holds images {result.images.dtype}{list(result.images.shape)}; "
            "expected uint8 (N, C, H, W) with one label per image"
        )
    if len(result) == 0:
        raise StepError(f"{where}: '{path.name}' holds no images")
    return result


def drop_duplicates(images: ImageSet) -> tuple[ImageSet, int]:
    """Keep the first of identical images (same pixels, whatever the label)."""
    seen: set[bytes] = set()
    keep = []
    for pixels in images.images:
        key = pixels.tobytes()
        keep.append(key not in seen)
        seen.add(key)
    mask = np.asarray(keep)
    return images.take(np.flatnonzero(mask)), int((~mask).sum())


def manifest(images: ImageSet) -> pd.DataFrame:
    """One row per image: its name and label (what a table split or drift test works on)."""
    return pd.DataFrame({"name": images.names, "label": images.labels, "row": np.arange(len(images))})


def split_image_rows(
    images: ImageSet, test_size: float, seed: int, stratified: bool, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the images of each part; stratified by class: every class needs at
    least two images, one on each side."""
    from mlpipe.data.splitting import split_rows

    counts = images.class_counts()
    if stratified:
        small = {label: n for label, n in counts.items() if n < 2}
        if small:
            label, n = next(iter(small.items()))
            raise StepError(
                f"{where}: class '{label}' (folder '{label}/') has {n} image(s); a stratified split "
                f"needs at least 2 per class ({len(small)} class(es) short: {', '.join(small)})"
            )
    return split_rows(manifest(images), test_size, seed, "label" if stratified else None, where)
