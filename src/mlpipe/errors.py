"""One error type for bad input, so every step fails with one line that says what is wrong."""

from __future__ import annotations


class StepError(Exception):
    """Bad input or configuration a user can fix; the message is shown as one line.

    The message names the file, column, key or parameter, what was found and what was expected.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def cause(error: BaseException) -> str:
    """The innermost cause of an error as `Type: first line`: what went wrong, where a library
    (Hydra, MLflow) wrapped it in its own words and cut it off."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
