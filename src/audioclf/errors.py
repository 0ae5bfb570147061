"""The one error class for problems a user can fix (bad params, bad files, missing inputs)."""

from __future__ import annotations

import argparse
from typing import NoReturn


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
