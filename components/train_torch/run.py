"""train (images): trains the image network from config (early stopping on the validation loss),
checks the scripted `Sequential` (resize, normalize, network, softmax) against the eager one, and
exports it to take images as users have them: PNG or JPEG files (base64 in JSON) or pixels, of any
size, grayscale or RGB."""

from __future__ import annotations

from pathlib import Path

from mlpipe.pipeline.contract import StepContract
from mlpipe.pipeline.step import run_script, step_run
from mlpipe.pipeline.train_step import TrainParams

CONTRACT = StepContract(
    "train",
    TrainParams,
    __doc__,
    after=("data_check",),  # never train on data that failed its checks
    compose=("dataset=digits", "model=cnn"),
)


def run(params: TrainParams) -> None:
    import time

    import numpy as np
    import torch

    from mlpipe.models import evaluation
    from mlpipe.models.model_config import resolve_model_config
    from mlpipe.models.torch_export import export_model
    from mlpipe.models.torch_network import (
        as_input,
        build_network,
        channel_stats,
        evaluate,
        inference_module,
        pick_device,
        preprocessing,
        seed_everything,
        train,
    )

    seed = params.random_seed
    with step_run(CONTRACT, params) as step:
        spec = step.spec
        config = resolve_model_config(Path(params.model_config), spec)
        step.log_json(config, "model_config.json")
        version, trainval = step.read_data(params.trainval_artifact)
        where = step.context(f"{version.ref} (train/validation split)")
        train_set, val_set = spec.kind.split(trainval, params.val_size, seed, params.stratify_by, where)
        classes = trainval.classes
        channels, height, width = trainval.shape
        input_size = tuple(int(v) for v in config.get("input_size") or (height, width))
        seed_everything(seed)
        device = pick_device(str(config.get("device", "auto")))
        mean, std = channel_stats(train_set.images)
        preprocess = preprocessing(input_size, mean, std)  # type: ignore[arg-type]
        network = build_network(dict(config.get("network") or {}), channels, input_size, len(classes))  # type: ignore[arg-type]
        model = torch.nn.Sequential(preprocess, network).to(device)
        index = {label: i for i, label in enumerate(classes)}

        def tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.tensor([index[label] for label in labels], dtype=torch.long)
            return as_input(images).to(device), y.to(device)

        step.log.info(
            "training on %s: %d images (%d for validation), %d classes, [H, W] %s to %s, %d parameters",
            device,
            len(train_set),
            len(val_set),
            len(classes),
            [height, width],
            list(input_size),
            sum(p.numel() for p in network.parameters()),
        )

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            step.log_metrics(values, step=epoch)
            step.log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in values.items()))

        started = time.perf_counter()
        history = train(
            model,
            tensors(train_set.images, train_set.labels),
            tensors(val_set.images, val_set.labels),
            config,
            seed,
            on_epoch,
        )
        seconds = time.perf_counter() - started
        val_x, val_y = tensors(val_set.images, val_set.labels)
        val_loss, val_accuracy = evaluate(model, val_x, val_y, 256)
        step.log_metrics(
            {
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "best_epoch": history.best_epoch,
                "epochs_run": len(history.train_loss),
                "train_images_per_s": history.images_seen / seconds,
                "train_seconds": seconds,
            }
        )
        step.log.info(
            "best epoch %d of %d%s: val_loss %.4f, val_accuracy %.4f (%.1f s on %s)",
            history.best_epoch,
            len(history.train_loss),
            " (stopped early)" if history.stopped_early else "",
            val_loss,
            val_accuracy,
            seconds,
            device,
        )
        step.log_figure(
            evaluation.line_plot(
                {"train loss": history.train_loss, "validation loss": history.val_loss},
                "epoch",
                "Learning curve",
            ),
            "learning_curve.png",
        )
        step.log_figure(
            evaluation.line_plot(
                {"validation accuracy": history.val_accuracy}, "epoch", "Validation accuracy"
            ),
            "val_accuracy.png",
        )
        export_format = str((config.get("export") or {}).get("format", "torchscript"))
        exported = inference_module(model[0], model[1]).cpu()
        batch = as_input(val_set.images[:64])
        path, difference = export_model(
            exported, export_format, batch, classes, step.workdir / "out" / params.output_artifact
        )
        step.log_metrics({"export_max_abs_diff": difference})
        step.log.info(
            "exported as %s; largest difference from the eager model %.3g", export_format, difference
        )
        step.log_model(
            params.output_artifact,
            path,
            description=f"{config.get('name', 'cnn')} image classifier for {spec.name} ({export_format})",
            config=config,
            metadata={
                "flavor": "pytorch",
                "format": export_format,
                "trained_on": version.ref,
                "classes": classes,
                "val_accuracy": val_accuracy,
                "val_loss": val_loss,
            },
        )


if __name__ == "__main__":
    run_script(CONTRACT, run)
