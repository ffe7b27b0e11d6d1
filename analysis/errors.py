"""One exception type for bad input, and the CLI wrapper that turns it into one line.

Bad input (a malformed head spec, a missing file, an unavailable model, ...) must reach the
user as a single line on stderr and a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

EXIT_BAD_INPUT = 2

F = TypeVar("F", bound=Callable[..., object])


class InputError(Exception):
    """Input the user can fix; the message is the whole story, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def cli(main: F) -> F:
    """Run `main`; an InputError becomes `error: <message>` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]
