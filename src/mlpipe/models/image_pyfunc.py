"""How MLflow's pyfunc flavor runs an exported image classifier (its MLmodel file names this
module): it takes the images users have, turns each into the pixels the network was trained on,
and runs the exported module (TorchScript or `torch.export`), which resizes every image itself
to the network's input size, as in training, and returns one probability per class.

What `predict` takes:
- a table with a column `image` (a served model gets it from `dataframe_split` JSON) whose cells
  are PNG or JPEG files as bytes or as base64 text, or pixels ([H, W] or [C, H, W], 0-255);
- pixel arrays: (N, C, H, W) or (N, H, W), values 0-255, as the pipeline's own steps score;
- `{"image": [...]}`, what MLflow makes of `{"inputs": [...]}` JSON.

Any height and width: images of one size are scored together. Grayscale, RGB or RGBA are turned
into the channels the model was trained on. An image that cannot be read is refused with one line
naming it (its row) and what was expected, sizes as [H, W]. It ships inside the model (`code/`);
the module file itself still loads with plain torch, without this package.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Any

import numpy as np

COLUMN = "image"
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB -> gray, as PIL's "L"


class ImageInputError(ValueError):
    """An image the model cannot take: the client's to fix (a server answers 400)."""


def decode(data: bytes, what: str) -> np.ndarray:
    """A PNG or JPEG file's pixels as float32 (C, H, W), channels as the image has them."""
    from PIL import Image, UnidentifiedImageError

    from mlpipe.data.kinds.images.files import pixels_of

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return pixels_of(image).astype(np.float32)
    except UnidentifiedImageError:  # its message names an in-memory file object: not the user's
        raise ImageInputError(f"{what}: not a readable PNG or JPEG image") from None
    except (OSError, ValueError) as e:
        raise ImageInputError(f"{what}: a damaged PNG or JPEG image ({e})") from None


def as_pixels(value: Any, what: str) -> np.ndarray:
    """One image as float32 (C, H, W): encoded bytes, base64 text (or a data: URL), or pixels."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode(bytes(value), what)
    if isinstance(value, str):
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageInputError(
                f"{what}: text that is not base64; expected a PNG or JPEG file as base64 text"
            ) from None
        return decode(data, what)
    try:
        pixels = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ImageInputError(
            f"{what}: a {type(value).__name__}; expected PNG or JPEG bytes, base64 text or pixels"
        ) from None
    if pixels.ndim == 2:
        return pixels[None]
    if pixels.ndim == 3 and pixels.shape[0] in (1, 2, 3, 4):
        return pixels
    if pixels.ndim == 3 and pixels.shape[-1] in (1, 2, 3, 4):  # [H, W, C], as PIL and PNG have it
        return np.moveaxis(pixels, -1, 0)
    raise ImageInputError(
        f"{what}: pixels of shape {list(pixels.shape)}; expected [H, W] or [C, H, W] with C 1, 3 or 4"
    )


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Grayscale, gray with alpha, RGB or RGBA as the model's channel count (alpha dropped; RGB to
    gray by luminance; gray repeated)."""
    have = pixels.shape[0]
    if have == channels:
        return pixels
    colour = pixels[:3] if have >= 3 else np.repeat(pixels[:1], 3, axis=0)  # alpha dropped
    if channels == 1:
        return np.tensordot(LUMINANCE, colour, axes=1)[None].astype(np.float32)
    if channels == 3:
        return colour
    return np.concatenate([colour, np.full_like(colour[:1], 255.0)])  # channels == 4: opaque


def images_of(data: Any) -> tuple[list[Any], str]:
    """The images in what a client sent, and how to name one of them (`{}`: its number)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if COLUMN not in data.columns:
            raise ImageInputError(
                f"model input has columns {list(map(str, data.columns))}; expected a column '{COLUMN}' "
                "of PNG or JPEG images (bytes, or base64 text) or pixels"
            )
        return list(data[COLUMN]), f"row {{}} of column '{COLUMN}'"
    if isinstance(data, dict):
        if COLUMN not in data:
            raise ImageInputError(f"model input has keys {sorted(data)}; expected '{COLUMN}'")
        return list(data[COLUMN]), f"image {{}} of '{COLUMN}'"
    if hasattr(data, "numpy") and not isinstance(data, np.ndarray):  # a torch tensor
        data = data.numpy()
    if isinstance(data, np.ndarray) and data.dtype != object and data.ndim not in (3, 4):
        raise ImageInputError(
            f"model input is an array of shape {list(data.shape)}; expected images (N, C, H, W) or "
            "(N, H, W), or a column 'image'"
        )
    return list(data), "image {}"


class ImagePyfunc:
    def __init__(self, module: Any, channels: int, classes: list[str]) -> None:
        self.module = module
        self.channels = channels
        self.classes = classes

    def get_raw_model(self) -> Any:
        return self.module

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """One probability per class (in the order of the metadata's `classes`) per image."""
        import torch
        from mlflow.exceptions import MlflowException

        try:
            found, name = images_of(data)
            images = [
                to_channels(as_pixels(v, name.format(i + 1)), self.channels) for i, v in enumerate(found)
            ]
        except ImageInputError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
        out = np.zeros((len(images), len(self.classes)), dtype=np.float32)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape, []).append(i)
        with torch.no_grad():
            for rows in by_size.values():  # the module resizes each batch to its input size
                batch = torch.from_numpy(np.stack([images[i] for i in rows]))
                out[rows] = self.module(batch).numpy()
        return out


def load_module(data_dir: Path) -> Any:
    """The exported module, with plain torch: a TorchScript archive or a `torch.export` program."""
    import torch

    if (data_dir / "model.pth").is_file():
        return torch.jit.load(str(data_dir / "model.pth"), map_location="cpu").eval()
    return torch.export.load(str(data_dir / "model.pt2")).module()


def _load_pyfunc(path: str, model_config: Any = None) -> ImagePyfunc:
    import warnings

    from mlflow.models import Model

    from mlpipe.models.pyfunc_input import leave_data_to_the_model

    leave_data_to_the_model(__name__)
    data_dir = Path(path)
    metadata = Model.load(str(data_dir.parent / "MLmodel")).metadata or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch: TorchScript is deprecated
        module = load_module(data_dir)
    return ImagePyfunc(module, int(metadata["channels"]), [str(c) for c in metadata["classes"]])
