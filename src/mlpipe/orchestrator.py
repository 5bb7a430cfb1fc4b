"""Running the pipeline: one parent run, one child run per step, stages run side by side."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow.projects
import yaml
from mlflow.exceptions import ExecutionException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mlpipe import tracking
from mlpipe.artifacts import OUT, ArtifactStore, parse_reference
from mlpipe.errors import StepError
from mlpipe.paths import COMPONENTS_DIR, PROJECT_ROOT
from mlpipe.planner import StepSpec, plan, select
from mlpipe.wiring import pipeline_steps

log = logging.getLogger("main")


class StepFailed(StepError):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"main: step '{step}' failed: {reason}")
        self.step = step


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {
            "mlflow.source.git.commit": git("rev-parse", "HEAD"),
            "mlpipe.git_dirty": str(bool(git("status", "--porcelain"))).lower(),
        }
    except (OSError, subprocess.SubprocessError):
        return {"mlpipe.git_dirty": "unknown (no git commit)"}


def package_versions() -> str:
    names = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()}
    return "\n".join(sorted(names, key=str.lower)) + "\n"


class Pipeline:
    def __init__(self, cfg: DictConfig, output_dir: Path, tags: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.extra_tags = tags or {}  # e.g. the sweep id and job number of a multirun job
        self.parent_id: str | None = None
        self.client = MlflowClient()
        self.experiment_id = tracking.ensure_experiment(str(cfg.main.project_name))
        self.store = ArtifactStore(self.experiment_id, self.client)
        self.produced: dict[str, str] = {}  # artifact name -> digest written in this run

    def write_step_configs(self) -> tuple[Path, Path]:
        resolved = OmegaConf.to_container(self.cfg, resolve=True)
        assert isinstance(resolved, dict)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        dataset_file = self.output_dir / "dataset.yaml"
        model_file = self.output_dir / "model.yaml"
        dataset_file.write_text(yaml.safe_dump(resolved["dataset"], sort_keys=False))
        model_file.write_text(yaml.safe_dump(resolved["model"], sort_keys=False))
        return dataset_file, model_file

    def stages(self, steps: list[StepSpec]) -> list[list[StepSpec]]:
        written = {name for s in steps for name in s.writes.values()}
        existing = {
            parse_reference(ref)[0]
            for s in steps
            for ref in s.reads.values()
            if parse_reference(ref)[0] not in written and self.store.find(ref) is not None
        }
        return plan(steps, existing)

    def pinned(self, step: StepSpec) -> dict[str, Any]:
        """The step's parameters, with `name:latest` replaced by the exact version this
        pipeline produced (so parallel pipelines never read each other's outputs)."""
        params = step.parameters()
        for key, ref in step.reads.items():
            name, selector = parse_reference(ref)
            if selector == "latest" and name in self.produced:
                version = next(v for v in self.store.versions(name) if v.digest == self.produced[name])
                params[key] = version.ref
        return params

    def run_step(self, step: StepSpec, parent_id: str) -> str:
        child = self.client.create_run(
            self.experiment_id,
            run_name=step.name,
            tags={
                tracking.TAG_PARENT: parent_id,
                tracking.TAG_STEP: step.name,
                "mlpipe.component": step.component,
            },
        )
        run_id = child.info.run_id
        params = self.pinned(step)
        started = time.monotonic()
        log.info("%s: started (component %s)", step.name, step.component)
        try:
            mlflow.projects.run(
                str(COMPONENTS_DIR / step.component),
                entry_point="main",
                parameters={k: str(v) for k, v in params.items()},
                env_manager=str(self.cfg.main.env_manager),
                experiment_id=self.experiment_id,
                run_id=run_id,
                synchronous=True,
            )
        except ExecutionException as e:
            reason = self.client.get_run(run_id).data.tags.get(tracking.TAG_ERROR)
            raise StepFailed(step.name, reason or f"{e} (see the step's output above)") from e
        finally:
            log.info("%s: ended after %.1f s", step.name, time.monotonic() - started)
        outputs = self.client.get_run(run_id).data.tags
        for name in step.writes.values():
            self.produced[name] = outputs[f"{OUT}{name}"]
        return run_id

    def run(self) -> dict[str, str]:
        """Run the selected steps; return step name -> child run id."""
        cfg = self.cfg
        launcher = os.environ.pop("MLFLOW_RUN_ID", None)  # the `mlflow run .` CLI's own run
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        # With env_manager=local a step runs `python` from PATH: make it this interpreter.
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        dataset_file, model_file = self.write_step_configs()
        steps = select(pipeline_steps(cfg, dataset_file, model_file, self.store), str(cfg.main.steps))
        stages = self.stages(steps)
        tags = {
            "mlpipe.pipeline": "true",
            "mlpipe.group": str(cfg.main.experiment_name),
            "mlpipe.steps": ",".join(s.name for s in steps),
            "mlpipe.output_dir": str(self.output_dir),
            **git_state(),
            **self.extra_tags,
        }
        if launcher:
            tags["mlpipe.launcher_run_id"] = launcher
        parent = self.client.create_run(
            self.experiment_id, run_name=f"pipeline {cfg.main.experiment_name}", tags=tags
        )
        parent_id = self.parent_id = parent.info.run_id
        if launcher:
            self.client.set_tag(launcher, "mlpipe.pipeline_run_id", parent_id)
        log.info(
            "pipeline run %s in experiment '%s' (%s); stages: %s",
            parent_id,
            cfg.main.project_name,
            tracking.tracking_uri(),
            " -> ".join("+".join(s.name for s in stage) for stage in stages),
        )
        failed = True
        children: dict[str, str] = {}
        try:
            resolved = OmegaConf.to_container(cfg, resolve=True)
            assert isinstance(resolved, dict)
            tracking.log_params(resolved, parent_id)
            self.client.log_text(
                parent_id, tracking.scrub(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml"
            )
            self.client.log_text(parent_id, package_versions(), "environment/packages.txt")
            for stage in stages:
                with ThreadPoolExecutor(max_workers=len(stage)) as pool:
                    futures = {s.name: pool.submit(self.run_step, s, parent_id) for s in stage}
                errors = []
                for name, future in futures.items():
                    try:
                        children[name] = future.result()
                    except StepFailed as e:
                        errors.append(e)
                if errors:
                    skipped = [s.name for later in stages[stages.index(stage) + 1 :] for s in later]
                    if skipped:
                        log.info("not run because an earlier step failed: %s", ", ".join(skipped))
                    self.client.set_tag(parent_id, tracking.TAG_ERROR, str(errors[0]))
                    raise errors[0]
            failed = False
        finally:
            tracking.finish_run(parent_id, failed)
        self.client.log_text(parent_id, json.dumps(children, indent=2), "step_runs.json")
        log.info("pipeline finished: %s", ", ".join(f"{k} {v}" for k, v in children.items()))
        return children
