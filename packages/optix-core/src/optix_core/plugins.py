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
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from optix_core import hookspecs
from optix_core.specs import AgentSpec, BackendSpec, CallbackSpec, EvaluatorSpec

log = logging.getLogger("optix")

GROUP = "optix"
CORE_DISTRIBUTION = "optix-core"
HOOK_KINDS = {
    "optix_register_agents": AgentSpec,
    "optix_register_evaluators": EvaluatorSpec,
    "optix_register_callbacks": CallbackSpec,
    "optix_register_backends": BackendSpec,
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


class PluginRegistry:
    """Everything the installed plugins registered, loaded on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self.plugins: list[PluginInfo] = []
        self.items: dict[type, dict[tuple[str, ...], Registered]] = {
            k: {} for k in HOOK_KINDS.values()
        }

    def ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        manager = pluggy.PluginManager(GROUP)
        manager.add_hookspecs(hookspecs)
        strict = os.environ.get("OPTIX_STRICT_PLUGINS", "") not in ("", "0")
        allowed = _allowed_distributions()
        for ep in sorted(
            entry_points(group=GROUP), key=lambda e: (e.dist.name if e.dist else "", e.name)
        ):
            dist = _normalise(ep.dist.name) if ep.dist else ep.name
            if allowed is not None and dist != CORE_DISTRIBUTION and dist not in allowed:
                continue
            info = PluginInfo(
                name=ep.name,
                distribution=dist,
                version=ep.dist.version if ep.dist else "unknown",
                module=ep.value,
            )
            self.plugins.append(info)
            try:
                module = ep.load()
                manager.register(module, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}", strict)
                continue
            info.hooks = sorted(h.name for h in manager.get_hookcallers(module) or ())
        for hook_name, kind in HOOK_KINDS.items():
            for impl in getattr(manager.hook, hook_name).get_hookimpls():
                info = next(p for p in self.plugins if p.name == impl.plugin_name)
                try:
                    impl.function(**_hook_kwargs(impl, self._registrar(kind, info.distribution)))
                except PluginConflictError:
                    raise
                except Exception as exc:
                    self._fail(info, f"{hook_name} failed: {type(exc).__name__}: {exc}", strict)

    def _fail(self, info: PluginInfo, message: str, strict: bool) -> None:
        info.error = message
        if strict:
            raise PluginError(f"plugin {info.name!r} ({info.distribution}): {message}")
        log.warning("optix plugin %r (%s) skipped: %s", info.name, info.distribution, message)

    def _registrar(self, kind: type, distribution: str):
        table = self.items[kind]

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

    def registered(self, kind: type) -> list[Registered]:
        self.ensure_loaded()
        return list(self.items[kind].values())


def _key(spec: Any) -> tuple[str, ...]:
    if isinstance(spec, AgentSpec):
        return (spec.name, spec.backend)
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
