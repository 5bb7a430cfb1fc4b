"""The image classifier from config: network, preprocessing, training loop, scripted export.

The exported model is one `nn.Sequential`: resize, normalize, the network, softmax. It takes raw
pixels (float32 (N, C, H, W), values 0-255, any height and width) and returns class
probabilities, so production needs none of this code. Training runs the same resize and normalize
modules in front of the network, so what was validated is what is exported.
"""

from __future__ import annotations

import logging
import os
import random
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision import transforms

from mlpipe.errors import StepError, cause

log = logging.getLogger("mlpipe.torch")
TORCHSCRIPT_WARNING = re.compile(r"`torch\.jit\.\w+` is deprecated")
_torchscript_warning_shown = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise StepError(f"model config: device '{requested}' asked for, but CUDA is not available here")
    return torch.device(requested)


def build_network(
    network: Mapping[str, Any], in_channels: int, input_size: tuple[int, int], n_classes: int
) -> nn.Sequential:
    """Conv blocks (conv, batch norm, ReLU, 2x2 max-pool) then fully connected layers with dropout."""
    kernel = int(network.get("kernel_size", 3))
    dropout = float(network.get("dropout", 0.0))
    batch_norm = bool(network.get("batch_norm", True))
    layers: list[nn.Module] = []
    channels, (height, width) = in_channels, input_size
    for width_out in network.get("conv_channels") or []:
        if height < 2 or width < 2:
            raise StepError(
                f"model config: network.conv_channels has {len(network['conv_channels'])} blocks, too many "
                f"for input_size {list(input_size)} (each halves the image); use fewer or a larger input_size"
            )
        layers += [nn.Conv2d(channels, int(width_out), kernel, padding=kernel // 2)]
        layers += [nn.BatchNorm2d(int(width_out))] if batch_norm else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
        channels, height, width = int(width_out), height // 2, width // 2
    layers.append(nn.Flatten())
    features = channels * height * width
    for hidden in network.get("hidden") or []:
        layers += [nn.Linear(features, int(hidden)), nn.ReLU(), nn.Dropout(dropout)]
        features = int(hidden)
    layers.append(nn.Linear(features, n_classes))
    return nn.Sequential(*layers)


class Resize(nn.Module):
    """Images of any [H, W] to `size`: bilinear and antialiased, as torchvision's Resize, but the
    same operation for every input size (torchvision returns an image of the target size as it
    is), so `torch.export` keeps height and width dynamic and the exported model takes any size."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(
            images, size=self.size, mode="bilinear", antialias=True, align_corners=False
        )


def preprocessing(input_size: tuple[int, int], mean: list[float], std: list[float]) -> nn.Sequential:
    """Raw 0-255 pixels to the network's input: resized, then standardized per channel."""
    return nn.Sequential(OrderedDict(resize=Resize(input_size), normalize=transforms.Normalize(mean, std)))


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, on the 0-255 scale."""
    values = images.astype(np.float64)
    mean = values.mean(axis=(0, 2, 3))
    std = np.maximum(values.std(axis=(0, 2, 3)), 1e-6)
    return mean.tolist(), std.tolist()


def inference_module(preprocess: nn.Sequential, network: nn.Sequential) -> nn.Sequential:
    """What is exported: raw pixels in, class probabilities out."""
    return nn.Sequential(
        OrderedDict(
            resize=preprocess.resize,
            normalize=preprocess.normalize,
            network=network,
            softmax=nn.Softmax(dim=1),
        )
    ).eval()


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) pixels as the model's float32 input (still 0-255)."""
    return torch.from_numpy(images.astype(np.float32))


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    images_seen: int = 0


def make_optimizer(config: Mapping[str, Any], parameters: Any, lr: float) -> torch.optim.Optimizer:
    from hydra.utils import instantiate

    spec = dict(config.get("optimizer") or {"_target_": "torch.optim.Adam", "_partial_": True})
    try:
        factory = instantiate(spec)
        return factory(parameters, lr=lr)
    except Exception as e:  # Hydra wraps import and argument errors alike
        raise StepError(f"model config: cannot build optimizer {spec.get('_target_')}: {cause(e)}") from e


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (eval mode, no gradients)."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            target = y[start : start + batch_size]
            loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
    return loss / len(x), correct / len(x)


def train(
    model: nn.Module,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    val_xy: tuple[torch.Tensor, torch.Tensor],
    config: Mapping[str, Any],
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Mini-batch training with early stopping on the validation loss; the model ends with the
    weights of its best epoch."""
    x_train, y_train = train_xy
    x_val, y_val = val_xy
    batch_size = int(config.get("batch_size", 64))
    epochs = int(config.get("epochs", 10))
    stopping = dict(config.get("early_stopping") or {})
    patience = int(stopping.get("patience", epochs))
    min_delta = float(stopping.get("min_delta", 0.0))
    optimizer = make_optimizer(config, model.parameters(), float(config.get("lr", 1e-3)))
    generator = torch.Generator().manual_seed(seed)
    history = History()
    best_loss, best_state, waited = float("inf"), None, 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator).to(x_train.device)
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        history.images_seen += len(order)
        val_loss, val_accuracy = evaluate(model, x_val, y_val, batch_size * 4)
        history.train_loss.append(total / len(order))
        history.val_loss.append(val_loss)
        history.val_accuracy.append(val_accuracy)
        if on_epoch:
            on_epoch(
                epoch, {"train_loss": total / len(order), "val_loss": val_loss, "val_accuracy": val_accuracy}
            )
        if val_loss < best_loss - min_delta:
            best_loss, waited, history.best_epoch = val_loss, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                history.stopped_early = epoch < epochs
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


@contextmanager
def torchscript_warnings() -> Iterator[None]:
    """torch 2.14 warns that TorchScript is deprecated on every script/save/load call (dozens per
    export): the user sees it once per process, every other warning passes through."""
    global _torchscript_warning_shown
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, FutureWarning) and TORCHSCRIPT_WARNING.search(str(warning.message)):
            if _torchscript_warning_shown:
                continue
            _torchscript_warning_shown = True
            log.warning(
                "%s (torch repeats this on every TorchScript call: shown once here; TorchScript is "
                "the export this model config asks for, export.format=torch_export avoids it)",
                warning.message,
            )
            continue
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def script(
    module: nn.Module, batch: torch.Tensor, tolerance: float = 1e-5
) -> tuple[torch.jit.ScriptModule, float]:
    """torch.jit.script the module, and check it gives the eager module's outputs on `batch`."""
    module.eval()
    with torchscript_warnings():
        scripted = torch.jit.script(module)
    with torch.no_grad():
        difference = float((scripted(batch) - module(batch)).abs().max())
    if not difference <= tolerance:
        raise StepError(
            f"export: the scripted model differs from the eager one by {difference:.3g} on a validation "
            f"batch; expected at most {tolerance}"
        )
    return scripted, difference


def exported_program(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch size, height and width (the example needs more than one
    image); the channels stay the trained ones."""
    auto = torch.export.Dim.AUTO
    return torch.export.export(module.eval(), (example,), dynamic_shapes=[{0: auto, 2: auto, 3: auto}])
