"""Images: a folder with one sub-folder per class (torchvision's `ImageFolder` layout), given as
a path, an archive or `sklearn://digits`.

`raw_data` is the folder as fetched, packed into `images.tar.gz` (the files unchanged); the
cleaned and split data are `images.npz`: the decoded pixels as uint8 `images` (N, C, H, W), the
class of each image in `labels` and its path in `names`. Both have reproducible bytes, so the same
images are the same artifact version. `dataset.image.size: [height, width]` resizes every image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlpipe.data.kinds import Cleaned, DataKind, Fetched, NewData
from mlpipe.data.kinds.images import files, new_images
from mlpipe.data.kinds.images.files import ImageSet
from mlpipe.data.spec import DatasetSpec


class ImagesKind(DataKind):
    name = "images"
    options_key = "image"
    checks = Path(__file__).with_name("checks.py")

    def fetch(self, source: str, dest: Path, where: str) -> Fetched:
        where = f"{where}: source '{source}'"
        folder = files.fetch_image_folder(source, dest / "download", where)
        # Read every image once so a bad folder fails here, before it becomes a version.
        found = files.read_image_folder(folder, where, same_size=False)
        counts = found.class_counts()
        return Fetched(
            files.pack(folder, dest / "out" / files.RAW_FILE),
            f"fetched {len(found)} images in {len(counts)} classes from {folder}: {counts}",
            metrics={"images": len(found), "classes": len(counts)},
            metadata={"kind": self.name, "images": len(found), "classes": counts},
        )

    def clean(self, raw: Path, spec: DatasetSpec, workdir: Path, where: str) -> Cleaned:
        folder = files.unpack(raw, workdir / "unpacked", where)
        size = spec.options.get("size")
        found = files.read_image_folder(folder, where, tuple(size) if size else None)
        if not spec.cleaning.get("drop_duplicates"):
            return Cleaned(found, len(found), {"duplicate images": 0})
        kept, duplicates = files.drop_duplicates(found)
        return Cleaned(kept, len(found), {"duplicate images": duplicates})

    def read(self, path: Path, where: str) -> ImageSet:
        return files.read_arrays(path, where)

    def write(self, data: ImageSet, folder: Path, name: str) -> Path:
        return files.write_arrays(data, folder / files.ARRAYS_FILE)

    def describe(self, data: ImageSet) -> dict[str, Any]:
        return {
            "kind": self.name,
            "images": len(data),
            "shape": list(data.shape),
            "classes": data.class_counts(),
        }

    def schema(self, data: ImageSet) -> dict[str, Any]:
        """The pixels as a uint8 tensor (N, C, H, W), the class of each image as a string."""
        from mlflow.data.schema import TensorDatasetSchema
        from mlflow.types import ColSpec, Schema, TensorSpec

        pixels = TensorSpec(data.images.dtype, (-1, *data.shape), "images")
        return TensorDatasetSchema(Schema([pixels]), Schema([ColSpec("string", "labels")])).to_dict()

    def size(self, data: ImageSet) -> int:
        return len(data)

    def split_rows(
        self, data: ImageSet, test_size: float, seed: int, stratify_by: str | None, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stratified by class whenever a stratify column is named (the class is the label)."""
        return files.split_image_rows(data, test_size, seed, stratify_by is not None, where)

    def summary(self, data: ImageSet, spec: DatasetSpec) -> pd.DataFrame:
        """The class of each image, and its mean pixel value (a cheap summary whose shift means
        the images changed)."""
        brightness = data.images.reshape(len(data), -1).mean(axis=1)
        return pd.DataFrame({spec.target: data.labels, "brightness": brightness})

    def model_input(self, data: ImageSet, spec: DatasetSpec) -> np.ndarray:
        return data.images.astype(np.float32)

    def target(self, data: ImageSet, spec: DatasetSpec) -> np.ndarray:
        return data.labels

    def take(self, data: ImageSet, rows: np.ndarray) -> ImageSet:
        return data.take(rows)

    def read_new(
        self, source: str, dest: Path, spec: DatasetSpec, key: list[str] | None, where: str
    ) -> NewData:
        """Every image under the folder (or archive), keyed by its path inside it, hashed by its
        bytes: one file changed is one image to score again."""
        return new_images.read_new_images(source, dest, key, where)

    def batch(self, new: NewData, rows: np.ndarray) -> new_images.ImageBatch:
        return new_images.ImageBatch(str(new.rows), [new.keys[i] for i in rows.tolist()])

    def load_batch(
        self, batch: new_images.ImageBatch, spec: DatasetSpec, where: str
    ) -> tuple[ImageSet, dict[int, str]]:
        size = spec.options.get("size")
        return new_images.load_images(batch, tuple(size) if size else None, where)


KIND = ImagesKind()
