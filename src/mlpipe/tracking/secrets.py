"""Keeping credentials out of everything logged: parameters, metadata, log lines, W&B config."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def is_secret(name: str) -> bool:
    return any(marker in name.upper() for marker in SECRET_MARKERS)


def environment() -> dict[str, str]:
    """A copy of os.environ, safe while another thread changes it (MLflow's telemetry thread
    sets and unsets a variable: iterating os.environ then raises KeyError or RuntimeError)."""
    for _ in range(10):
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue
    return dict(os.environ)


def secret_values() -> list[str]:
    """Values of environment variables that look like credentials (never logged)."""
    return [v for k, v in environment().items() if is_secret(k) and len(v) >= 4]


def scrub(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    return text


def flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """`{"a": {"b": 1}}` -> `("a.b", 1)`, skipping keys that look like secrets."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if is_secret(str(key)):
            continue
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def loggable(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flat parameters safe to log anywhere (MLflow params, W&B config): no secret-looking key,
    no secret value inside a string; numbers and booleans keep their type."""
    return {k: _safe_value(v) for k, v in flatten(config)}


def _safe_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value if scrub(str(value)) == str(value) else "***"
    return scrub_tree(value)


def scrub_tree(data: Any) -> Any:
    """A copy of nested metadata without secret-looking keys or secret values."""
    if isinstance(data, Mapping):
        return {k: scrub_tree(v) for k, v in data.items() if not is_secret(str(k))}
    if isinstance(data, list | tuple):
        return [scrub_tree(v) for v in data]
    if isinstance(data, os.PathLike):
        return scrub(os.fspath(data))
    return scrub(data) if isinstance(data, str) else data


class ScrubFilter(logging.Filter):
    """Masks secret values in every log line (a step's output is also what W&B records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def scrub_logs() -> None:
    """Install the filter on the root handlers (after `logging.basicConfig`)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubFilter) for f in handler.filters):
            handler.addFilter(ScrubFilter())
