"""optix-torch's plugin: registers the PyTorch backend and its agents. Imports no torch.

Every algorithm's defaults, presets and search space live in
``optix_core.algorithms.config``, shared by every backend;
``agent_specs("torch", "optix_torch")`` pairs each with its factory here,
``optix_torch.algorithms.<module>:make_<module>``.
"""

from optix_core import BackendSpec, hookimpl
from optix_core.algorithms.config import agent_specs


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
    for spec in agent_specs("torch", "optix_torch"):
        register(spec)
