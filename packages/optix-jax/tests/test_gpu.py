"""Every Flax agent's conformance suite again on a GPU, with its checkpoints crossing
between the GPU and the CPU (``AcceleratorConformance``). Skipped without a GPU; run
on a GPU machine with ``uv run pytest packages/optix-jax/tests/test_gpu.py``."""

from __future__ import annotations

import jax
import pytest

try:
    jax.devices("gpu")
except RuntimeError:
    pytest.skip("needs a GPU that JAX sees", allow_module_level=True)

# The CPU suites, imported only where they will run again on the GPU.
import test_a2c
import test_dqn
import test_ppo
import test_ppo_continuous
import test_sac
import test_td3

from optix_core.testing import AcceleratorConformance


class TestPPOOnGPU(AcceleratorConformance, test_ppo.TestPPOConformance):
    device = "gpu"


class TestA2COnGPU(AcceleratorConformance, test_a2c.TestA2CConformance):
    device = "gpu"


class TestGaussianPPOOnGPU(AcceleratorConformance, test_ppo_continuous.TestGaussianPPOConformance):
    device = "gpu"


class TestDQNOnGPU(AcceleratorConformance, test_dqn.TestDQNConformance):
    device = "gpu"


class TestSACOnGPU(AcceleratorConformance, test_sac.TestSACConformance):
    device = "gpu"


class TestTD3OnGPU(AcceleratorConformance, test_td3.TestTD3Conformance):
    device = "gpu"
