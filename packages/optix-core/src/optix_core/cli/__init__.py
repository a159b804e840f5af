"""The ``optix`` command.

``list``, ``plugins`` and ``backends`` read the registry and never import a
framework or numpy; ``train``, ``eval``, ``export`` and ``tune`` build agents. Bad input
is one line on stderr and exit code 2, before any work starts. Each command
lives in a module of its own and registers its sub-parser here; arguments
that several commands take are defined once, in ``args``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from optix_core import frameworks, plugins
from optix_core.cli import evaluate, export, info, plot, train, tune
from optix_core.cli.errors import EXIT_USAGE, UsageError

__all__ = ["EXIT_USAGE", "UsageError", "main"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="optix: %(levelname)s: %(message)s",
    )
    frameworks.set_verbose(verbose)  # --verbose shows TensorFlow's start-up logs too
    try:
        return args.handler(args)
    except (UsageError, plugins.PluginError) as exc:
        print(f"optix: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optix", description="Train until converged, keep the best policy."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info.add_parsers(sub)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    export.add_parser(sub)
    tune.add_parser(sub)
    plot.add_parsers(sub)
    return parser
