"""How the ``optix`` command reports bad input."""

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input: reported as one line on stderr and exit code 2, before any work."""
