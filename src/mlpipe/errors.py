"""One error type for bad input, so every step fails with one line that says what is wrong."""

from __future__ import annotations


class StepError(Exception):
    """Bad input or configuration a user can fix; the message is shown as one line.

    The message names the file, column, key or parameter, what was found and what was expected.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
