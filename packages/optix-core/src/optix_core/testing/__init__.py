"""Test helpers for agent plugins, ours and third parties'.

    from optix_core.testing import AgentConformance

    class TestMyPPO(AgentConformance):
        algo = "my-ppo"
        backend = "torch"

pytest then runs the whole contract against that registered agent, including
that ``learn()`` changes the policy and that ``load_weights`` restores the
learned one. An agent that waits for experience before its first update
declares windows big enough to get past it (``window_size``, ``n_envs``,
``learn_windows``; see ``AgentConformance``). Requires pytest.

``optix_core.testing.toy_envs`` registers small ``optix-tests/`` environments
for every observation and action space (images, Dict, Discrete, MultiDiscrete,
MultiBinary; Box actions on image, Dict and Discrete observations), each
learnable in seconds.
"""

from optix_core.testing.conformance import AcceleratorConformance, AgentConformance

__all__ = ["AcceleratorConformance", "AgentConformance"]
