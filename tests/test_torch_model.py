"""The image classifier: network from config, training, the scripted and torch.export exports,
and their reload in a fresh process that cannot import the project."""

from __future__ import annotations

import base64
import io
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.exceptions import MlflowException
from torch import nn

from mlpipe.data.kinds.images import files as images
from mlpipe.errors import StepError
from mlpipe.models import torch_network as torch_model
from mlpipe.models.torch_export import FRESH_PROCESS_SCRIPT, export_model, load_pyfunc, score_in_fresh_process
from tests.conftest import CONF_DIR

CNN = yaml.safe_load((CONF_DIR / "model" / "cnn.yaml").read_text())


def classifier(seed: int = 0) -> nn.Sequential:
    """The exported shape (resize, normalize, network, softmax), untrained, for 8x8 grayscale."""
    torch.manual_seed(seed)
    network = torch_model.build_network(CNN["network"], 1, (16, 16), 10)
    preprocess = torch_model.preprocessing((16, 16), [60.0], [90.0])
    return torch_model.inference_module(preprocess, network)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> images.ImageSet:
    folder = images.fetch_image_folder("sklearn://digits", tmp_path_factory.mktemp("digits"), "test")
    return images.read_image_folder(folder, "test")


def test_network_is_built_from_config() -> None:
    network = torch_model.build_network(CNN["network"], 3, (16, 16), 7)
    convs = [m for m in network if isinstance(m, nn.Conv2d)]
    linears = [m for m in network if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == CNN["network"]["conv_channels"]
    assert convs[0].in_channels == 3
    assert [lin.out_features for lin in linears] == [*CNN["network"]["hidden"], 7]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in network) == len(convs)
    assert [m.p for m in network if isinstance(m, nn.Dropout)] == [CNN["network"]["dropout"]]
    assert network(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
    plain = torch_model.build_network({"conv_channels": [], "hidden": [], "batch_norm": False}, 1, (8, 8), 10)
    assert [type(m) for m in plain] == [nn.Flatten, nn.Linear]


def test_too_many_conv_blocks_for_the_input_is_an_error() -> None:
    with pytest.raises(
        StepError, match=r"network.conv_channels has 4 blocks, too many for input_size \[8, 8\]"
    ):
        torch_model.build_network({"conv_channels": [8, 8, 8, 8]}, 1, (8, 8), 10)


def test_inference_module_gives_probabilities_from_raw_pixels() -> None:
    model = classifier()
    with torch.no_grad():
        out = model(torch.rand(4, 1, 8, 8) * 255)
    assert out.shape == (4, 10)
    assert torch.allclose(out.sum(dim=1), torch.ones(4), atol=1e-5)
    assert list(model._modules) == ["resize", "normalize", "network", "softmax"]


def test_training_learns_digits_and_keeps_the_best_epoch(digits: images.ImageSet) -> None:
    train_set, val_set = (digits.take(rows) for rows in images.split_image_rows(digits, 0.3, 0, True, "test"))
    torch_model.seed_everything(0)
    mean, std = torch_model.channel_stats(train_set.images)
    preprocess = torch_model.preprocessing((16, 16), mean, std)
    model = nn.Sequential(preprocess, torch_model.build_network(CNN["network"], 1, (16, 16), 10))

    def xy(part: images.ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
        return torch_model.as_input(part.images), torch.from_numpy(part.labels.astype(np.int64))

    seen: list[int] = []
    config = {**CNN, "epochs": 4, "early_stopping": {"patience": 10}}
    history = torch_model.train(model, xy(train_set), xy(val_set), config, 0, lambda e, _: seen.append(e))
    assert seen == [1, 2, 3, 4] and len(history.val_loss) == 4
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    loss, accuracy = torch_model.evaluate(model, *xy(val_set), 256)
    assert loss == pytest.approx(min(history.val_loss), rel=1e-5)  # the best epoch's weights
    assert accuracy > 0.9


def test_scripted_module_matches_eager_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    model = classifier()
    batch = torch.rand(16, 1, 8, 8) * 255
    torch_model._torchscript_warning_shown = False
    with caplog.at_level(logging.WARNING, "mlpipe.torch"), warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        scripted, difference = torch_model.script(model, batch)
        torch_model.script(model, batch)
    assert isinstance(scripted, torch.jit.ScriptModule)
    with torch.no_grad():
        np.testing.assert_allclose(scripted(batch).numpy(), model(batch).numpy(), atol=1e-6)
    assert difference <= 1e-6
    assert len([r for r in caplog.records if "deprecated" in r.message]) == 1
    assert not [w for w in leaked if "torch.jit" in str(w.message)]


@pytest.mark.parametrize("export_format", ["torchscript", "torch_export"])
def test_export_reloads_in_a_fresh_process_without_the_project(tmp_path: Path, export_format: str) -> None:
    model = classifier()
    example = torch.rand(8, 1, 8, 8) * 255
    classes = [str(d) for d in range(10)]
    path, difference = export_model(model, export_format, example, classes, tmp_path / "model")
    assert difference <= 1e-5
    batch = (np.random.default_rng(1).random((5, 1, 8, 8)) * 255).astype(np.float32)
    with torch.no_grad():
        eager = model(torch.from_numpy(batch)).numpy()
    fresh, info = score_in_fresh_process(path, batch)
    assert (
        info["load"] == {"torchscript": "torch.jit.load", "torch_export": "torch.export.load"}[export_format]
    )
    np.testing.assert_allclose(fresh, eager, atol=1e-5)
    served = load_pyfunc(path)
    assert served.metadata.metadata["classes"] == classes and served.metadata.metadata["channels"] == 1
    assert served.metadata.signature.inputs.input_names() == ["image"]
    np.testing.assert_allclose(np.asarray(served.predict(batch)), eager, atol=1e-5)
    with torch.no_grad():  # any size, through the pyfunc as through plain torch
        bigger = (np.random.default_rng(2).random((2, 1, 20, 12)) * 255).astype(np.float32)
        np.testing.assert_allclose(served.predict(bigger), model(torch.from_numpy(bigger)).numpy(), atol=1e-5)


def png(pixels: np.ndarray, mode: str) -> bytes:
    """(H, W) or (H, W, C) uint8 pixels as a PNG file's bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("export_format", ["torchscript", "torch_export"])
def test_the_pyfunc_takes_encoded_images_of_any_size_gray_or_rgb(tmp_path: Path, export_format: str) -> None:
    model = classifier()  # trained on one channel, 8x8
    path, _ = export_model(
        model, export_format, torch.rand(8, 1, 8, 8) * 255, list("0123456789"), tmp_path / "m"
    )
    served = load_pyfunc(path)
    rng = np.random.default_rng(3)
    gray = (rng.random((8, 8)) * 255).round()
    big = (rng.random((16, 16)) * 255).round()
    rgb = np.stack([big, big, big], axis=-1)  # gray in three channels: its luminance is itself

    def eager(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(pixels[None, None].astype(np.float32))).numpy()[0]

    rows = pd.DataFrame(
        {
            "image": [
                base64.b64encode(png(gray, "L")).decode(),  # base64 text, as JSON carries it
                png(rgb, "RGB"),  # the file's bytes
                f"data:image/png;base64,{base64.b64encode(png(big, 'L')).decode()}",
                gray.tolist(),  # pixels [H, W]
            ]
        }
    )
    got = served.predict(rows)
    for row, pixels in enumerate([gray, big, big, gray]):
        np.testing.assert_allclose(got[row], eager(pixels), atol=1e-4)

    for image, message in [
        ("not base64!", "row 1 of column 'image': text that is not base64"),
        (
            base64.b64encode(b"GIF89a no image").decode(),
            "row 1 of column 'image': not a readable PNG or JPEG",
        ),
        (
            np.zeros((2, 5, 6, 7)).tolist(),
            r"pixels of shape \[2, 5, 6, 7\]; expected \[H, W\] or \[C, H, W\]",
        ),
    ]:
        with pytest.raises(MlflowException, match=message):
            served.predict(pd.DataFrame({"image": [image]}))
    with pytest.raises(MlflowException, match=r"columns \['pixels'\]; expected a column 'image'"):
        served.predict(pd.DataFrame({"pixels": [1]}))


def test_fresh_process_really_cannot_import_the_project(tmp_path: Path) -> None:
    """The prelude of the fresh-process script makes `import mlpipe` fail, as on a server."""
    prelude = FRESH_PROCESS_SCRIPT.split("import numpy")[0]
    done = subprocess.run(
        [sys.executable, "-I", "-c", prelude + "\nimport mlpipe"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr
