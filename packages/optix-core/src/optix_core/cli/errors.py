"""How the ``optix`` command reports bad input."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: reported as one line on stderr and exit code 2, before any work."""


@contextlib.contextmanager
def usage_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Report the library's own errors of ``kinds`` (a damaged run, a refused
    checkpoint) as bad input: their message, one line, exit code 2."""
    try:
        yield
    except kinds as exc:
        raise UsageError(str(exc)) from None
