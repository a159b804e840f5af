"""Every value an online optimizer proposes reaches the torch optimizer's param groups."""

from __future__ import annotations

import pytest
import torch

from optix_core import (
    LoopCallback,
    PBTOptimizer,
    RLOptimizer,
    SPSAOptimizer,
    VectorBatchPipeline,
    make_agent,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("optimizer_cls", [SPSAOptimizer, PBTOptimizer])
def test_the_learning_rate_actually_changes_in_the_backend(optimizer_cls):
    agent = make_agent("a2c", "CartPole-v1", seed=0, device="cpu")
    seen: list[tuple[float, float]] = []

    class WatchLearningRate(LoopCallback):
        def on_hyperparam_update(self, old, new):
            in_torch = {group["lr"] for group in agent.optimizer.param_groups}
            assert len(in_torch) == 1
            seen.append((new.params["learning_rate"], in_torch.pop()))

    optimizer = optimizer_cls(param_bounds={"learning_rate": (1e-4, 1e-2)}, seed=0)
    pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=4, window_size=16, seed=0)
    RLOptimizer(
        agent, pipeline, optimizer=optimizer, max_episodes=40, callbacks=[WatchLearningRate()]
    ).run()
    assert len(seen) >= 3
    assert len({proposed for proposed, _ in seen}) >= 2
    for proposed, in_torch in seen:
        assert in_torch == pytest.approx(proposed)
