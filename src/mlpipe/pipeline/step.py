"""The shape every component's run.py shares: start the step's run, hand artifacts in and out,
log what was measured, and turn bad input into one error line and a FAILED run."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import mlflow
from mlflow.entities import Dataset, Metric

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.pipeline.contract import StepContract, encode, type_name
from mlpipe.pipeline.fast_exit import exit_after
from mlpipe.tracking import datasets, logged_models, runs, store, wandb_mirror
from mlpipe.tracking.artifacts import ArtifactStore, ArtifactVersion, Logged
from mlpipe.tracking.secrets import scrub, scrub_logs, scrub_tree

if TYPE_CHECKING:  # matplotlib loads only in the steps that plot
    from matplotlib.figure import Figure

    from mlpipe.data.spec import DatasetSpec


def logger(step: str) -> logging.Logger:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S", force=True
    )
    scrub_logs()
    return logging.getLogger(step)


class Step:
    """One running step: its MLflow run, the artifact store and a private scratch folder.

    What it reads and writes is also recorded where MLflow's UI shows it: data as the run's
    datasets, a model export as an MLflow logged model, and the metrics of a step that made or
    used a model linked to that model and to the data the step scored."""

    def __init__(
        self,
        name: str,
        run_id: str,
        store: ArtifactStore,
        workdir: Path,
        spec: DatasetSpec,
        mirror: wandb_mirror.Mirror | None = None,
        contexts: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.run_id = run_id
        self.store = store
        self.workdir = workdir
        self.spec = spec  # the dataset, as its config (params.dataset_config) describes it
        self.log = logger(name)
        self.wandb = mirror or wandb_mirror.Mirror()  # W&B's view of this run (off when disabled)
        self.contexts = dict(contexts or {})  # artifact -> its datasets' context (the contract's)
        self.made_model: str | None = None  # the logged model this step made
        self.used_models: set[str] = set()  # those it used
        self.scored: Dataset | None = None  # the data it read with `read_data` (what it scored)
        self._final_metrics: dict[str, float] = {}  # logged without a step: the model's metrics

    @property
    def model_id(self) -> str | None:
        """The logged model this step's metrics describe: the one it made, else the one it used
        (none when it used several, as compare does)."""
        if self.made_model is not None:
            return self.made_model
        return next(iter(self.used_models)) if len(self.used_models) == 1 else None

    def context(self, what: str) -> str:
        """`what`, prefixed with the step's name: the start of an error line."""
        return f"{self.name}: {what}"

    def use(self, reference: str) -> tuple[ArtifactVersion, Path]:
        """Resolve an artifact reference, record that this run read it, fetch its files."""
        version, path, _ = self._use(reference)
        return version, path

    def _use(self, reference: str) -> tuple[ArtifactVersion, Path, Dataset | None]:
        version = self.store.resolve(reference)
        self.store.record_use(self.run_id, version)
        path = self.store.download(version, self.workdir / "in" / version.name / f"v{version.version}")
        aliases = f" [{', '.join(version.aliases)}]" if version.aliases else ""
        self.log.info("using %s%s (%s) for '%s'", version.ref, aliases, version.digest[:12], reference)
        self.wandb.use(version, path)
        client = self.store.client
        model = logged_models.find(client, self.store.experiment_id, version.digest)
        if model is not None:  # a model export: the run's model input, and what its metrics are of
            logged_models.record_use(client, self.run_id, model.model_id)
            self.used_models.add(model.model_id)
            return version, path, None
        data = datasets.dataset(
            version.name,
            version.digest,
            self.store.location(version.run_id, version.name, version.file),
            profile=version.metadata,
        )
        context = self.contexts.get(version.name, "input")
        datasets.record(client, self.run_id, data, context, {datasets.TAG_VERSION: version.ref})
        return version, path, data

    def read_data(self, reference: str) -> tuple[ArtifactVersion, Any]:
        """An artifact holding data of the dataset's kind, read back as that kind holds it."""
        version, path, self.scored = self._use(reference)
        return version, self.spec.kind.read(path, self.context(f"{version.ref} ({path.name})"))

    def log_data(
        self,
        data: Any,
        name: str,
        type: str,
        description: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Log data of the dataset's kind as artifact `name` (one file the kind writes)."""
        path = self.spec.kind.write(data, self.workdir / "out" / name, name)
        meta = {**self.spec.kind.describe(data), **(metadata or {})}
        return self.log_artifact(name, path, type, description, meta, self.spec.kind.schema(data))

    def log_artifact(
        self,
        name: str,
        path: Path,
        type: str,
        description: str,
        metadata: Mapping[str, Any] | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> str:
        """Log data as artifact `name`, and as a dataset of this run (`schema` as the data kind
        describes it)."""
        metadata = scrub_tree(dict(metadata or {}))
        logged = self._log_files(name, path, type, description, metadata)
        existing = logged.existing
        source = existing.run_id if existing is not None and not logged.restored else self.run_id
        uri = self.store.location(source, name, "" if path.is_dir() else path.name)
        data = datasets.dataset(name, logged.digest, uri, schema, metadata)
        datasets.record(self.store.client, self.run_id, data, self.contexts.get(name, "output"))
        return logged.digest

    def log_model(
        self,
        name: str,
        path: Path,
        description: str,
        config: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Log an exported MLflow model (the folder `path`) as artifact `name` and as an MLflow
        logged model named after the model config (`name`), with the run's parameters and the
        config (also logged as `model.*` parameters of the run); the metrics logged so far, and
        those logged after, are linked to it."""
        model_name = str(config.get("name") or name)
        self.log_params({"model": config})
        digest = self._log_files(
            name, path, "model_export", description, scrub_tree(dict(metadata or {}))
        ).digest
        client = self.store.client
        params = client.get_run(self.run_id).data.params
        model = logged_models.log(
            client, self.store.experiment_id, self.run_id, model_name, path, digest, name, params, description
        )
        self.made_model = model.model_id
        if self._final_metrics:
            self._log_to_mlflow(self._final_metrics, None)
        self.log.info("%s: logged model %s (%s)", name, model.model_id, model_name)
        return digest

    def _log_files(
        self, name: str, path: Path, type: str, description: str, metadata: dict[str, Any]
    ) -> Logged:
        description = scrub(description)
        logged = self.store.log(self.run_id, name, path, type, description, metadata)
        # W&B reads the store's own copy where the store is on this disk: no staging copy.
        self.wandb.log_artifact(
            name, logged.stored or path, type, description, metadata, stored=bool(logged.stored)
        )
        existing = logged.existing
        if existing is not None and logged.restored:
            self.log.info("%s: same content as %s, whose files were gone: uploaded again", name, existing.ref)
        elif existing is not None:
            self.log.info("%s: same content as %s, no new version", name, existing.ref)
        else:
            self.log.info("%s: new version %s (%s)", name, logged.digest[:12], path.name)
        return logged

    def log_params(self, values: Mapping[str, Any]) -> None:
        """Parameters beyond the contract's (nested ones flattened: `model.estimator.max_depth`)."""
        runs.log_params(values, self.run_id)
        self.wandb.log_params(values)

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        # MLflow accepts only letters, digits and _-./ and spaces in a metric name.
        clean = {re.sub(r"[^\w\-./ ]", "_", k): float(v) for k, v in values.items()}
        self._log_to_mlflow(clean, step)
        if step is None:
            self._final_metrics.update(clean)
        self.wandb.log_metrics(clean, step=step)

    def _log_to_mlflow(self, values: Mapping[str, float], step: int | None) -> None:
        """Metrics of the run, linked to the step's model and the data it scored, if any."""
        scored = self.scored if self.model_id else None
        now = int(time.time() * 1000)
        metrics = [
            Metric(
                key,
                value,
                now,
                step or 0,
                model_id=self.model_id,
                dataset_name=scored.name if scored else None,
                dataset_digest=scored.digest if scored else None,
            )
            for key, value in values.items()
        ]
        self.store.client.log_batch(self.run_id, metrics=metrics)

    def log_figure(self, figure: Figure, filename: str) -> None:
        mlflow.log_figure(figure, f"plots/{filename}")
        self.wandb.log_figure(figure, filename)
        import matplotlib.pyplot as plt

        plt.close(figure)

    def set_alias(self, version: ArtifactVersion, path: Path, alias: str) -> None:
        """Point `alias` at `version` in MLflow and W&B (`path` holds the version's files)."""
        self.store.set_alias(version, alias)
        stored = path == self.store.local_files(version.run_id, version.name, version.file)
        self.wandb.set_alias(version, path, alias, stored)

    def log_json(self, data: Any, filename: str) -> None:
        mlflow.log_text(json.dumps(data, indent=2, default=str), filename)


_assigned_run: ContextVar[str | None] = ContextVar("mlpipe_assigned_run", default=None)


@contextmanager
def running_as(run_id: str) -> Iterator[None]:
    """Make `step_run` resume this run (the in-process executor's MLFLOW_RUN_ID, per thread)."""
    token = _assigned_run.set(run_id)
    try:
        yield
    finally:
        _assigned_run.reset(token)


@contextmanager
def step_run(contract: StepContract, params: Any) -> Iterator[Step]:
    """Start (or resume, when launched by the pipeline) the step's run; end it FINISHED or FAILED.
    A store that stops answering for longer than tracking.store_timeout_s ends it in one line
    (`store.StoreUnavailable`)."""
    name = contract.step
    store.configure()
    # `mlflow run` hands us MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID; alone, the experiment is
    # MLFLOW_EXPERIMENT_NAME's (or Default) and this starts a new run there.
    assigned = _assigned_run.get()
    new_run = assigned is None and "MLFLOW_RUN_ID" not in os.environ
    try:
        with _started_run(contract, params, assigned, new_run) as step:
            yield step
    except Exception as e:
        if isinstance(e, store.StoreUnavailable) or not store.lost_store(e):
            raise
        # MLflow's client gave up on the store (here, or ending the run as FAILED): one line.
        raise store.unavailable(name, e) from e


@contextmanager
def _started_run(contract: StepContract, params: Any, assigned: str | None, new_run: bool) -> Iterator[Step]:
    name = contract.step
    values = dataclasses.asdict(params)
    with mlflow.start_run(run_id=assigned, run_name=name if new_run else None) as run:
        mlflow.set_tags({runs.TAG_STEP: name, **runs.process_tags()})  # this process runs it now
        # `mlflow run` may have logged the parameters already, as the strings it was given.
        logged = mlflow.get_run(run.info.run_id).data.params
        runs.log_params({k: v for k, v in values.items() if k not in logged}, run.info.run_id)
        artifacts = ArtifactStore(run.info.experiment_id)
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
            mirror, reason = wandb_mirror.Mirror(), "interrupted"
            try:
                from mlpipe.data.spec import DatasetSpec

                experiment = mlflow.get_experiment(run.info.experiment_id)
                store.mark_kind(artifacts.client, experiment)  # also when started alone
                mirror = wandb_mirror.Mirror.start(name, values, run.info.run_id, experiment.name)
                spec = DatasetSpec.from_file(params.dataset_config)
                contexts = contract.dataset_contexts()
                yield Step(name, run.info.run_id, artifacts, Path(tmp), spec, mirror, contexts)
                reason = ""
            except Exception as e:
                if store.lost_store(e):  # the store is gone: the one line, tried once on the run
                    e = store.unavailable(name, e)
                # What main.py reports as the reason; a bug keeps its traceback on stderr too.
                reason = str(e) if isinstance(e, StepError) else f"{type(e).__name__}: {e}"
                try:
                    mlflow.set_tag(runs.TAG_ERROR, scrub(reason)[:5000])
                except Exception as tagging:
                    if not store.lost_store(tagging):
                        raise
                if isinstance(e, store.StoreUnavailable):
                    raise e from e.__cause__
                raise
            finally:
                mirror.finish(failed=bool(reason), reason=reason)


# -- the command line of a component ------------------------------------------------------------
def parse_args(contract: StepContract, argv: list[str] | None, folder: Path) -> Any:
    """The params object from `--name value` options (derived from the contract); an option not
    given takes its value from config.yaml, as the step's MLproject file does."""
    parser = argparse.ArgumentParser(prog=f"{folder.name}/run.py", description=contract.summary)
    for p in contract.parameters():
        parser.add_argument(f"--{p.name}", default=None, help=f"{p.help} ({type_name(p.annotation)})")
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    missing = [p.name for p in contract.parameters() if p.name not in given]
    if missing:
        from mlpipe.pipeline.components import defaults, load

        given = {**{k: encode(v) for k, v in defaults(load(folder), given).items()}, **given}
    return contract.build(given, contract.step)


def main(
    contract: StepContract,
    run: Callable[[Any], None],
    argv: list[str] | None = None,
    folder: Path | None = None,
) -> None:
    """The `__main__` of a component: bad input ends in one line on stderr and exit code 1."""
    folder = folder or Path(sys.modules[run.__module__].__file__ or ".").resolve().parent
    name = contract.step
    try:
        run(parse_args(contract, argv, folder))
    except StepError as e:
        message = str(e) if str(e).startswith(f"{name}:") else f"{name}: {e}"
        print(f"error: {scrub(message)}", file=sys.stderr)
        sys.exit(1)


def run_script(contract: StepContract, run: Callable[[Any], None]) -> NoReturn:
    """`main` for a component started as its own process (`python run.py`, `mlflow run`). Started
    alone, its project is the one its folder sits in."""
    folder = Path(sys.modules[run.__module__].__file__ or ".").resolve().parent
    if project.ENV_ROOT not in os.environ:
        project.enter(folder.parents[1])
    exit_after(main, contract, run, None, folder)
