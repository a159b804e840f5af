from optix_core.testing import AgentConformance


class TestCEMConformance(AgentConformance):
    algo = "cem"
    backend = "numpy"
    # cem updates once population_size (16) episodes have ended: one
    # 200-step Pendulum episode (and several CartPole ones) per environment.
    n_envs = 16
    window_size = 200
