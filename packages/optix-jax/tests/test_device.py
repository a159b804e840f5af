import jax
import pytest

import optix_core
from optix_jax.device import list_devices, resolve_device, seed_everything


def test_backend_is_registered_through_the_plugin():
    spec = next(s for s in optix_core.backends() if s.name == "jax")
    assert spec.distribution == "optix-jax"


def test_auto_is_jax_default_device():
    assert resolve_device("auto") == jax.devices()[0]
    assert resolve_device("cpu").platform == "cpu"
    assert list_devices()[0].split(":")[0] == jax.default_backend()


def test_a_missing_device_is_an_error():
    with pytest.raises(ValueError, match="not available"):
        resolve_device(f"cpu:{len(jax.devices('cpu'))}")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu:0")


def test_seed_returns_a_repeatable_key():
    a = jax.random.uniform(seed_everything(5), (3,))
    b = jax.random.uniform(seed_everything(5), (3,))
    assert bool((a == b).all())
