"""A folder of images as new data to score: every image file under it, in any layout (class
sub-folders are not needed: new images have no label), keyed by its path inside the folder and
hashed by its bytes, so only the files that changed are decoded and scored again."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlpipe.data.kinds import NewData
from mlpipe.data.kinds.images import files
from mlpipe.data.kinds.images.files import ImageSet
from mlpipe.errors import StepError

KEY_COLUMN = "path"


@dataclass(frozen=True)
class ImageBatch:
    """Images to score, as paths: a scorer decodes them (in parallel when there are several)."""

    folder: str
    names: list[str]  # paths inside `folder`


def file_hash(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_new_images(source: str, dest: Path, key: list[str] | None, where: str) -> NewData:
    if key is not None:
        raise StepError(
            f"{where}: inference.key is {key}; images are keyed by their path inside the source, "
            "expected null"
        )
    folder = files.fetch_image_folder(source, dest, f"{where}: source '{source}'")
    paths = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in files.IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not paths:
        raise StepError(
            f"{where}: source '{source}' holds no images ({', '.join(files.IMAGE_SUFFIXES)}); "
            "expected a folder or archive of images"
        )
    names = [p.relative_to(folder).as_posix() for p in paths]
    hashes = [file_hash(p) for p in paths]
    return NewData(names, hashes, pd.DataFrame({KEY_COLUMN: names}), {}, folder)


def load_images(
    batch: ImageBatch, size: tuple[int, int] | None, where: str
) -> tuple[ImageSet, dict[int, str]]:
    """The batch's images decoded (resized to `size`, height and width, when given); an
    unreadable one, or one whose shape differs from the others', is refused with the reason."""
    decoded: dict[int, np.ndarray] = {}
    refused: dict[int, str] = {}
    for position, name in enumerate(batch.names):
        try:
            decoded[position] = files.read_image(Path(batch.folder) / name, size, where)
        except StepError as e:
            refused[position] = f"not a readable image: {e.__cause__ or e}"
    shapes = Counter(pixels.shape for pixels in decoded.values())
    if shapes:
        common = shapes.most_common(1)[0][0]
        for position, pixels in list(decoded.items()):
            if pixels.shape != common:
                refused[position] = (
                    f"image is {pixels.shape[2]}x{pixels.shape[1]} with {pixels.shape[0]} channel(s), "
                    f"the others {common[2]}x{common[1]} with {common[0]}; set dataset.image.size to "
                    "resize every image"
                )
                del decoded[position]
    kept = sorted(decoded)
    pixels = np.stack([decoded[p] for p in kept]) if kept else np.zeros((0, 1, 1, 1), dtype=np.uint8)
    names = np.asarray([batch.names[p] for p in kept], dtype=str)
    return ImageSet(pixels, np.full(len(kept), "", dtype=str), names), refused
