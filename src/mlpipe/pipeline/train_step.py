"""The train step's parameters, declared once for every component that implements it
(train_sklearn for tables, train_torch for images; `train.component` picks one)."""

from __future__ import annotations

from dataclasses import dataclass

from mlpipe.pipeline.contract import ProjectPath, StepParams, model_config, param, reads, writes


@dataclass(frozen=True)
class TrainParams(StepParams):
    trainval_artifact: str = reads("trainval_data", context="training")
    output_artifact: str = writes("model_export", "Name of the exported MLflow model artifact")
    model_config: ProjectPath = model_config()
    val_size: float = param("Fraction of the trainval rows held out for validation")
    random_seed: int = param("Seed of the validation split and of the training")
    stratify_by: str | None = param("Column to stratify the validation split by (null: none)")
