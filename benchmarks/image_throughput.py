"""Throughput of the image model: training (images/s) and inference of the eager, scripted
(torch.jit.script, saved and reloaded) and torch.export (saved and reloaded) variants of the
exported `Sequential` on the same batches, printed as ratios against the eager module.

    .venv/bin/python benchmarks/image_throughput.py [--device cpu|cuda] [--repeats 20]

Timings on a shared machine are noisy: read the ratios, and compare runs on one device only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from bench_utils import ROOT, print_table

from mlpipe.data.kinds.images import files as images
from mlpipe.models import torch_network as torch_model


def timed(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of one call of each, taking turns so that a noisy neighbour on the machine
    slows every variant alike (CUDA synchronized)."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per training batch size")
    args = parser.parse_args(argv)
    device = torch_model.pick_device(args.device)
    config = yaml.safe_load((ROOT / "conf" / "model" / "cnn.yaml").read_text())
    input_size = tuple(config["input_size"])
    with tempfile.TemporaryDirectory() as tmp:
        digits = images.read_image_folder(images.write_digits_folder(Path(tmp) / "digits"), "bench")
    train_set, val_set = images.split_images(digits, 0.2, 0, True, "bench")
    index = {label: i for i, label in enumerate(digits.classes)}

    def xy(part: images.ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.tensor([index[label] for label in part.labels])
        return torch_model.as_input(part.images).to(device), y.to(device)

    mean, std = torch_model.channel_stats(train_set.images)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"digits {len(train_set)} train / {len(val_set)} val images, {digits.shape} -> {list(input_size)}"
    )

    # Training: images per second through forward, backward and the optimizer step.
    rows, base = [], 1.0
    for batch_size in (32, config["batch_size"], 128):
        torch_model.seed_everything(0)
        preprocess = torch_model.preprocessing(input_size, mean, std)  # type: ignore[arg-type]
        network = torch_model.build_network(config["network"], 1, input_size, len(index))  # type: ignore[arg-type]
        model = torch.nn.Sequential(preprocess, network).to(device)
        settings = {**config, "batch_size": batch_size, "epochs": args.epochs, "early_stopping": None}
        start = time.perf_counter()
        history = torch_model.train(model, xy(train_set), xy(val_set), settings, 0)
        rate = history.images_seen / (time.perf_counter() - start)
        if batch_size == config["batch_size"]:
            base = rate
        rows.append([batch_size, f"{rate:,.0f}"])
    print_table(
        ["batch size", "images/s", "ratio vs config"],
        [[*r, f"{float(r[1].replace(',', '')) / base:.2f}"] for r in rows],
        title=f"training throughput ({args.epochs} epochs each, validation included)",
    )

    # Inference of the exported module, the same batches for every variant.
    eager = torch_model.inference_module(model[0], model[1]).to(device).eval()
    example = torch_model.as_input(val_set.images[:64]).to(device)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), torch_model.torchscript_warnings():
        scripted, _ = torch_model.script(eager, example)
        torch.jit.save(scripted, f"{tmp}/model.pth")
        program = torch_model.exported_program(eager, example)
        torch.export.save(program, f"{tmp}/model.pt2")
        variants = {
            "eager": eager,
            "torch.jit.script": torch.jit.load(f"{tmp}/model.pth", map_location=device),
            "torch.export": torch.export.load(f"{tmp}/model.pt2").module(),
        }
        rows = []
        for batch_size in (1, 64, len(val_set)):
            batch = torch_model.as_input(val_set.images[:batch_size]).to(device)
            reference = variants["eager"](batch)
            for name, module in variants.items():
                assert np.allclose(module(batch).cpu().numpy(), reference.cpu().numpy(), atol=1e-5), name
            calls = {name: (lambda m=module, b=batch: m(b)) for name, module in variants.items()}
            seconds = timed(calls, args.repeats)
            for name, s in seconds.items():
                rows.append([batch_size, name, f"{batch_size / s:,.0f}", f"{seconds['eager'] / s:.2f}"])
    print_table(
        ["batch", "variant", "images/s", "ratio vs eager"],
        rows,
        title=f"inference throughput (median of {args.repeats} calls, outputs checked equal)",
    )


if __name__ == "__main__":
    sys.exit(main())
