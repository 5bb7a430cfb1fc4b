"""Reading back what wandb wrote offline: the records of `run-<id>.wandb` files, decoded with the
protobuf definitions wandb ships (`wandb.proto.wandb_internal_pb2.Record`).

The file is a header (`:W&B`, a 2-byte magic, a version byte) followed by LevelDB-log blocks of
32 KiB; each chunk has a 7-byte header (crc32, length, type) and a record may span chunks.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # block trailer padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if length == 0 and kind == 0:  # zero padding up to the end of the block
            position += left
            continue
        assert kind in (FULL, FIRST, MIDDLE, LAST), f"{path}: bad chunk type {kind} at {position}"
        pending += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@dataclass
class OfflineRun:
    """What one offline run holds, in the terms the tests assert on."""

    path: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)
    artifacts: list[pb.ArtifactRecord] = field(default_factory=list)
    exit_code: int | None = None

    def artifact(self, name: str) -> pb.ArtifactRecord:
        found = [a for a in self.artifacts if a.name == name]
        assert found, f"{self.job_type}: no artifact '{name}' in {[a.name for a in self.artifacts]}"
        return found[-1]


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(path: Path) -> OfflineRun:
    run = OfflineRun(path)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.group, run.job_type = r.run_id, r.project, r.run_group, r.job_type
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            run.history_keys.update(_key(i) for i in record.history.item)
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(wandb_root: Path) -> list[OfflineRun]:
    """Every offline run under a folder (`<dir>/wandb/offline-run-*/run-*.wandb`).

    wandb-core writes the files in the background: in the test process, shut it down first
    (a step process does the same when it exits)."""
    import wandb

    wandb.teardown()
    return [read_run(p) for p in sorted(wandb_root.rglob("offline-run-*/run-*.wandb"))]


WANDB_ENV = (
    "WANDB_API_KEY",
    "WANDB_MODE",
    "WANDB_PROJECT",
    "WANDB_RUN_GROUP",
    "WANDB_ENTITY",
    "MLPIPE_WANDB_MODE",
)


def isolate_wandb(root: Path, monkeypatch: Any) -> Path:
    """Point every folder wandb writes to (runs, caches, staging, settings, netrc) under `root`,
    and forget the user's W&B settings; return the folder the runs land in."""
    for var in WANDB_ENV:
        monkeypatch.delenv(var, raising=False)
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    for var, sub in (
        ("WANDB_DIR", "runs"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        monkeypatch.setenv(var, str(root / sub))
    return root / "runs"


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]
