from typing import Any, ClassVar

import pytest
import torch

from optix_core import VectorBatchPipeline, make_agent
from optix_core.algorithms.config import a2c as config
from optix_core.evaluation import evaluate_policy
from optix_core.optimizers import SPSAOptimizer
from optix_core.registry import registered_agent
from optix_core.search_space import parse_search_space
from optix_core.testing import AgentConformance
from optix_core.testing.normalization import NormalizationConformance
from optix_core.testing.schedule import ScheduleConformance
from optix_core.types import HyperparamSet

torch.set_num_threads(1)


class TestA2CConformance(AgentConformance):
    algo = "a2c"
    backend = "torch"


class TestA2CWithRMSpropConformance(AgentConformance):
    algo = "a2c"
    backend = "torch"
    learn_hyperparams: ClassVar[dict[str, Any]] = {"use_rms_prop": True}


class TestA2CNormalization(NormalizationConformance):
    algo = "a2c"
    backend = "torch"
    hyperparams: ClassVar[dict[str, Any]] = {}


class TestA2CSchedule(ScheduleConformance):
    algo = "a2c"
    backend = "torch"


def test_use_rms_prop_steps_stable_baselines3s_a2c_optimizer() -> None:
    from stable_baselines3 import A2C

    sb3 = A2C("MlpPolicy", "CartPole-v1", device="cpu").policy.optimizer
    hp, _ = registered_agent("a2c", "torch").settings("CartPole-v1")  # the zoo's preset
    agent = make_agent("a2c", "CartPole-v1", device="cpu", seed=0, hyperparams=hp)
    assert type(agent.optimizer) is type(sb3)
    for key in ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"):
        assert agent.optimizer.defaults[key] == sb3.defaults[key], key


def test_the_optimizer_a_built_agent_has_cannot_be_switched(tmp_path) -> None:
    adam = make_agent("a2c", "CartPole-v1", device="cpu", seed=0)
    with pytest.raises(ValueError, match="built with use_rms_prop=False"):
        adam.set_hyperparams(HyperparamSet({"use_rms_prop": True}))
    adam.save_weights(str(tmp_path))
    rms = make_agent("a2c", "CartPole-v1", device="cpu", hyperparams={"use_rms_prop": True})
    with pytest.raises(ValueError, match="checkpoint in .* has use_rms_prop=False"):
        rms.load_weights(str(tmp_path))


def test_a2c_declares_what_the_loop_tunes_online_by_default() -> None:
    agent = make_agent("a2c", "CartPole-v1", device="cpu", seed=0)
    space = agent.search_space
    assert space == config.ONLINE_SEARCH_SPACE
    assert set(space) == {"learning_rate", "entropy_coef"}  # never the discount or λ
    parsed = parse_search_space(space)
    assert parsed["learning_rate"].log and parsed["entropy_coef"].log
    for name, p in parsed.items():
        assert config.BOUNDS[name].accepts(p.low) and config.BOUNDS[name].accepts(p.high), name
    assert parsed["learning_rate"].low <= config.DEFAULTS["learning_rate"] <= 3e-3
    assert agent.hyperparam_bounds == config.BOUNDS
    # About 4,000 env steps are scored together: a hundred 8 x 5-step windows (SB3
    # logs A2C every 100 updates).
    assert agent.loop_hints == {"steps_per_evaluation": 4000}
    assert SPSAOptimizer.from_search_space(space).space.names == tuple(space)
    for end in ("low", "high"):
        agent.set_hyperparams(HyperparamSet({n: getattr(p, end) for n, p in parsed.items()}))


@pytest.mark.slow
def test_learns_cartpole() -> None:
    """SB3's A2C settings (8 envs × 5 steps, lr 7e-4): a deterministic 450 on
    fresh episodes within 80k steps (A2C wanders after it gets there, so the
    test evaluates every 20k steps, as checkpoint selection would)."""
    agent = make_agent("a2c", "CartPole-v1", device="cpu", seed=0)
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=8, window_size=5, seed=0, agent=agent
    )
    scores = []
    for window in range(1, 2001):
        agent.learn(pipeline.collect())
        if window % 500 == 0:
            scores.append(evaluate_policy(agent, "CartPole-v1", episodes=10, seed=10_000).mean)
    pipeline.close()
    assert max(scores) >= 450, scores
