"""``optix list``, ``optix plugins`` and ``optix backends``: what is installed.

These read the registry only: no framework, no numpy is imported here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from optix_core import plugins, registry


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("list", help="algorithms of every installed plugin")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("plugins", help="installed plugins as JSON, with load errors")
    p.set_defaults(handler=cmd_plugins)

    p = sub.add_parser("backends", help="installed backends, versions and devices")
    p.add_argument("--no-devices", action="store_true", help="skip probing each framework")
    p.set_defaults(handler=cmd_backends)


def cmd_list(args: argparse.Namespace) -> int:
    rows = [
        [
            s.name,
            s.backend,
            ",".join(s.action_spaces),
            "on" if s.on_policy else "off",
            s.summary,
            registry.provider(s),
        ]
        for s in registry.agents()
    ]
    print(table(["algorithm", "backend", "actions", "policy", "summary", "plugin"], rows))
    for plugin in plugins.get_registry().plugins:
        if plugin.error:
            print(f"optix: plugin {plugin.name} skipped: {plugin.error}", file=sys.stderr)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    reg = plugins.get_registry()
    reg.ensure_loaded()
    families: dict[str, list[dict[str, Any]]] = {}
    for spec in registry.environments():  # which ids, beyond gymnasium's, each plugin serves
        families.setdefault(registry.provider(spec), []).append(
            {
                "prefix": spec.prefix,
                "summary": spec.summary,
                "extra": spec.extra,
                "pipeline": spec.pipeline,
            }
        )
    watchers: dict[str, list[dict[str, Any]]] = {}
    for spec in registry.callbacks():  # what optix train --NAME / --callback NAME offers
        watchers.setdefault(registry.provider(spec), []).append(
            {"name": spec.name, "summary": spec.summary, "flag": spec.flag, "extra": spec.extra}
        )
    listed = [
        {
            **p.to_dict(),
            "environments": families.get(p.distribution, []),
            "callbacks": watchers.get(p.distribution, []),
        }
        for p in reg.plugins
    ]
    print(json.dumps(listed, indent=2))
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    rows = []
    for spec in registry.backends():
        dist = next(
            p for p in plugins.get_registry().plugins if p.distribution == spec.distribution
        )
        devices = "" if args.no_devices else _probe_devices(spec.list_devices)
        rows.append([spec.name, spec.distribution, dist.version, devices])
    rows.append(["numpy", "optix-core", _version("optix-core"), "" if args.no_devices else "cpu"])
    print(table(["backend", "distribution", "version", "devices"], rows))
    return 0


def _probe_devices(reference: str) -> str:
    # Each framework is imported in its own process: torch and tensorflow in one
    # process can abort it (see DESIGN.md), and `optix` itself stays framework-free.
    code = (
        "import json; from optix_core.specs import load_object; "
        f"print(json.dumps(load_object({reference!r})()))"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        )
        return ",".join(json.loads(out.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return f"unavailable ({type(exc).__name__})"


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(lines)
