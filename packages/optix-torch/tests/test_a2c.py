import torch

from optix_core.testing import AgentConformance

torch.set_num_threads(1)


class TestA2CConformance(AgentConformance):
    algo = "a2c"
    backend = "torch"
