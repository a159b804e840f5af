"""Test helpers for agent plugins, ours and third parties'.

    from optix_core.testing import AgentConformance

    class TestMyPPO(AgentConformance):
        algo = "my-ppo"
        backend = "torch"

pytest then runs the whole contract against that registered agent. Requires pytest.
"""

from optix_core.testing.conformance import AgentConformance

__all__ = ["AgentConformance"]
