"""The one error class for problems a user can fix (bad params, bad files, missing inputs)."""

from __future__ import annotations

import argparse
from typing import NoReturn

BRIEF_LIMIT = 200  # characters: an error message quotes at most this much of anything it echoes


class AudioclfError(Exception):
    """A user-caused problem. The message is one line naming the file/param and the fix.

    The CLI prints it without a traceback and exits 2; anything else is a bug and keeps its
    traceback.
    """


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (an unknown option, a missing value) are an AudioclfError: one line
    and exit 2 from the CLI, instead of argparse's usage block plus the error."""

    def error(self, message: str) -> NoReturn:
        raise AudioclfError(f"{self.prog}: {message}; run `{self.prog} --help` for the options")


def brief(what: BaseException | str, limit: int = BRIEF_LIMIT) -> str:
    """One line of at most `limit` characters from an exception or a text, for quoting inside an
    error message: whitespace runs (newlines included) become one space, a longer text ends in "…".
    An exception with no text gives its type name."""
    text = " ".join(str(what).split())
    if not text and isinstance(what, BaseException):
        text = type(what).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
