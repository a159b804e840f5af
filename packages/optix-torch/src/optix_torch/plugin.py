"""optix-torch's plugin: registers the PyTorch backend and its agents. Imports no torch.

Every module in ``optix_torch.config`` describes one algorithm (``SPEC``,
``DEFAULTS``, ``SEARCH_SPACE``, ``ROLLOUT``, optionally ``PRESETS``); each
becomes an ``AgentSpec``.
"""

import importlib
import pkgutil

from optix_core import AgentSpec, BackendSpec, hookimpl
from optix_torch import config


@hookimpl
def optix_register_backends(register):
    register(
        BackendSpec(
            name="torch",
            distribution="optix-torch",
            list_devices="optix_torch.device:list_devices",
            resolve_device="optix_torch.device:resolve_device",
            seed="optix_torch.device:seed_everything",
            summary="PyTorch, on the CPU or CUDA",
            export="optix_torch.export:export_policy",
        )
    )


@hookimpl
def optix_register_agents(register):
    for info in sorted(pkgutil.iter_modules(config.__path__), key=lambda m: m.name):
        algorithm = importlib.import_module(f"{config.__name__}.{info.name}")
        register(
            AgentSpec(
                **algorithm.SPEC,
                backend="torch",
                defaults=dict(algorithm.DEFAULTS),
                search_space=dict(algorithm.SEARCH_SPACE),
                rollout=dict(algorithm.ROLLOUT),
                presets=dict(getattr(algorithm, "PRESETS", {})),
            )
        )
