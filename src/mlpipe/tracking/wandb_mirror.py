"""Weights & Biases as a second view of what each step logs to MLflow, never the wire between steps.

main.py resolves `tracking.wandb.mode` once (`auto` becomes `online` or `offline`), checks an
online account before any step starts, and hands the mode, project, group and folder to the steps
through environment variables. Each step process then opens one W&B run (id = its MLflow run id,
job_type = the step name, config = its parameters) and mirrors its metrics, plots and artifacts;
online, every artifact it reads is declared with `use_artifact` on the same version (lineage).
A step started on its own (`mlflow run components/x`) has W&B off unless MLPIPE_WANDB_MODE says
otherwise. Nothing here imports wandb when the mode is `disabled`.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import netrc
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpipe.errors import StepError
from mlpipe.tracking.secrets import loggable, scrub

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from mlpipe.tracking.artifacts import ArtifactVersion

MODES = ("auto", "online", "offline", "disabled")
ENV_MODE = "MLPIPE_WANDB_MODE"  # the resolved mode, set by main.py for its steps
ENV_WANDB_MODE, ENV_WANDB_DISABLED = "WANDB_MODE", "WANDB_DISABLED"  # W&B's own switches
ENV_PROJECT = "WANDB_PROJECT"
ENV_GROUP = "WANDB_RUN_GROUP"
ENV_DIR = "WANDB_DIR"
DEFAULT_BASE_URL = "https://api.wandb.ai"
CHECK_TIMEOUT_S = 10.0

log = logging.getLogger("mlpipe.wandb")  # not "wandb": that is the library's own logger


# -- settings: which mode, and is an account there ----------------------------------------------
def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def api_key() -> str | None:
    """The key wandb itself would use: WANDB_API_KEY, else the `wandb login` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    host = urllib.parse.urlsplit(base_url()).hostname
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host or "")
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry and entry[2] else None


def wandb_own_mode() -> str | None:
    """The mode W&B's own variables ask for: WANDB_MODE (`dryrun` is its old `offline`), or
    `disabled` for WANDB_DISABLED=true; None when they say nothing."""
    if os.environ.get(ENV_WANDB_DISABLED, "").strip().lower() in ("true", "1", "yes"):
        return "disabled"
    mode = os.environ.get(ENV_WANDB_MODE, "").strip().lower()
    return (
        {"dryrun": "offline", "run": "online"}.get(mode, mode) if mode in (*MODES, "dryrun", "run") else None
    )


def resolve_mode(configured: str, has_key: bool) -> str:
    """`auto` is what WANDB_MODE says, else `online` when credentials are configured, else
    `offline`. WANDB_MODE=disabled (or WANDB_DISABLED=true) turns W&B off whatever the config says,
    as it does for any program that uses W&B."""
    mode = str(configured).strip().lower()
    if mode not in MODES:
        raise StepError(f"main: tracking.wandb.mode is '{configured}'; expected one of {', '.join(MODES)}")
    own = wandb_own_mode()
    if own == "disabled" or (mode == "auto" and own not in (None, "auto")):
        return str(own)
    if mode == "auto":
        return "online" if has_key else "offline"
    return mode


def check_online(key: str | None, url: str | None = None, timeout: float = CHECK_TIMEOUT_S) -> str:
    """Ask the W&B server who the key belongs to; return the user's entity, or raise one line.

    A plain HTTP request with a short timeout, so that no network or a rejected key stops the
    pipeline at its start instead of after training (wandb itself retries for minutes).
    """
    url = url or base_url()
    hint = "log in with `wandb login` or set tracking.wandb.mode=offline (or disabled)"
    if not key:
        raise StepError(f"main: tracking.wandb.mode is online but no W&B API key is configured; {hint}")
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql",
        data=json.dumps({"query": "query Viewer { viewer { entity } }"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"api:{key}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        what = "rejected the API key" if e.code in (401, 403) else f"answered HTTP {e.code}"
        raise StepError(f"main: W&B at {url} {what}; {hint}") from e
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as e:
        reason = scrub(str(getattr(e, "reason", e)))
        raise StepError(f"main: cannot reach W&B at {url} ({reason}); {hint}") from e
    viewer = (body.get("data") or {}).get("viewer")
    if not viewer:
        raise StepError(f"main: W&B at {url} rejected the API key; {hint}")
    return str(viewer.get("entity") or "")


def own_switch() -> str:
    """The W&B variable that turned it off, as the user set it."""
    if wandb_own_mode() == "disabled" and os.environ.get(ENV_WANDB_DISABLED):
        return f"{ENV_WANDB_DISABLED}={os.environ[ENV_WANDB_DISABLED]}"
    return f"{ENV_WANDB_MODE}={os.environ.get(ENV_WANDB_MODE, '')}"


def step_environment(mode: str, project: str, group: str, directory: Path) -> dict[str, str]:
    """What main.py puts in the environment of its steps (resolved once, for every step)."""
    return {ENV_MODE: mode, ENV_PROJECT: project, ENV_GROUP: group, ENV_DIR: str(directory)}


def prepare_pipeline(configured: str, project: str, group: str, directory: Path) -> str:
    """main.py's part: resolve the mode, fail fast when online cannot work, hand it to the steps."""
    key = api_key()
    mode = resolve_mode(configured, key is not None)
    if mode == "online":
        entity = check_online(key)
        log.info("W&B online as '%s': project '%s', group '%s'", entity, project, group)
    elif mode == "offline":
        log.info("W&B offline: runs are written under %s/wandb for a later `wandb sync`", directory)
    elif str(configured).strip().lower() != "disabled":
        log.info("W&B disabled by %s (tracking.wandb.mode is %s)", own_switch(), configured)
    os.environ.update(step_environment(mode, project, group, directory))
    if mode != "disabled":
        share_service()
    return mode


# -- W&B in processes forked from a parent that imported it (the step workers) -----------------
def import_time_folders() -> list[tempfile.TemporaryDirectory[str]]:
    """The temporary folders W&B makes once, at import (media files, artifact files), each removed
    by an exit handler."""
    media = sys.modules.get("wandb.sdk.data_types._private")
    artifact = getattr(sys.modules.get("wandb.sdk.artifacts.artifact"), "Artifact", None)
    found = [getattr(media, "MEDIA_TMP", None), getattr(artifact, "_TMP_DIR", None)]
    return [f for f in found if isinstance(f, tempfile.TemporaryDirectory)]


def release_import_time_folders() -> None:
    """In a parent that forks processes after importing W&B: remove those folders now, so that the
    first forked process to end does not remove them under the others (`own_folders`)."""
    for folder in import_time_folders():
        atexit.unregister(folder.cleanup)
        folder.cleanup()


def own_folders() -> None:
    """In a process forked from such a parent: W&B's temporary folders of its own, removed at exit."""
    for folder in import_time_folders():
        folder.name = tempfile.mkdtemp(prefix="wandb-")
        atexit.register(folder.cleanup)


def share_service() -> None:
    """One W&B service process for the whole pipeline rather than one started by every step:
    `wandb.setup()` starts it (once per process) and names it in WANDB_SERVICE, which every step
    process inherits, so a step's `wandb.init` connects to it. It ends with this process."""
    import wandb

    wandb.setup()


# -- online decisions, kept apart from the network so they can be tested ------------------------
def matching_version(digest: str, versions: Sequence[tuple[str, str]]) -> str | None:
    """The W&B version (`v3`) whose content digest is `digest`, among (version, digest) pairs."""
    return next((version for version, candidate in versions if candidate == digest), None)


@dataclass(frozen=True)
class AliasPlan:
    """How to put an alias on the W&B version that holds some content."""

    action: str  # "none", "add_alias" (an existing online version) or "log_with_alias"
    version: str | None = None  # the W&B version to alias, for "add_alias"


def alias_plan(mode: str, existing_version: str | None) -> AliasPlan:
    """Online, an existing version gets the alias in place (`latest` stays where it is). Offline,
    or when W&B never saw this content, logging the same files again with the alias lands on the
    version of identical content (W&B deduplicates by digest), when the run is synced if offline.
    """
    if mode not in ("online", "offline"):
        return AliasPlan("none")
    if mode == "online" and existing_version is not None:
        return AliasPlan("add_alias", existing_version)
    return AliasPlan("log_with_alias")


def use_plan(mode: str, existing_version: str | None) -> str | None:
    """The reference to declare with `use_artifact`; None where W&B refuses it (offline) or
    does not hold the content (it was produced with W&B off)."""
    return existing_version if mode == "online" else None


# -- the W&B run of one step --------------------------------------------------------------------
class Mirror:
    """The W&B run of one step process; every method does nothing when W&B is disabled."""

    def __init__(self, run: Any = None, mode: str = "disabled") -> None:
        self.run = run
        self.mode = mode if run is not None else "disabled"
        # Artifact versions and aliases wait for the step to succeed, as in MLflow: a failed step
        # creates no version and moves no alias.
        self._pending: list[Callable[[], None]] = []

    @property
    def enabled(self) -> bool:
        return self.run is not None

    @classmethod
    def start(
        cls,
        step: str,
        params: Mapping[str, Any],
        run_id: str,
        default_project: str,
        mode: str | None = None,
    ) -> Mirror:
        """One `wandb.init` for the step; its id is the MLflow run id, so either finds the other."""
        mode = resolve_mode(mode or os.environ.get(ENV_MODE) or "disabled", api_key() is not None)
        if mode == "disabled":
            return cls()
        import wandb

        directory = Path(os.environ.get(ENV_DIR) or Path.cwd())
        directory.mkdir(parents=True, exist_ok=True)
        try:
            run = wandb.init(
                project=os.environ.get(ENV_PROJECT) or default_project,
                group=os.environ.get(ENV_GROUP) or None,
                job_type=step,
                name=step,
                id=run_id,
                config=loggable(params),
                dir=str(directory),
                mode=mode,
                # The in-process executor runs several steps at once in one process.
                reinit="create_new",
                # No system metadata: it records the command line, which may hold a secret. No
                # list of installed packages (half a second a step): the pipeline run has it.
                settings=wandb.Settings(
                    x_disable_meta=True,
                    x_disable_stats=True,
                    x_save_requirements=False,
                    save_code=False,
                    silent=True,
                ),
            )
        except Exception as e:
            raise StepError(f"{step}: W&B ({mode}) could not start a run: {scrub(str(e))}") from e
        return cls(run, mode)

    def log_params(self, values: Mapping[str, Any]) -> None:
        """More parameters of the step (flattened as MLflow's are): the run's config."""
        if self.enabled:
            self.run.config.update(loggable(values))

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled or not values:
            return
        if step is None:
            self.run.summary.update(dict(values))
        else:
            self.run.log(dict(values), step=step)

    def log_figure(self, figure: Figure, filename: str) -> None:
        if self.enabled:
            import wandb

            self.run.log({f"plots/{Path(filename).stem}": wandb.Image(figure)})

    def log_table(self, key: str, table: pd.DataFrame) -> None:
        """A table (a W&B Table on the run page), as the MLflow run holds it in `key`.json."""
        if self.enabled:
            import wandb

            self.run.log({key: wandb.Table(dataframe=table)})

    def rename(self, name: str) -> None:
        if self.enabled:
            self.run.name = name

    def _artifact(
        self,
        name: str,
        path: Path,
        type: str,
        description: str,
        metadata: Mapping[str, Any],
        stored: bool = False,
    ) -> Any:
        """`stored`: the files are the artifact store's own, never changed: W&B reads them where
        they are (no staging copy), and none goes to W&B's cache either way."""
        import wandb

        artifact = wandb.Artifact(
            name, type=type or name, description=description or None, metadata=dict(metadata)
        )
        policy = "immutable" if stored else "mutable"
        if path.is_dir():
            artifact.add_dir(str(path), skip_cache=True, policy=policy)
        else:
            artifact.add_file(str(path), skip_cache=True, policy=policy)
        return artifact

    def log_artifact(
        self,
        name: str,
        path: Path,
        type: str,
        description: str,
        metadata: Mapping[str, Any],
        aliases: Sequence[str] = (),
        stored: bool = False,
    ) -> None:
        """Log the files under the same name, type, description and metadata; `latest` is added.
        The files are read now, the version is logged when the step has succeeded."""
        if self.enabled:
            artifact = self._artifact(name, path, type, description, metadata, stored)
            self._pending.append(lambda: self.run.log_artifact(artifact, aliases=["latest", *aliases]))

    def _path(self, name: str, selector: str | None = None) -> str:
        return f"{self.run.entity}/{self.run.project}/{name}" + (f":{selector}" if selector else "")

    def _remote_version(self, version: ArtifactVersion, path: Path) -> str | None:
        """Online: the W&B version holding the same files as `version`, found by content digest."""
        import wandb

        digest = self._artifact(version.name, path, version.type, "", {}).digest
        api = wandb.Api(overrides={"entity": self.run.entity, "project": self.run.project})
        try:
            found = api.artifacts(version.type or version.name, self._path(version.name))
            candidates = [(a.version, a.digest) for a in found]
        except Exception as e:  # the collection does not exist yet
            log.info("W&B has no artifact '%s' yet (%s)", version.name, type(e).__name__)
            return None
        return matching_version(digest, candidates)

    def use(self, version: ArtifactVersion, path: Path) -> None:
        """Online, declare the read on the same W&B version, so the lineage graph shows it."""
        if self.mode != "online":
            return
        reference = use_plan(self.mode, self._remote_version(version, path))
        if reference is None:
            log.info(
                "W&B holds no version with the content of %s: this read is not in its lineage", version.ref
            )
            return
        self.run.use_artifact(f"{version.name}:{reference}")
        log.info("W&B lineage: %s read as %s:%s", version.ref, version.name, reference)

    def set_alias(self, version: ArtifactVersion, path: Path, alias: str, stored: bool = False) -> str | None:
        """Put `alias` on the W&B version of `version`'s content (`stored`: `path` is the artifact
        store's own copy); return the W&B version when known."""
        if not self.enabled:
            return None
        existing = self._remote_version(version, path) if self.mode == "online" else None
        plan = alias_plan(self.mode, existing)
        if plan.action == "add_alias":
            import wandb

            remote = wandb.Api().artifact(self._path(version.name, plan.version))
            if alias not in remote.aliases:
                remote.aliases.append(alias)
                self._pending.append(remote.save)
        elif plan.action == "log_with_alias":
            v = version
            self.log_artifact(v.name, path, v.type, v.description, v.metadata, [alias], stored)
        log.info("W&B: %s is now '%s'%s", version.ref, alias, "" if self.mode == "online" else " (on sync)")
        return plan.version

    def record(self, values: Mapping[str, Any]) -> None:
        if self.enabled:
            self.run.summary.update(dict(values))

    def finish(self, failed: bool, reason: str = "") -> None:
        """Always called: a failed step's run is marked failed (exit code 1)."""
        if not self.enabled:
            return
        try:
            if failed and reason:
                self.run.summary["error"] = scrub(reason)[:1000]
            while not failed and self._pending:
                self._pending.pop(0)()
        finally:
            self._pending.clear()
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None


def mirror_promotion(
    version: ArtifactVersion, path: Path, alias: str = "prod", mirror: Mirror | None = None
) -> None:
    """Mirror a promotion: `alias` on the W&B version of the promoted model (in place online), and
    the promoted version recorded in the W&B run. Without a step's mirror, a short run of job type
    `promote` is opened (and finished) in the mode main.py or MLPIPE_WANDB_MODE set."""
    own = mirror is None
    if mirror is None:
        mirror = Mirror.start(
            "promote",
            {"artifact": version.ref, "alias": alias},
            run_id=f"promote-{version.digest[:12]}-{os.getpid()}",
            default_project=os.environ.get(ENV_PROJECT) or "mlpipe",
        )
    failed = True
    try:
        if mirror.mode == "online":
            reference = use_plan(mirror.mode, mirror._remote_version(version, path))
            if reference is not None:
                mirror.run.use_artifact(f"{version.name}:{reference}")
        remote = mirror.set_alias(version, path, alias)
        mirror.record(
            {
                f"promoted.{alias}": version.ref,
                f"promoted.{alias}.digest": version.digest,
                **({f"promoted.{alias}.wandb_version": remote} if remote else {}),
            }
        )
        failed = False
    finally:
        if own:
            mirror.finish(failed)
