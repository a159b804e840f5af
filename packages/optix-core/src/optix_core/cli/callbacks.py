"""The callbacks ``optix train`` offers: every registered CallbackSpec, by name.

The CLI knows none of them: a spec with ``flag`` becomes ``--NAME`` (taking
its ``option`` as a value where it has one), and ``--callback NAME[=VALUE]``
reaches any. What was asked for is checked (registered, its libraries
installed, a value where one is needed) before a run starts, and recorded in
the run's config so that ``--resume`` watches the run the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import Any

from optix_core import registry
from optix_core.cli.errors import UsageError
from optix_core.plugins import PluginError
from optix_core.specs import CallbackSpec, load_object

log = logging.getLogger("optix")


def add_callback_args(parser: argparse.ArgumentParser) -> None:
    try:
        specs = registry.callbacks()
    except PluginError:  # strict loading: the command reports it, as one line
        specs = []
    group = parser.add_argument_group("callbacks (from installed plugins; see optix plugins)")
    group.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="watch the run with a registered callback" + _names_hint(specs, prefix=": "),
    )
    for spec in specs:
        if spec.flag:
            _add_flag(group, spec)


def _add_flag(group: Any, spec: CallbackSpec) -> None:
    options: dict[str, Any] = {"dest": _dest(spec.name), "help": spec.summary}
    if spec.option is None:
        options["action"] = "store_true"
    elif spec.option_required:
        options["metavar"] = spec.option.upper()
    else:
        options.update(nargs="?", const="", metavar=spec.option.upper())
    try:
        group.add_argument(f"--{spec.name}", **options)
    except argparse.ArgumentError:  # a plugin's name must not shadow a flag of optix's own
        log.warning("callback %s has no --%s flag: the name is taken", spec.name, spec.name)


def requested(args: argparse.Namespace) -> dict[str, str | None]:
    """The callbacks asked for, name -> value (None where none was given), checked."""
    specs = {spec.name: spec for spec in registry.callbacks()}
    asked: dict[str, str | None] = {}
    for name in specs:
        value = getattr(args, _dest(name), None)
        if value is True or value == "":
            asked[name] = None
        elif isinstance(value, str):
            asked[name] = value
    for item in args.callback:
        name, sep, value = item.partition("=")
        asked[name] = value if sep else None
    for name, value in asked.items():
        check(specs, name, value)
    return asked


def check(specs: dict[str, CallbackSpec], name: str, value: str | None) -> None:
    spec = specs.get(name)
    if spec is None:
        raise UsageError(f"no callback named {name!r} is installed" + _names_hint(specs.values()))
    if value is not None and spec.option is None:
        raise UsageError(f"callback {name} takes no value, got {value!r}")
    if value is None and spec.option is not None and spec.option_required:
        raise UsageError(f"callback {name} needs a {spec.option.upper()} (--{name} VALUE)")
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        install = f": pip install '{spec.extra}'" if spec.extra else ""
        raise UsageError(f"callback {name} needs {', '.join(missing)}, not installed{install}")


def build(asked: dict[str, str | None], run_dir: Path) -> list[Any]:
    """The LoopCallbacks, in the order asked: the loop keys their saved state by position."""
    specs = {spec.name: spec for spec in registry.callbacks()}
    built = []
    for name, value in asked.items():
        check(specs, name, value)
        spec = specs[name]
        options: dict[str, Any] = {"run_dir": run_dir}
        if value is not None and spec.option is not None:
            options[spec.option] = value
        try:
            built.append(load_object(spec.factory)(**options))
        except (ValueError, TypeError, ModuleNotFoundError) as exc:
            raise UsageError(f"callback {name}: {exc}") from None
    return built


def _dest(name: str) -> str:
    return "callback_" + name.replace("-", "_")


def _names_hint(specs: Any, prefix: str = "; installed: ") -> str:
    names = sorted(spec.name for spec in specs)
    return prefix + ", ".join(names) if names else ""
