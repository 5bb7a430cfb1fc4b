"""Content digests (sha256) of files and folders, computed while the bytes are written.

A step writes its outputs once and the artifact store needs their digest: hashing the bytes on
their way to the disk saves reading a large file back. A file written through `HashingWriter` (or
copied by `copy_hashed`) is remembered by its identity on disk (path, inode, size, modification
time), so `digest_path` answers from memory as long as the file is unchanged, and reads it
otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20
_known: dict[tuple[str, int, int, int], str] = {}


def _identity(path: Path) -> tuple[str, int, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def remember(path: Path, digest: str) -> None:
    _known[_identity(path)] = digest


def file_digest(path: Path) -> str:
    """The sha256 of one file: remembered when this process wrote it, else read."""
    known = _known.get(_identity(path))
    if known is not None:
        return known
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digest_path(path: Path) -> str:
    """sha256 of a file, or of a folder's relative paths and file contents."""
    if not path.is_dir():
        return file_digest(path)
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


class HashingWriter:
    """A binary file opened for writing that hashes what goes through it; on close the file's
    digest is remembered. Writers that take a file object (Parquet, CSV, tar) write through it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("wb")
        self._hash = hashlib.sha256()

    def write(self, data: Any) -> int:
        self._hash.update(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        self._file.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False  # a seek would put bytes out of the order they were hashed in

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            remember(self.path, self.digest)

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy_hashed(source: IO[bytes] | Path, dest: Path) -> str:
    """Copy a file (or a stream) to `dest`, hashing it on the way: one read instead of two."""
    with HashingWriter(dest) as out:
        if isinstance(source, Path):
            with source.open("rb") as f:
                shutil.copyfileobj(f, out, CHUNK)
        else:
            shutil.copyfileobj(source, out, CHUNK)
        return out.digest
