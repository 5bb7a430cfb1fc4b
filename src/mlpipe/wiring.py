"""The default pipeline: which component each step runs, what it reads and writes."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mlpipe.artifacts import ArtifactStore
from mlpipe.paths import resolve_path
from mlpipe.planner import StepSpec
from mlpipe.promotion import auto_model_reference


def _source(source: str) -> str:
    """Plain relative paths are taken from the project root, here at the entry point."""
    return source if "://" in source else str(resolve_path(source))


def _kind(cfg: DictConfig) -> str:
    return str(cfg.dataset.get("kind") or "table")  # table or images


def _requested(cfg: DictConfig) -> set[str]:
    return {n.strip() for n in str(cfg.main.steps).split(",")}


def _tested_model(cfg: DictConfig, store: ArtifactStore | None) -> str:
    reference = str(cfg.test_model.model_artifact)
    if reference != "auto":
        return reference
    trains_now = bool(_requested(cfg) & {"all", "train"})
    return auto_model_reference(store, trains_now) if store else "model_export:latest"


def promote_step(cfg: DictConfig, dataset: dict[str, str]) -> StepSpec:
    p = cfg.promote
    return StepSpec(
        "promote",
        "promote",
        reads={"model_artifact": "model_export:latest", "test_artifact": "test_data:latest"},
        params={
            **dataset,
            "model_name": p.model_name,
            "candidates": p.candidates,
            "metric": p.metric,
            "direction": p.direction,
            "gate_metric": p.gate_metric,
            "tolerance": p.tolerance,
            "force": str(p.force).lower(),
            "rollback": str(p.rollback).lower(),
            "alias": p.alias,
        },
    )


def pipeline_steps(
    cfg: DictConfig, dataset_file: Path, model_file: Path, store: ArtifactStore | None = None
) -> list[StepSpec]:
    dataset = {"dataset_config": str(dataset_file)}
    stratify = {"stratify_by": str(cfg.data_split.stratify_by or "none")}
    steps = [
        StepSpec(
            "download",
            "get_data",
            writes={"output_artifact": "raw_data"},
            params={"source": _source(str(cfg.download.source)), "kind": _kind(cfg)},
        ),
        StepSpec(
            "basic_cleaning",
            "basic_cleaning",
            reads={"input_artifact": "raw_data:latest"},
            writes={"output_artifact": "clean_data"},
            params=dataset,
        ),
        StepSpec(
            "data_check",
            "data_check",
            reads={"input_artifact": "clean_data:latest"},
            params={
                **dataset,
                "reference_alias": cfg.data_check.reference_alias,
                "kl_threshold": cfg.data_check.kl_threshold,
                "ks_alpha": cfg.data_check.ks_alpha,
                "ks_sample_size": cfg.data_check.ks_sample_size,
            },
        ),
        StepSpec(
            "data_split",
            "data_split",
            reads={"input_artifact": "clean_data:latest"},
            writes={"trainval_artifact": "trainval_data", "test_artifact": "test_data"},
            params={
                "test_size": cfg.data_split.test_size,
                "random_seed": cfg.data_split.random_seed,
                **stratify,
                "kind": _kind(cfg),
            },
        ),
        StepSpec(
            "train",
            str(cfg.model.component),
            reads={"trainval_artifact": "trainval_data:latest"},
            writes={"output_artifact": "model_export"},
            params={
                **dataset,
                "model_config": str(model_file),
                "val_size": cfg.train.val_size,
                "random_seed": cfg.train.random_seed,
                "stratify_by": str(cfg.train.stratify_by or "none"),
            },
            after=("data_check",),
        ),  # never train on data that failed its checks
        StepSpec(
            "test_model",
            "test_model",
            reads={"model_artifact": _tested_model(cfg, store), "test_artifact": "test_data:latest"},
            params=dataset,
            after=("promote",),  # with both selected, test what promote left in prod
        ),
    ]
    # Promotion moves `prod`: it runs only when named (`main.steps=promote`), never as part of `all`.
    return [*steps, promote_step(cfg, dataset)] if "promote" in _requested(cfg) else steps
