"""The one exception type that means "the user made a mistake".

The CLI prints a :class:`PlatelabError` as a single line on stderr and exits
non-zero; anything else is a bug and keeps its traceback.
"""


class PlatelabError(Exception):
    """A user-facing error: a wrong path, a malformed file, an unknown name."""
