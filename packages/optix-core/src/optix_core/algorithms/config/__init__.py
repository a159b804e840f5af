"""Each algorithm's defaults, valid ranges, tuning ranges and rollout shape.

One module per algorithm, shared by every backend so that one algorithm
name means the same algorithm everywhere: ``SPEC`` (name, action spaces,
on/off-policy, summary; no factory, that is the backend's), ``DEFAULTS``,
``BOUNDS``, ``SEARCH_SPACE`` (``optix tune``'s trial-level ranges),
``ROLLOUT``, and optionally ``ONLINE_SEARCH_SPACE`` (what the loop may move
while one run trains) and ``PRESETS``. They import no ML framework, so that
registering and listing agents imports none; a backend's plugin registers
them with ``agent_specs``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from optix_core.specs import AgentSpec


def _modules() -> list[ModuleType]:
    """This package's algorithm modules, by module name."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def agent_specs(backend: str, package: str, names: Iterable[str] | None = None) -> list[AgentSpec]:
    """The ``AgentSpec`` of each algorithm here, for ``backend``.

    The factory of the algorithm in module ``<module>`` is
    ``"<package>.algorithms.<module>:make_<module>"`` (``optix_torch.algorithms.
    recurrent_ppo:make_recurrent_ppo`` for ``package="optix_torch"``).
    ``names`` (algorithm names, as ``optix list`` shows them: ``"ppo"``,
    ``"recurrent-ppo"``) restricts the specs to the algorithms a backend
    offers; ``None`` gives all of them. A name that is not here raises
    ``ValueError`` naming the known ones. Specs come in module-name order.
    """
    modules = _modules()
    wanted = None if names is None else set(names)
    if wanted is not None:
        unknown = wanted - {module.SPEC["name"] for module in modules}
        if unknown:
            known = ", ".join(sorted(module.SPEC["name"] for module in modules))
            raise ValueError(
                f"agent_specs({backend!r}): no shared config for {sorted(unknown)}; "
                f"known algorithms: {known}"
            )
    specs = []
    for module in modules:
        if wanted is not None and module.SPEC["name"] not in wanted:
            continue
        short = module.__name__.rpartition(".")[2]
        specs.append(
            AgentSpec(
                **module.SPEC,
                backend=backend,
                factory=f"{package}.algorithms.{short}:make_{short}",
                defaults=dict(module.DEFAULTS),
                search_space=dict(module.SEARCH_SPACE),
                rollout=dict(module.ROLLOUT),
                presets=dict(getattr(module, "PRESETS", {})),
            )
        )
    return specs
