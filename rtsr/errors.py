"""The one exception type for mistakes a user can make (bad path, unknown model, no GPU...).

The CLI prints its message on one line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class RtsrError(Exception):
    """A user-facing error whose message is meant to be read by a person."""
