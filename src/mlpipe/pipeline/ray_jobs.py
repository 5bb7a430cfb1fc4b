"""Sweeps on Ray (`hydra/launcher=ray`, hydra-ray-launcher): Ray is started (or joined) here,
before the launcher runs, so the jobs get what they cannot inherit.

A job on a Ray cluster runs in a worker the cluster started: not in the driver's environment, not
in its working directory, perhaps on another machine. What a job needs from the driver travels in
Ray's runtime environment (`env_vars`): the tracking store, the project root and the results root
(absolute), this checkout's code first on the import path, and every MLFLOW_*, WANDB_* and
MLPIPE_* setting (the W&B mode and credentials among them). Every path a job uses is absolute and
each job writes only under its own output folder, so the project and that folder must be at the
same path on every node (a shared file system) when the cluster spans machines.

`hydra.launcher.ray.init.address`: unset starts a local Ray for this sweep (never someone else's
cluster on the same machine); `auto` joins the cluster `ray start` started here (or RAY_ADDRESS);
`host:port` joins that one. An address that does not answer is one line, before any job starts.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mlpipe import project
from mlpipe.errors import StepError
from mlpipe.tracking import store

LAUNCHER = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
FORWARDED_PREFIXES = ("MLFLOW_", "WANDB_", "MLPIPE_")
NOT_FORWARDED = {"MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"}
LOCAL_OBJECT_STORE_BYTES = 78_643_200  # the launcher's own default for a local Ray: jobs pass little data
KEY = "hydra.launcher.ray.init"


def uses_ray(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.launcher._target_") == LAUNCHER


def job_environment() -> dict[str, str]:
    """The driver's settings every job needs, whatever environment its worker started in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(FORWARDED_PREFIXES) and k not in NOT_FORWARDED and v is not None
    }
    env[store.ENV_URI] = store.tracking_uri()
    env[project.ENV_ROOT] = str(project.root())
    env[project.ENV_RESULTS] = str(project.results_root())
    env["PYTHONPATH"] = project.import_path(project.root())
    return env


def init_options(init: DictConfig | dict[str, Any] | None) -> dict[str, Any]:
    """`ray.init` keyword arguments: the launcher's `init` section, with the jobs' environment
    added to its runtime environment (the user's own env_vars win)."""
    options = dict(OmegaConf.to_container(init, resolve=True) if isinstance(init, DictConfig) else init or {})
    address = options.get("address")
    if address in (None, "", "local"):
        options["address"] = "local"  # not a cluster someone else started on this machine
        if options.get("object_store_memory") is None:
            options["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
    elif options.get("object_store_memory") is None:
        options.pop("object_store_memory", None)  # joining: the cluster has its own
    runtime_env = dict(options.get("runtime_env") or {})
    runtime_env["env_vars"] = {**job_environment(), **(runtime_env.get("env_vars") or {})}
    options["runtime_env"] = runtime_env
    return options


def cluster_address(address: str) -> str | None:
    """host:port of the cluster `address` names (None: a local Ray is started)."""
    if address == "local":
        return None
    if address.startswith("ray://"):
        return address.removeprefix("ray://")
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address)
    except ConnectionError as e:  # `auto` with no cluster running here
        raise StepError(f"main: no Ray cluster found for {KEY}.address={address}: {e}") from None
    except ValueError as e:
        raise StepError(
            f"main: {KEY}.address '{address}': {e}; expected auto, host:port or ray://host:port"
        ) from None


def check_answers(address: str, given: str | None = None, timeout_s: float = 5.0) -> None:
    """Ray itself waits minutes on an address nobody answers: ask host:port `address` first
    (`given`: what the user wrote, when `auto` or a name led there)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
    raise StepError(
        f"main: no Ray cluster answers at {given or address} ({KEY}.address"
        + (f", resolved to {address}" if given and given != address else "")
        + f"): {reason}; start one with "
        "`ray start --head`, or leave the address unset for a local Ray"
    )


def start(config: DictConfig) -> None:
    """Start or join Ray for this sweep, with the jobs' runtime environment; the launcher then
    finds Ray running and uses it."""
    import ray

    options = init_options(OmegaConf.select(config, KEY))
    joined = cluster_address(str(options["address"]))
    if joined is None:
        # A local test cluster on 127.0.0.1: no token file written to the home folder.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    else:
        check_answers(joined, str(options["address"]))
    if ray.is_initialized():
        return
    try:
        ray.init(**options)
    except Exception as e:  # Ray's errors are paragraphs: keep the first line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StepError(f"main: Ray did not start at {options['address']} ({KEY}): {first}") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    where = f"joined the Ray cluster at {options['address']}" if joined else "started a local Ray"
    # The launcher's own lines go to stderr too; the sweep's logging is not set up yet here.
    print(f"{where} ({cpus} CPUs) for the sweep's jobs", file=sys.stderr)
