"""Artifact files on this machine's disk, stored once.

With a local artifact store (`mlartifacts/`, the default) a file a step wrote is linked into the
store instead of copied (the store then holds the only copy of its bytes: the step's scratch copy
is deleted with its folder), and a step reads its inputs where the store keeps them instead of
copying them into its scratch folder first. Files the store holds are never written to again: a
step writes each output once, before it logs it, and only reads its inputs. Where the store is
remote (a tracking server's proxied artifacts), or the disk refuses a link (another file system),
MLflow's own upload and download copy the files as before.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def local_dir(artifact_uri: str) -> Path | None:
    """The folder an artifact URI names on this machine, if it names one."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repo = get_artifact_repository(artifact_uri)
    return Path(repo.artifact_dir) if isinstance(repo, LocalArtifactRepository) else None


def link(source: Path, dest: Path) -> bool:
    """Hard-link a file, or every file of a folder, at `dest`; False (and nothing left at
    `dest` that was not there before) where the disk cannot link them."""
    existed = dest.exists()
    try:
        if source.is_dir():
            shutil.copytree(source, dest, copy_function=os.link, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            os.link(source, dest)
    except OSError:
        if dest.is_dir() and not existed:
            shutil.rmtree(dest, ignore_errors=True)
        return False
    return True


def present(path: Path, is_file: bool) -> bool:
    return path.is_file() if is_file else path.is_dir() and any(path.iterdir())
