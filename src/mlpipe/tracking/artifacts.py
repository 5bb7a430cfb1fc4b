"""Named, versioned artifacts on top of the MLflow tracking store.

A step logs a file or folder under a name (`clean_data`, `model_export`); the files go to the
producing run's artifact store and the run is tagged with the content digest. A version exists
once its producing run has FINISHED, so a failed step never creates one. Versions are numbered
`v0, v1, ...` in the order their content first appeared; identical content is the same version,
whose files are those of the run that uploaded them last (files found gone are uploaded again).
`name:latest` is the version most recently produced, other aliases (`reference`, `prod`) are
experiment tags; `name:auto` is the `prod` version once there is one, else the latest. Runs record
the digests they read and wrote, so lineage can be walked both ways. The tag layout is private to
this module: everything else asks the store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mlpipe.digests import digest_path
from mlpipe.errors import StepError
from mlpipe.tracking import local_files
from mlpipe.tracking.runs import TAG_STEP

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")
OUT, IN, SRC, META, ALIAS = (
    "artifact.out.",
    "artifact.in.",
    "artifact.src.",
    "artifact.meta.",
    "artifact.alias.",
)
AUTO = "auto"  # a selector: the version aliased AUTO_ALIAS when there is one, else the latest
AUTO_ALIAS = "prod"


@dataclass(frozen=True)
class ArtifactVersion:
    name: str
    version: int
    digest: str
    run_id: str  # the run whose artifact store holds the files
    file: str  # file name inside the artifact folder; "" when the artifact is a folder
    type: str = ""
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"

    @property
    def uri(self) -> str:
        """The MLflow URI of the files (a model folder loads from it directly)."""
        suffix = f"/{self.file}" if self.file else ""
        return f"runs:/{self.run_id}/{self.name}{suffix}"


@dataclass(frozen=True)
class Logged:
    """What `ArtifactStore.log` did."""

    digest: str
    existing: ArtifactVersion | None  # the version that already held this content, if any
    restored: bool = False  # its files were gone: this run uploaded them again
    stored: Path | None = None  # where a local store keeps the files (None for a remote store)


def parse_reference(reference: str) -> tuple[str, str]:
    """`clean_data:v3` -> (`clean_data`, `v3`); a bare name means `latest`."""
    name, _, selector = reference.partition(":")
    if not NAME_PATTERN.match(name):
        raise StepError(f"artifact reference '{reference}': expected name:latest, name:vN or name:<alias>")
    return name, selector or "latest"


class ArtifactStore:
    """The artifacts of one MLflow experiment (the project's namespace, like a W&B project)."""

    def __init__(self, experiment_id: str, client: MlflowClient | None = None) -> None:
        self.experiment_id = experiment_id
        self.client = client or MlflowClient()
        self._artifact_uris: dict[str, str] = {}  # run id -> its artifact URI (fixed for a run)

    def artifact_uri(self, run_id: str) -> str:
        if run_id not in self._artifact_uris:
            self._artifact_uris[run_id] = self.client.get_run(run_id).info.artifact_uri
        return self._artifact_uris[run_id]

    def local_files(self, run_id: str, name: str, file: str = "") -> Path | None:
        """Where the files of artifact `name` logged by `run_id` lie on this machine's disk, when
        the artifact store is a local folder (None for a remote store)."""
        folder = local_files.local_dir(self.artifact_uri(run_id))
        if folder is None:
            return None
        return folder / name / file if file else folder / name

    # -- reading -----------------------------------------------------------------------------
    def search(self, filter_string: str, order_by: list[str] | None = None) -> list[Run]:
        """Every run of the experiment matching an MLflow filter, all pages."""
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string,
                max_results=1000,
                order_by=order_by,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def producing_runs(self, name: str) -> list[Run]:
        """The FINISHED runs that wrote a version of `name`, oldest first."""
        return self.search(
            f"tags.`{OUT}{name}` LIKE '%' and attributes.status = 'FINISHED'",
            order_by=["attributes.end_time ASC"],
        )

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> digest, for the custom aliases (`latest` is derived, see `versions`)."""
        tags = self.client.get_experiment(self.experiment_id).tags
        prefix = f"{ALIAS}{name}."
        return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}

    def versions(self, name: str) -> list[ArtifactVersion]:
        producers = sorted(self.producing_runs(name), key=lambda r: (r.info.end_time or 0, r.info.start_time))
        aliases = self.aliases(name)
        first: dict[str, Run] = {}
        uploaded: dict[str, Run] = {}  # digest -> the last run that uploaded the files
        for run in producers:
            digest = run.data.tags[f"{OUT}{name}"]
            first.setdefault(digest, run)
            if run.data.tags.get(f"{SRC}{name}", run.info.run_id) == run.info.run_id:
                uploaded[digest] = run
        latest = producers[-1].data.tags[f"{OUT}{name}"] if producers else None
        result = []
        for number, (digest, run) in enumerate(first.items()):
            meta = json.loads(run.data.tags.get(f"{META}{name}", "{}"))
            holder = uploaded.get(digest, run)  # where the files are (and their file name)
            location = json.loads(holder.data.tags.get(f"{META}{name}", "{}"))
            names = [a for a, d in sorted(aliases.items()) if d == digest]
            if digest == latest:
                names.insert(0, "latest")
            result.append(
                ArtifactVersion(
                    name=name,
                    version=number,
                    digest=digest,
                    run_id=holder.data.tags.get(f"{SRC}{name}", holder.info.run_id),
                    file=location.get("file", ""),
                    type=meta.get("type", ""),
                    description=meta.get("description", ""),
                    metadata=meta.get("metadata", {}),
                    aliases=tuple(names),
                )
            )
        return result

    def find(self, reference: str) -> ArtifactVersion | None:
        name, selector = parse_reference(reference)
        versions = self.versions(name)
        if selector == AUTO:
            preferred = next((v for v in versions if AUTO_ALIAS in v.aliases), None)
            return preferred or next((v for v in versions if "latest" in v.aliases), None)
        if selector.startswith("v") and selector[1:].isdigit():
            number = int(selector[1:])
            return versions[number] if number < len(versions) else None
        return next((v for v in versions if selector in v.aliases), None)

    def resolve(self, reference: str) -> ArtifactVersion:
        found = self.find(reference)
        if found is None:
            name, _ = parse_reference(reference)
            known = (
                ", ".join(
                    f"{v.ref} [{', '.join(v.aliases)}]" if v.aliases else v.ref for v in self.versions(name)
                )
                or "none"
            )
            raise StepError(
                f"artifact '{reference}' not found in experiment {self.experiment_id}; "
                f"known versions of '{name}': {known}"
            )
        return found

    def version_with(self, name: str, digest: str) -> ArtifactVersion:
        """The version of `name` holding the content `digest`."""
        found = next((v for v in self.versions(name) if v.digest == digest), None)
        if found is None:
            raise StepError(f"artifact '{name}' has no version with content {digest[:12]}")
        return found

    def files_exist(self, version: ArtifactVersion) -> bool:
        """Are the version's files still in the artifact store? (A listing, not a download.)"""
        try:
            listed = self.client.list_artifacts(version.run_id, version.name)
        except Exception:  # the run or its artifact location is gone
            return False
        if version.file:
            return any(f.path == f"{version.name}/{version.file}" for f in listed)
        return bool(listed)

    def lost_outputs(self, run: Run) -> list[str]:
        """The artifacts a run wrote whose files are gone from the artifact store."""
        return [
            name
            for name, digest in self.outputs_of(run).items()
            if not self.files_exist(self.version_with(name, digest))
        ]

    def location(self, run_id: str, name: str, file: str = "") -> str:
        """Where the files of artifact `name` logged by `run_id` are stored (the URI of the
        store's artifact repository: `file://...` for a local store)."""
        suffix = f"/{file}" if file else ""
        return f"{self.artifact_uri(run_id)}/{name}{suffix}"

    def download(self, version: ArtifactVersion, dest: Path) -> Path:
        """The local file (or folder) of a version: where a local store keeps it (to be read,
        never written), else fetched into `dest`."""
        found = self._local_copy(version, dest)
        if found is not None:
            return found
        step = self.client.get_run(version.run_id).data.tags.get(TAG_STEP)
        again = (
            f"run {step} again to write them (main.force_steps=[{step}])"
            if step
            else f"run the step that wrote them (run {version.run_id}) again"
        )
        raise StepError(
            f"the files of artifact {version.ref} are gone from the artifact store ({version.uri}); {again}"
        )

    def _local_copy(self, version: ArtifactVersion, dest: Path) -> Path | None:
        """The version's files on this machine, or None where they are gone."""
        try:
            stored = self.local_files(version.run_id, version.name, version.file)
        except Exception:  # the run that held them is gone
            return None
        if stored is None:  # a remote store: download
            try:
                stored = Path(self.client.download_artifacts(version.run_id, version.name, str(dest)))
            except Exception:
                if self.files_exist(version):
                    raise  # not a loss: keep MLflow's reason
                return None
            stored = stored / version.file if version.file else stored
        return stored if local_files.present(stored, bool(version.file)) else None

    # -- writing -----------------------------------------------------------------------------
    def log(
        self,
        run_id: str,
        name: str,
        path: Path,
        type: str,
        description: str,
        metadata: dict[str, Any] | None = None,
    ) -> Logged:
        """Log `path` as artifact `name` from `run_id`.

        When identical content already exists, nothing is uploaded: the run points at the
        version that holds it, unless that version's files are gone; then they are uploaded
        again from this run, which the version's files are from then on.
        """
        if not NAME_PATTERN.match(name):
            raise StepError(f"artifact name '{name}': expected letters, digits, '_' or '-'")
        digest = digest_path(path)
        existing = next((v for v in self.versions(name) if v.digest == digest), None)
        restored = existing is not None and not self.files_exist(existing)
        if existing is not None and not restored:
            source = existing.run_id
        else:
            source = run_id
            self._upload(run_id, name, path)
        meta = {
            "type": type,
            "description": description,
            "file": "" if path.is_dir() else path.name,
            "metadata": metadata or {},
        }
        for key, value in (
            (f"{SRC}{name}", source),
            (f"{META}{name}", json.dumps(meta)),
            (f"{OUT}{name}", digest),
        ):  # OUT last: it is what makes a version
            self.client.set_tag(run_id, key, value)
        stored = self.local_files(source, name, meta["file"])
        return Logged(digest, existing, restored, stored)

    def _upload(self, run_id: str, name: str, path: Path) -> None:
        """Store the files of `path` as the run's artifact `name`: linked into a local store
        (no second copy of the bytes), copied where it must."""
        stored = self.local_files(run_id, name, "" if path.is_dir() else path.name)
        if stored is not None and local_files.link(path, stored):
            return
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), name)
        else:
            self.client.log_artifact(run_id, str(path), name)

    def record_use(self, run_id: str, version: ArtifactVersion) -> None:
        self.client.set_tag(run_id, f"{IN}{version.name}", version.digest)

    def set_alias(self, version: ArtifactVersion, alias: str) -> None:
        if alias == "latest" or not NAME_PATTERN.match(alias):
            raise StepError(f"alias '{alias}': expected letters, digits, '_' or '-', not 'latest'")
        self.client.set_experiment_tag(self.experiment_id, f"{ALIAS}{version.name}.{alias}", version.digest)

    # -- lineage -----------------------------------------------------------------------------
    def producers(self, version: ArtifactVersion) -> list[Run]:
        return self.search(f"tags.`{OUT}{version.name}` = '{version.digest}'")

    def consumers(self, version: ArtifactVersion) -> list[Run]:
        return self.search(f"tags.`{IN}{version.name}` = '{version.digest}'")

    def inputs_of(self, run: Run) -> dict[str, str]:
        """name -> digest of every artifact a run read."""
        return {k.removeprefix(IN): v for k, v in run.data.tags.items() if k.startswith(IN)}

    def outputs_of(self, run: Run) -> dict[str, str]:
        """name -> digest of every artifact a run wrote."""
        return {k.removeprefix(OUT): v for k, v in run.data.tags.items() if k.startswith(OUT)}

    @staticmethod
    def lineage_tags(run: Run) -> dict[str, str]:
        """The tags through which `run` read and wrote its versions: a run carrying them (a
        reuse record) stands for the same inputs and outputs."""
        return {k: v for k, v in run.data.tags.items() if k.startswith((OUT, IN, SRC, META))}
