"""Fetching a dataset from a path, a file:// or http(s):// URL, or a file a package ships."""

from __future__ import annotations

import importlib.resources
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mlpipe.digests import copy_hashed
from mlpipe.errors import StepError
from mlpipe.project import resolve_path

EXPECTED = "expected a path, a file:// or http(s):// URL, or pkg://<package>/<file>"


def fetch(source: str, dest_dir: Path, where: str, timeout: float = 60.0) -> Path:
    """Copy the source into `dest_dir` (hashing it on the way) and return the local file;
    relative paths are taken from the project root."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        name = Path(parsed.path).name or "download"
        target = dest_dir / name
        try:
            with urllib.request.urlopen(source, timeout=timeout) as response:
                copy_hashed(response, target)
        except urllib.error.HTTPError as e:
            raise StepError(f"{where}: could not fetch {source}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise StepError(f"{where}: could not fetch {source}: {reason}") from e
        return target
    if parsed.scheme == "pkg":
        try:
            located = importlib.resources.files(parsed.netloc).joinpath(parsed.path.lstrip("/"))
        except ModuleNotFoundError as e:
            raise StepError(f"{where}: source {source}: package '{parsed.netloc}' is not installed") from e
        if not located.is_file():
            raise StepError(f"{where}: source {source}: package '{parsed.netloc}' has no such file")
        target = dest_dir / Path(parsed.path).name
        with located.open("rb") as f:
            copy_hashed(f, target)
        return target
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
    elif parsed.scheme in ("",) or len(parsed.scheme) == 1:  # a plain (or Windows drive) path
        path = resolve_path(source)
    else:
        raise StepError(f"{where}: source '{source}' has unsupported scheme '{parsed.scheme}'; {EXPECTED}")
    if not path.exists():
        raise StepError(f"{where}: source '{source}' not found (looked at {path}); {EXPECTED}")
    if path.is_dir():
        raise StepError(f"{where}: source '{source}' is a folder; expected a CSV or Parquet file")
    target = dest_dir / path.name
    copy_hashed(path, target)  # a copy, not a link: the user's file may change after this run
    return target
