"""One exception type for bad input; analysis.core.cli's wrapper turns it into one line.

Bad input (a malformed head spec, a missing file, an unavailable model, ...) must reach the
user as a single line on stderr and a non-zero exit, never as a traceback.
"""

from __future__ import annotations



EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Input the user can fix; the message is the whole story, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
