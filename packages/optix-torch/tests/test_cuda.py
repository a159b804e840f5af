"""Every torch agent's conformance suite again on a CUDA device, with its checkpoints
crossing between CUDA and the CPU (``AcceleratorConformance``). Skipped without CUDA;
run on a GPU machine with ``uv run pytest packages/optix-torch/tests/test_cuda.py``."""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

# The CPU suites, imported only where they will run again on CUDA.
import test_a2c
import test_dqn
import test_policies
import test_ppo_continuous
import test_rainbow
import test_recurrent_ppo
import test_sac
import test_td3

from optix_core.testing import AcceleratorConformance


class TestPPOOnCUDA(AcceleratorConformance, test_policies.TestPPOOnEverySpace):
    device = "cuda"


class TestA2COnCUDA(AcceleratorConformance, test_a2c.TestA2CConformance):
    device = "cuda"


class TestGaussianPPOOnCUDA(AcceleratorConformance, test_ppo_continuous.TestGaussianPPOConformance):
    device = "cuda"


class TestRecurrentPPOOnCUDA(
    AcceleratorConformance, test_recurrent_ppo.TestRecurrentPPOConformance
):
    device = "cuda"


class TestDQNOnCUDA(AcceleratorConformance, test_dqn.TestDQNConformance):
    device = "cuda"
    # With cuDNN's TF32 convolutions, one window leaves NatureCNN's Q-values on
    # CatchLarge with one argmax everywhere, as a fresh agent's: two tell them apart.
    learn_windows = 2


class TestRainbowOnCUDA(AcceleratorConformance, test_rainbow.TestRainbowConformance):
    device = "cuda"


class TestSACOnCUDA(AcceleratorConformance, test_sac.TestSACConformance):
    device = "cuda"


class TestTD3OnCUDA(AcceleratorConformance, test_td3.TestTD3Conformance):
    device = "cuda"
