import pytest
import torch

import optix_core
from optix_torch.device import list_devices, resolve_device, seed_everything


def test_backend_is_registered_through_the_plugin():
    spec = next(s for s in optix_core.backends() if s.name == "torch")
    assert spec.distribution == "optix-torch"


def test_auto_is_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert list_devices()[0] == "cpu"
    assert len(list_devices()) == 1 + torch.cuda.device_count()


def test_a_missing_cuda_device_is_an_error_not_a_silent_cpu_fallback():
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match="not available"):
        resolve_device(missing)
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu-please")


def test_seeding_makes_torch_draws_repeat():
    seed_everything(5)
    a = torch.rand(3)
    seed_everything(5)
    assert torch.equal(a, torch.rand(3))
