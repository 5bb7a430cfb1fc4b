"""Exporting the image classifier as an MLflow pytorch model, and loading it back without the
project: TorchScript (`torch.jit.script`, the default) or `torch.export` (`export.format=torch_export`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mlpipe
from mlpipe.errors import StepError
from mlpipe.models import image_pyfunc
from mlpipe.models.model_config import pinned_requirements
from mlpipe.models.torch_network import exported_program, script, torchscript_warnings
from mlpipe.tracking.secrets import environment

FORMATS = ("torchscript", "torch_export")
MODEL_FILES = {"torchscript": "data/model.pth", "torch_export": "data/model.pt2"}
MODEL_REQUIREMENTS = ("mlflow", "torch", "numpy", "pillow", "pandas")
PYFUNC_LOADER = "mlpipe.models.image_pyfunc"  # takes encoded images of any size too (MLflow's does not)
# mlflow.pytorch refuses to load a "pickle"-format model unless this is set; the TorchScript
# archive is what we wrote ourselves and torch.jit.load runs no Python from it.
ALLOW_PICKLE = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def image_signature(n_classes: int):  # -> ModelSignature
    """A column `image` in (PNG or JPEG bytes, base64 text, or pixels, of any size: see
    `image_pyfunc`), one probability per class out. The column's type is `any`: MLflow's parsers
    then hand over what the client sent (the text of base64, the lists of pixels of `inputs` JSON),
    and the model reads it (MLflow leaves the data to it: `pyfunc_input`)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), image_pyfunc.COLUMN)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes))]),
    )


def tensor_signature(channels: int, n_classes: int):  # -> ModelSignature
    """Pixels (float32, any batch size, height and width) in: what mlflow.pytorch saves with (its
    `pt2` format exports the module with the -1 dimensions dynamic); the MLmodel then gets
    `image_signature`, which says all the pyfunc takes."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes))]),
    )


def export_model(
    module: nn.Module, export_format: str, example: torch.Tensor, classes: list[str], path: Path
) -> tuple[Path, float]:
    """Save the inference module as an MLflow model at `path`; return it and the largest
    difference between the exported and the eager module's outputs on `example`. The module
    file loads with plain torch; MLflow's pyfunc flavor runs it through `image_pyfunc`, which
    ships inside the model and takes the images users have."""
    import mlflow.pytorch
    from mlflow.models import Model

    if export_format not in FORMATS:
        raise StepError(f"model config: export.format '{export_format}' is not one of {', '.join(FORMATS)}")
    module = module.cpu().eval()
    example = example.cpu()
    channels, height, width = (int(d) for d in example.shape[1:])
    options: dict[str, Any] = {
        "signature": tensor_signature(channels, len(classes)),
        "input_example": example[:5].numpy(),  # pixels: one of the inputs the pyfunc takes
        "code_paths": [str(Path(mlpipe.__file__).parent)],
        "pip_requirements": pinned_requirements(MODEL_REQUIREMENTS),
        "metadata": {
            "task": "classification",
            "classes": classes,
            "output": "probabilities",  # one column per class, in the order of `classes`
            "export_format": export_format,
            "channels": channels,
            "trained_on_size": [height, width],  # [H, W] of the training images (any size is taken)
            "input": (
                f"column '{image_pyfunc.COLUMN}': PNG or JPEG images (bytes, or base64 text) or pixels "
                "[H, W] or [C, H, W] (0-255), any size, grayscale or RGB; or float32 pixels (N, C, H, W)"
            ),
        },
    }
    # The pickle-format notice is about pickled Python objects; a TorchScript archive is not one.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    if export_format == "torchscript":
        scripted, difference = script(module, example)
        with torchscript_warnings():
            mlflow.pytorch.save_model(scripted, str(path), serialization_format="pickle", **options)
    else:
        program = exported_program(module, example)  # checked here, where the error is clear
        with torch.no_grad():
            difference = float((program.module()(example) - module(example)).abs().max())
        mlflow.pytorch.save_model(module, str(path), serialization_format="pt2", **options)
    # The pytorch flavor stays (mlflow.pytorch.load_model works); pyfunc loads through ours.
    mlmodel = Model.load(str(path / "MLmodel"))
    mlmodel.flavors["python_function"]["loader_module"] = PYFUNC_LOADER
    mlmodel.signature = image_signature(len(classes))
    mlmodel.save(str(path / "MLmodel"))
    return path, difference


def model_format(model_dir: Path) -> str:
    for name, file in MODEL_FILES.items():
        if (model_dir / file).is_file():
            return name
    raise StepError(f"model folder '{model_dir}' holds neither {' nor '.join(MODEL_FILES.values())}")


def load_pyfunc(model_dir: Path):  # -> mlflow.pyfunc.PyFuncModel
    """The exported model as serving loads it (pyfunc, signature enforced)."""
    import mlflow.pyfunc

    before = os.environ.get(ALLOW_PICKLE)
    if model_format(model_dir) == "torchscript":
        os.environ[ALLOW_PICKLE] = "true"  # for this load only (steps may share one process)
    try:
        with torchscript_warnings(), warnings.catch_warnings():
            # mlflow.pytorch loads a TorchScript file through torch.load, which says so.
            warnings.filterwarnings("ignore", "'torch.load' received a zip file", UserWarning)
            return mlflow.pyfunc.load_model(str(model_dir))
    finally:
        if before is None:
            os.environ.pop(ALLOW_PICKLE, None)
        else:
            os.environ[ALLOW_PICKLE] = before


# Runs in a fresh interpreter: only torch and numpy, the project's package made unimportable.
FRESH_PROCESS_SCRIPT = """
import json, sys, warnings
sys.modules["mlpipe"] = None  # importing the project now fails: the model must not need it
warnings.simplefilter("ignore", FutureWarning)  # the TorchScript deprecation, shown by the caller
import numpy as np, torch
fmt, model_file, inputs, outputs = sys.argv[1:]
if fmt == "torchscript":
    load, model = "torch.jit.load", torch.jit.load(model_file, map_location="cpu")
else:
    load, model = "torch.export.load", torch.export.load(model_file).module()
with torch.no_grad():
    probabilities = model(torch.from_numpy(np.load(inputs)))
np.save(outputs, probabilities.numpy())
print(json.dumps({"load": load, "loader": type(model).__name__, "torch": torch.__version__}))
"""


def score_in_fresh_process(
    model_dir: Path, images: np.ndarray, timeout: float = 300
) -> tuple[np.ndarray, dict]:
    """Load the model file with plain torch (`torch.jit.load` or `torch.export.load`) in a new
    Python process started outside the project, and score `images` (float32 (N, C, H, W))."""
    export_format = model_format(model_dir)
    with tempfile.TemporaryDirectory(prefix="fresh-process-") as tmp:
        inputs, outputs = Path(tmp) / "inputs.npy", Path(tmp) / "probabilities.npy"
        np.save(inputs, images.astype(np.float32))
        env = {k: v for k, v in environment().items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        done = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                FRESH_PROCESS_SCRIPT,
                export_format,
                str(model_dir / MODEL_FILES[export_format]),
                str(inputs),
                str(outputs),
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise StepError(f"loading {model_dir.name} ({export_format}) in a fresh process failed: {last}")
        return np.load(outputs), json.loads(done.stdout.strip().splitlines()[-1])
