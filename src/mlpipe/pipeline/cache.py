"""The step cache: a step that already ran with the same code, parameters, inputs and packages
is not run again; its FINISHED run's outputs are reused.

The key is a digest of: the files of the step's component and of this package, its parameters
(a parameter naming a local file counts by the file's content, so the per-invocation copies of
the dataset and model configs hash alike), the digests of its input artifact versions, and the
versions of Python and of the packages the project pins.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
from functools import cache
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mlpipe import project
from mlpipe.digests import digest_path

TAG_KEY = "mlpipe.cache_key"
TAG_REUSED = "mlpipe.reused_run_id"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mlpipe/
UNCACHEABLE_SCHEMES = ("http://", "https://")  # the content behind a URL can change unseen


def code_files(component: str, components_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of the step's code: its component folder, then this package. Names are
    relative to those folders, so the digest does not depend on where the checkout lives."""
    files = []
    for root in ((components_dir or project.components_dir()) / component, PACKAGE_DIR):
        found = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        files += sorted((f"{root.name}/{p.relative_to(root).as_posix()}", p) for p in found)
    return files


@cache
def code_digest(component: str, components_dir: Path | None = None) -> str:
    """Cached per process: code does not change while a pipeline runs."""
    h = hashlib.sha256()
    for name, path in code_files(component, components_dir):
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@cache
def package_versions() -> dict[str, str]:
    requirements = importlib.metadata.requires("mlpipe") or []
    names = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in requirements if "extra ==" not in r}
    versions = {"python": platform.python_version()}
    for name in sorted(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def parameter_value(value: Any) -> Any:
    """A local file counts by its content; anything else by its value."""
    text = str(value)
    if "://" not in text and len(text) < 4096:
        path = Path(text)
        if path.is_absolute() and path.is_file():
            return {"file_digest": digest_path(path)}
    return value


def cacheable(parameters: dict[str, Any]) -> bool:
    return not any(str(v).startswith(UNCACHEABLE_SCHEMES) for v in parameters.values())


def step_key(
    step: str,
    component: str,
    parameters: dict[str, Any],
    input_digests: dict[str, str],
    code: str | None = None,
    packages: dict[str, str] | None = None,
) -> str:
    """`code` and `packages` default to this checkout's and this environment's."""
    material = {
        "step": step,
        "component": component,
        "code": code or code_digest(component),
        "parameters": {k: parameter_value(v) for k, v in sorted(parameters.items())},
        "inputs": dict(sorted(input_digests.items())),
        "packages": packages or package_versions(),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def find_reusable(client: MlflowClient, experiment_id: str, key: str) -> Run | None:
    """The FINISHED run (the original, not a reuse record) with this key, newest first.
    Failed, killed and running runs never count."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{TAG_KEY}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.end_time DESC"],
        max_results=20,
    )
    return next((r for r in runs if TAG_REUSED not in r.data.tags), None)
