"""optix-tf's plugin: registers the TensorFlow backend. Imports no tensorflow."""

from optix_core import BackendSpec, hookimpl


@hookimpl
def optix_register_backends(register):
    register(
        BackendSpec(
            name="tf",
            distribution="optix-tf",
            list_devices="optix_tf.device:list_devices",
            resolve_device="optix_tf.device:resolve_device",
            seed="optix_tf.device:seed_everything",
            summary="TensorFlow 2, on the CPU or GPU",
        )
    )
