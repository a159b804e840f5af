"""optix-torch's plugin: registers the PyTorch backend. Imports no torch."""

from optix_core import BackendSpec, hookimpl


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
        )
    )
