"""``ReplayAgentMixin``: the framework-free half of every off-policy agent.

A backend's replay agent is this mixin ahead of its agent base (``class
ReplayAgent(ReplayAgentMixin, TorchAgentBase)``). The mixin owns the replay
memory, the counters SB3's schedule reads and their checkpoint, and draws
each window's minibatches on the host (``replay_draws``); the backend turns
a ``HostMinibatches`` into its tensors and takes one gradient step per
minibatch. The base supplies what every optix agent has: ``hp`` (the
hyperparameters), ``rng`` (the agent's numpy generator, saved with its
checkpoints), ``algorithm``, and the hooks this mixin extends
(``apply_hyperparams``, ``extra_state``, ``load_extra_state``,
``save_extra``, ``load_extra``, ``teardown``, ``loop_hints``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from optix_core.off_policy.memory import REPLAY_FILE, Replay
from optix_core.off_policy.q_learning import exploration_end
from optix_core.off_policy.schedule import PACK_BYTES, HostMinibatches, due_steps, per_beta
from optix_core.types import EpisodeData

# The counters a checkpoint keeps, under these names in its state (``extra``).
COUNTERS = {
    "num_timesteps": "num_timesteps",
    "vector_steps": "vector_steps",
    "n_updates": "n_updates",
    "acting_steps": "_acting_steps",
}


class ReplayAgentMixin:
    """The replay memory, the update schedule and their counters.

    A subclass calls this constructor (which calls its base's with the same
    arguments), sets up its networks, then calls ``apply_hyperparams()``.
    Its ``act_info`` counts the env steps it acts for (``_acting_steps``);
    its ``learn`` takes one gradient step per minibatch of ``replay_draws``
    and counts them in ``n_updates``. The hyperparameters read:
    ``replay_capacity``, ``gamma``, ``batch_size``, ``train_freq``,
    ``gradient_steps``, ``learning_starts``, and where the algorithm has them
    ``n_step``, ``per_alpha``, ``per_beta`` and ``per_beta_steps``.
    """

    # What the agent base supplies (annotations only: the base's attributes stay in force).
    algorithm: ClassVar[str]
    rng: np.random.Generator
    hp: dict[str, Any]

    def __init__(self, hyperparams: Any, device: Any, seed: int | None) -> None:
        super().__init__(hyperparams, device, seed)  # type: ignore[call-arg]
        self.replay = Replay(self.rng, self.algorithm)
        self.num_timesteps = 0  # env steps learned from (SB3's num_timesteps)
        self.vector_steps = 0  # vector-env steps learned from: train_freq counts these
        self.n_updates = 0  # gradient steps taken
        self._acting_steps = 0  # env steps act_info acted for since the last learn()

    @property
    def is_on_policy(self) -> bool:
        return False

    def apply_hyperparams(self) -> None:
        super().apply_hyperparams()  # type: ignore[misc]
        hp = self.hp
        self.replay.configure(
            hp["replay_capacity"], hp.get("per_alpha", 0.0), hp["gamma"], hp.get("n_step", 1)
        )

    @property
    def steps_collected(self) -> int:
        """Env steps collected so far: those learned from and those acted for since."""
        return self.num_timesteps + self._acting_steps

    @property
    def warming_up(self) -> bool:
        """Whether training actions are still uniformly random, as SB3's are until
        ``learning_starts`` env steps were collected."""
        return self.steps_collected < self.hp["learning_starts"]

    @property
    def exploring(self) -> bool:
        """Whether ε is still falling (``q_learning.exploration_end``), or, for
        an agent without an ε schedule, training actions are still random."""
        if "exploration_steps" in self.hp:
            return self.steps_collected < exploration_end(self.hp)
        return self.warming_up

    @property
    def loop_hints(self) -> dict[str, Any]:
        """An evaluation every 256 env steps, what the default windows give, also
        where smaller windows keep the acting policy fresh (acting holds a
        window's first policy: MountainCar-v0's DQN preset acts in windows of
        its train_freq, 16 steps)."""
        return {"steps_per_evaluation": 256, **super().loop_hints}  # type: ignore[misc]

    def per_beta(self, env_steps: int) -> float:
        """β of prioritized replay once ``env_steps`` env steps were collected (``schedule.per_beta``)."""
        return per_beta(env_steps, self.hp["per_beta"], self.hp["per_beta_steps"])

    def replay_draws(
        self, data: EpisodeData, pack_bytes: int = PACK_BYTES
    ) -> Iterator[HostMinibatches]:
        """Store the window and yield the host minibatches of the updates it earns, in order.

        Stable-Baselines3's schedule (``schedule.due_steps``): after every
        ``train_freq``-th vector step, once more than ``learning_starts``
        transitions were seen, ``gradient_steps`` updates, on minibatches
        drawn with replacement (prioritized ones once ``batch_size``
        transitions are stored). The window goes into the buffer slice by
        slice, as far as the step an update is due after, and that update's
        minibatch is drawn then: it holds only transitions stored up to that
        step (never one the buffer wrapped over later in the window), as if
        learning were interleaved with acting.

        Uniform replay gathers each due step's minibatches as the step comes
        and yields them together once they reach ``pack_bytes`` (and at the
        window's end), so the backend moves a window in one copy per dtype.
        Prioritized replay yields one minibatch at a time, drawn with the
        priorities the caller's previous update left (the caller updates
        them before asking for the next), β annealed per env step
        (``per_beta``). The counters move before the first yield.
        """
        hp = self.hp
        steps, batch_size = hp["gradient_steps"], hp["batch_size"]
        feed = self.replay.feed(data)
        due = due_steps(
            feed.length,
            feed.n_envs,
            self.vector_steps,
            self.num_timesteps,
            hp["train_freq"],
            hp["learning_starts"],
            steps,
        )
        self.count_window(feed.length, data.n_steps)
        block = HostMinibatches([], batch_size)
        for step, seen in zip(due.steps.tolist(), due.env_steps.tolist(), strict=True):
            feed.store_until(step)
            # Uniform draws need one transition stored (n-step ones may still be
            # pending); prioritized ones draw batch_size distinct strata.
            if len(self.replay) < (batch_size if self.replay.prioritized else 1):
                continue
            if self.replay.prioritized:
                beta = self.per_beta(seen)
                for _ in range(steps):
                    batch, indices = self.replay.sample_prioritized(batch_size, beta)
                    yield HostMinibatches([batch], batch_size, indices)
                continue
            block.parts.append(self.replay.gather(steps * batch_size))
            if block.nbytes >= pack_bytes:
                yield block
                block = HostMinibatches([], batch_size)
        feed.store_until(feed.length)
        if block.parts:
            yield block

    def count_window(self, vector_steps: int, env_steps: int) -> None:
        """Count a window of ``vector_steps`` vector steps (``env_steps`` env steps) as learned
        from; what act_info counted for it is now in ``num_timesteps``."""
        self.vector_steps += vector_steps
        self.num_timesteps += env_steps
        self._acting_steps = 0

    def replay_stats(self) -> dict[str, float]:
        """What every learn() reports besides its losses."""
        stats = {
            "replay_size": float(len(self.replay)),
            "n_updates": float(self.n_updates),
            "num_timesteps": float(self.num_timesteps),
        }
        if self.replay.prioritized:
            stats["per_beta"] = self.per_beta(self.num_timesteps)
        return stats

    # ---- checkpoints: the counters in the state, the memory beside the weights ----

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()  # type: ignore[misc]
        return {**state, **{key: getattr(self, name) for key, name in COUNTERS.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the counters; a checkpoint without one starts it at 0."""
        super().load_extra_state(state)  # type: ignore[misc]
        for key, name in COUNTERS.items():
            setattr(self, name, int(state.get(key, 0)))

    def continue_episodes(self) -> bool:
        """Exploration's state (OU noise, gSDE's matrices), the counters and the
        steps an n-step writer held came back with the checkpoint: the agent goes
        on in the interrupted episodes."""
        self.replay.continue_episodes()
        return True

    def save_extra(self, path: Path) -> None:
        super().save_extra(path)  # type: ignore[misc]
        self.replay.save(path / REPLAY_FILE)

    def load_extra(self, path: Path) -> None:
        super().load_extra(path)  # type: ignore[misc]
        self.replay.load(path / REPLAY_FILE)

    def teardown(self) -> None:
        super().teardown()  # type: ignore[misc]
        self.replay.clear()
