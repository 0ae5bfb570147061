"""The one error class for problems a user can fix (bad params, bad files, missing inputs)."""


class AudioclfError(Exception):
    """A user-caused problem. The message is one line naming the file/param and the fix.

    The CLI prints it without a traceback and exits 2; anything else is a bug and keeps its
    traceback.
    """
