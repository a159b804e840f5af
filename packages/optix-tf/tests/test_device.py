import pytest
import tensorflow as tf

import optix_core
from optix_tf.device import list_devices, resolve_device, seed_everything


def test_backend_is_registered_through_the_plugin():
    spec = next(s for s in optix_core.backends() if s.name == "tf")
    assert spec.distribution == "optix-tf"


def test_auto_is_the_gpu_when_present_else_the_cpu():
    gpus = tf.config.list_physical_devices("GPU")
    assert resolve_device("auto") == ("/GPU:0" if gpus else "/CPU:0")
    assert resolve_device("cpu") == "/CPU:0"
    assert list_devices() == ["cpu", *(f"gpu:{i}" for i in range(len(gpus)))]


def test_a_missing_gpu_is_an_error():
    n = len(tf.config.list_physical_devices("GPU"))
    with pytest.raises(ValueError, match="not available"):
        resolve_device(f"cuda:{n}")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_seeding_makes_tensorflow_draws_repeat():
    seed_everything(5)
    a = tf.random.uniform((3,))
    seed_everything(5)
    assert bool(tf.reduce_all(a == tf.random.uniform((3,))))
