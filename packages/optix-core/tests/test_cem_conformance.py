from optix_core.testing import AgentConformance


class TestCEMConformance(AgentConformance):
    algo = "cem"
    backend = "numpy"
