"""What a replay agent's checkpoint promises, on any backend.

Subclass ``ReplayCheckpointConformance`` in a test module and set ``backend``
(and ``algo`` for a Q-learning agent other than ``dqn``). A checkpoint holds
the replay buffer (optix-core's ``Replay``: transitions, priorities, the
n-step writer's pending steps) and the counters beside the weights, so a
resumed agent makes the same next update on the same minibatches and acts
alike. The tests read ``agent.replay``, the counters, ``learn``'s statistics
and ``act``, on CartPole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from optix_core.buffers import PrioritizedReplayBuffer
from optix_core.registry import make_agent
from optix_core.testing.learning_runs import FAST, collect_windows
from optix_core.types import EpisodeData

ENV_ID = "CartPole-v1"


def buffer_arrays(agent: Any) -> dict[str, np.ndarray]:
    """Every stored field, the write position and (prioritized) the priorities."""
    buffer = agent.replay.buffer
    arrays = buffer.get(np.arange(len(buffer)))
    arrays["__position"] = np.asarray(buffer.position)
    if isinstance(buffer, PrioritizedReplayBuffer):
        arrays["__priorities"] = np.array(buffer.tree.leaves[: len(buffer)])
    return arrays


class ReplayCheckpointConformance:
    """Replay, counters and the next update across ``save_weights``/``load_weights``."""

    algo: ClassVar[str] = "dqn"
    backend: ClassVar[str]

    def agent(self, seed: int = 0, **hp: Any) -> Any:
        return make_agent(
            self.algo, ENV_ID, backend=self.backend, hyperparams=hp, device="cpu", seed=seed
        )

    def windows(self, count: int) -> list[EpisodeData]:
        """Windows a third agent acted for, so no generator of the two compared is consumed."""
        return collect_windows(self.agent(seed=7), ENV_ID, count, 2, 64, seed=0)

    @pytest.mark.parametrize("hp", [{}, {"per_alpha": 0.6}], ids=["uniform", "prioritized"])
    def test_resume_keeps_the_replay_buffer_and_continues_exactly(
        self, tmp_path: Path, hp: dict[str, Any]
    ) -> None:
        settings = {**FAST, **hp}
        agent = self.agent(**settings)
        data = self.windows(3)
        agent.learn(data[0])
        agent.learn(data[1])
        agent.save_weights(str(tmp_path / "ckpt"))
        assert (tmp_path / "ckpt" / "replay.npz").is_file()

        restored = self.agent(seed=123, **settings)
        restored.load_weights(str(tmp_path / "ckpt"))
        expected, got = buffer_arrays(agent), buffer_arrays(restored)
        assert expected.keys() == got.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        counters = ("num_timesteps", "vector_steps", "n_updates")
        assert [getattr(restored, c) for c in counters] == [getattr(agent, c) for c in counters]
        # the same next update: same minibatches, same weights, same optimizer moments
        assert restored.learn(data[2]) == agent.learn(data[2])
        obs = data[2].observations.reshape(-1, 4)
        np.testing.assert_array_equal(restored.act(obs, True), agent.act(obs, True))
        np.testing.assert_array_equal(restored.act(obs), agent.act(obs))  # acting's stream too

    def test_resume_keeps_a_prioritized_n_step_buffer(self, tmp_path: Path) -> None:
        """The stored n-step transitions and their priorities come back, and the
        n-step writer's pending steps with them: continued, they complete their
        spans as never saved; in new episodes, they end at the checkpoint."""
        settings = {**FAST, "per_alpha": 0.6, "n_step": 3}
        agent = self.agent(**settings)
        first, second, third = self.windows(3)
        agent.learn(first)
        agent.learn(second)
        agent.save_weights(str(tmp_path / "ckpt"))
        saved, cut = len(agent.replay), int(agent.replay.writer.pending.sum())
        assert cut > 0
        expected = buffer_arrays(agent)

        continued = self.agent(seed=5, **settings)
        continued.load_weights(str(tmp_path / "ckpt"))
        for key, values in buffer_arrays(continued).items():
            np.testing.assert_array_equal(values, expected[key], err_msg=key)
        assert continued.replay.buffer.max_priority == agent.replay.buffer.max_priority
        assert continued.continue_episodes()

        in_new_episodes = self.agent(seed=5, **settings)
        in_new_episodes.load_weights(str(tmp_path / "ckpt"))
        in_new_episodes.learn(third)
        got = buffer_arrays(in_new_episodes)
        for key in expected:
            if key not in ("__position", "__priorities"):  # learning moved them
                np.testing.assert_array_equal(got[key][:saved], expected[key], err_msg=key)
        # Then the steps the writer held, as transitions a truncation at the checkpoint
        # adds: shorter spans, bootstrapped.
        assert (got["discounts"][saved : saved + cut] > agent.hp["gamma"] ** 3).all()
        assert not got["terminated"][saved : saved + cut].any()

        assert continued.learn(third) == agent.learn(third)
        for key, values in buffer_arrays(agent).items():
            np.testing.assert_array_equal(buffer_arrays(continued)[key], values, err_msg=key)

    def test_a_checkpoint_saved_before_any_experience_loads_with_an_empty_buffer(
        self, tmp_path: Path
    ) -> None:
        self.agent().save_weights(str(tmp_path / "ckpt"))
        busy = self.agent(learning_starts=10_000)
        busy.learn(self.windows(1)[0])
        busy.load_weights(str(tmp_path / "ckpt"))
        assert len(busy.replay) == 0 and busy.num_timesteps == 0
