"""The one CLI helper: `Parser` (usage errors are one `error:` line, exit 2) and `cli`, the wrapper
that turns an InputError into that line. Every command (stages, seed commands, helpers) uses both."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from analysis.base.errors import EXIT_BAD_INPUT, InputError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C

F = TypeVar("F", bound=Callable[..., object])


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors become an InputError: one `error:` line and exit 2 under `cli`
    (plain argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see {self.prog} --help)")

    def add_compute_flags(self) -> None:
        """--device, --dtype and --memory-budget-gb, for every command that loads a model; each
        defaults to params.yaml's key of the same name (analysis.settings.hardware.from_args resolves them)."""
        self.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N | mps (default: params.yaml device)")
        self.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: params.yaml dtype)")
        self.add_argument("--memory-budget-gb", default=None,
                          help="GB the exact fast path may fill with several sites per forward, or auto (default: params.yaml)")


def cli(main: F) -> F:
    """Run `main`; an InputError becomes `error: <message>` on stderr and exit code 2, and an
    interrupt (Ctrl-C, SIGINT) one `error: interrupted` line and exit 130 (128 + SIGINT), no traceback."""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return main(*args, **kwargs)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            print("error: interrupted (SIGINT); outputs are written atomically, so nothing was half-written",
                  file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def progress_disabled() -> bool:
    """Bars on a terminal only: CI logs stay quiet (and so do worker processes: quiet_worker)."""
    return not sys.stderr.isatty() or os.environ.get(_QUIET) == "1"


_QUIET = "EMOTION_HEADS_QUIET"


def quiet_worker() -> None:
    """A worker process's initializer: no progress bars (the parent draws one for all)."""
    os.environ[_QUIET] = "1"
