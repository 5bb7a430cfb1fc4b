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

from mlpipe.errors import StepError
from mlpipe.models.model_config import pinned_requirements
from mlpipe.models.torch_network import exported_program, script, torchscript_warnings
from mlpipe.tracking.secrets import environment

FORMATS = ("torchscript", "torch_export")
MODEL_FILES = {"torchscript": "data/model.pth", "torch_export": "data/model.pt2"}
MODEL_REQUIREMENTS = ("mlflow", "torch", "numpy")
# mlflow.pytorch refuses to load a "pickle"-format model unless this is set; the TorchScript
# archive is what we wrote ourselves and torch.jit.load runs no Python from it.
ALLOW_PICKLE = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def tensor_signature(shape: tuple[int, int, int], n_classes: int):  # -> ModelSignature
    """Raw pixels (float32, any batch size) in, one probability per class out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes))]),
    )


def export_model(
    module: nn.Module, export_format: str, example: torch.Tensor, classes: list[str], path: Path
) -> tuple[Path, float]:
    """Save the inference module as an MLflow model at `path`; return it and the largest
    difference between the exported and the eager module's outputs on `example`."""
    import mlflow.pytorch

    if export_format not in FORMATS:
        raise StepError(f"model config: export.format '{export_format}' is not one of {', '.join(FORMATS)}")
    module = module.cpu().eval()
    example = example.cpu()
    shape = tuple(int(d) for d in example.shape[1:])
    options: dict[str, Any] = {
        "signature": tensor_signature(shape, len(classes)),  # type: ignore[arg-type]
        "input_example": example[:5].numpy(),
        "pip_requirements": pinned_requirements(MODEL_REQUIREMENTS),
        "metadata": {
            "task": "classification",
            "classes": classes,
            "output": "probabilities",  # one column per class, in the order of `classes`
            "export_format": export_format,
            "input": "float32 pixels 0-255",
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
