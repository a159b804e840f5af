"""Plugin discovery: lazy, per entry point, and fault-isolated.

Plugins are modules named by entry points in the ``optix`` group. They are
imported the first time the registry is asked for anything, never when
``optix_core`` itself is imported. A plugin that fails to import, or whose
hook raises, is recorded with its error and skipped; the others still work.
``OPTIX_STRICT_PLUGINS=1`` turns such failures into errors, and
``OPTIX_LOAD_PLUGINS`` (comma-separated distribution names, empty for none)
restricts which third-party plugins load. optix-core's own built-ins always load.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import TracebackType
from typing import Any

import pluggy

from optix_core import hookspecs
from optix_core.specs import AgentSpec, BackendSpec, CallbackSpec, EnvironmentSpec, EvaluatorSpec

log = logging.getLogger("optix")

GROUP = "optix"
CORE_DISTRIBUTION = "optix-core"
HOOK_KINDS = {
    "optix_register_agents": AgentSpec,
    "optix_register_evaluators": EvaluatorSpec,
    "optix_register_callbacks": CallbackSpec,
    "optix_register_backends": BackendSpec,
    "optix_register_environments": EnvironmentSpec,
}


class PluginError(RuntimeError):
    """A plugin failed to load or register, and strict loading is on."""


class PluginConflictError(PluginError):
    """Two distributions registered the same name."""


@dataclass
class PluginInfo:
    """What is known of one installed plugin, for ``optix plugins``."""

    name: str
    distribution: str
    version: str
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": self.hooks,
            "error": self.error,
        }


@dataclass
class Registered:
    """One registered spec and the distribution that registered it."""

    spec: Any
    distribution: str


Tables = dict[type, dict[tuple[str, ...], Registered]]


class PluginRegistry:
    """Everything the installed plugins registered, loaded on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._failure: PluginError | None = None
        self._failure_traceback: TracebackType | None = None
        self.plugins: list[PluginInfo] = []
        self.items: Tables = _empty_tables()

    def ensure_loaded(self) -> None:
        """Load the plugins once.

        A load that fails (a conflict, or a broken plugin under strict loading)
        leaves the registry empty and is not retried: loading again would import
        every plugin a second time only to meet the same failure, so every later
        call raises the first error again.
        """
        with self._lock:
            if self._failure is not None:
                raise self._failure.with_traceback(self._failure_traceback)
            if self._loaded:
                return
            try:
                self.plugins, self.items = _load()
            except PluginError as exc:
                self._failure, self._failure_traceback = exc, exc.__traceback__
                raise
            self._loaded = True

    def _registrar(self, kind: type, distribution: str) -> Callable[[Any], None]:
        """A ``register`` callable adding to the loaded tables (tests add specs this way)."""
        return _registrar(self.items[kind], kind, distribution)

    def registered(self, kind: type) -> list[Registered]:
        self.ensure_loaded()
        return list(self.items[kind].values())


def _load() -> tuple[list[PluginInfo], Tables]:
    """Import every allowed plugin and call its hooks, into fresh tables that the
    caller adopts only when all of it succeeded, so no failure is half-applied."""
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    strict = os.environ.get("OPTIX_STRICT_PLUGINS", "") not in ("", "0")
    found = [_import(ep, manager, strict) for ep in _entry_points()]
    return found, _collect(manager, found, strict)


def _entry_points() -> list[Any]:
    """The entry points to load, in a stable order, less those ``OPTIX_LOAD_PLUGINS``
    leaves out (optix-core's own always loads)."""
    allowed = _allowed_distributions()
    return [
        ep
        for ep in sorted(
            entry_points(group=GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)
        )
        if allowed is None or _distribution(ep) in (allowed | {CORE_DISTRIBUTION})
    ]


def _distribution(ep: Any) -> str:
    return _normalise(ep.dist.name) if ep.dist else ep.name


def _import(ep: Any, manager: pluggy.PluginManager, strict: bool) -> PluginInfo:
    """Import one plugin module and register it with ``manager``; a failure is
    recorded on the returned info rather than stopping the others."""
    info = PluginInfo(
        name=ep.name,
        distribution=_distribution(ep),
        version=ep.dist.version if ep.dist else "unknown",
        module=ep.value,
    )
    try:
        module = ep.load()
        manager.register(module, name=ep.name)
    except Exception as exc:  # a broken plugin must not break the others
        _fail(info, f"import failed: {type(exc).__name__}: {exc}", strict)
        return info
    info.hooks = sorted(h.name for h in manager.get_hookcallers(module) or ())
    return info


def _collect(manager: pluggy.PluginManager, found: list[PluginInfo], strict: bool) -> Tables:
    """Call every registration hook into fresh tables. A conflict always stops the
    load; any other failing hook only skips its plugin (unless strict)."""
    items = _empty_tables()
    by_name = {info.name: info for info in found}
    for hook_name, kind in HOOK_KINDS.items():
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            info = by_name[impl.plugin_name]
            register = _registrar(items[kind], kind, info.distribution)
            try:
                impl.function(**_hook_kwargs(impl, register))
            except PluginConflictError:
                raise
            except Exception as exc:
                _fail(info, f"{hook_name} failed: {type(exc).__name__}: {exc}", strict)
    return items


def _fail(info: PluginInfo, message: str, strict: bool) -> None:
    info.error = message
    if strict:
        raise PluginError(f"plugin {info.name!r} ({info.distribution}): {message}")
    log.warning("optix plugin %r (%s) skipped: %s", info.name, info.distribution, message)


def _registrar(
    table: dict[tuple[str, ...], Registered], kind: type, distribution: str
) -> Callable[[Any], None]:
    """The ``register`` callable a hook receives: it adds to ``table`` and refuses a
    key another distribution already holds."""

    def register(spec: Any) -> None:
        if not isinstance(spec, kind):
            raise TypeError(f"expected {kind.__name__}, got {type(spec).__name__}")
        key = _key(spec)
        if key in table:
            first = table[key].distribution
            raise PluginConflictError(
                f"{kind.__name__} {'/'.join(key)!r} is registered by both "
                f"{first!r} and {distribution!r}; uninstall one of them"
            )
        table[key] = Registered(spec, distribution)

    return register


def _empty_tables() -> Tables:
    return {kind: {} for kind in HOOK_KINDS.values()}


def _key(spec: Any) -> tuple[str, ...]:
    if isinstance(spec, AgentSpec):
        return (spec.name, spec.backend)
    if isinstance(spec, EnvironmentSpec):
        return (spec.prefix,)
    return (spec.name,)


def _hook_kwargs(impl: Any, register: Any) -> dict[str, Any]:
    # Hooks only gain arguments over time; pass an implementation what it declares.
    return {name: register for name in impl.argnames if name == "register"}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _allowed_distributions() -> set[str] | None:
    raw = os.environ.get("OPTIX_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_normalise(part.strip()) for part in raw.split(",") if part.strip()}


_registry = PluginRegistry()


def get_registry() -> PluginRegistry:
    """The process-wide registry (loaded on first use)."""
    return _registry


def reset_registry() -> None:
    """Forget what was loaded, so the next use discovers plugins again."""
    global _registry
    _registry = PluginRegistry()
