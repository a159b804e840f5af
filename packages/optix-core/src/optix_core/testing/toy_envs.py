"""Small environments for every observation and action space the policy layer serves.

Importing this module registers them with gymnasium, under ``optix-tests/``,
so that every backend's tests (and a third party's) check their agents on the
same spaces. Each is solvable in seconds of CPU by a policy that reads its
observation, and scores far above random only then:

- ``optix-tests/Catch-v0``: bsuite's Catch as 10×5 uint8 pixels (MinAtar-sized,
  the default network is ``SmallCNN``); ``CatchLarge-v0`` the same at 40×40
  (``NatureCNN``). A ball falls one row per step; the paddle moves left, stays
  or moves right; +1 for a catch, −1 for a miss. Random play scores about −0.6.
- ``optix-tests/MultiDiscreteMatch-v0``: name each of two targets (one of
  three, one-hot in the observation) with a MultiDiscrete action; reward the
  fraction named right, 8 steps. Random: 8/3.
- ``optix-tests/BitMatch-v0``: copy 4 observed bits with a MultiBinary action;
  reward the fraction copied, 8 steps. Random: 4.
- ``optix-tests/DictGoal-v0``: a Dict observation (a Discrete goal, a Box of
  noise); reward 1 for the action equal to the goal, 8 steps. Random: 8/3.
- ``optix-tests/IndexMatch-v0`` and ``optix-tests/BitCopy-v0``: the two
  matching tasks above with the targets observed as they are named, a
  MultiDiscrete and a MultiBinary observation.

``SPACE_ENVS`` lists them with FrozenLake-v1 (Discrete observations) and
Pendulum-v1 (Box actions). For continuous actions, ``POINTER_ENVS``
(``PointAt`` below) show a target as an image, a Dict or a Discrete index.
``masked_cartpole()`` is CartPole-v1 without its velocities, for recurrent
policies; ``optix-tests/FarCartPole-v0`` is CartPole-v1 seen from far off
(every observation ×50, +1000), which a network learns from only once its
inputs are standardized.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

EPISODE = 8


class Catch(gym.Env):
    def __init__(self, rows: int = 10, columns: int = 5, scale: int = 1) -> None:
        self.rows, self.columns, self.scale = rows, columns, scale
        self.observation_space = gym.spaces.Box(
            0, 255, (rows * scale, columns * scale, 1), np.uint8
        )
        self.action_space = gym.spaces.Discrete(3)

    def _observation(self) -> np.ndarray:
        grid = np.zeros((self.rows, self.columns), np.uint8)
        grid[self.ball_row, self.ball_column] = 255
        grid[-1, self.paddle] = 255
        return np.kron(grid, np.ones((self.scale, self.scale), np.uint8))[..., None]

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.ball_row, self.ball_column = 0, int(self.np_random.integers(self.columns))
        self.paddle = int(self.np_random.integers(self.columns))
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, self.columns - 1))
        self.ball_row += 1
        done = self.ball_row == self.rows - 1
        reward = (1.0 if self.paddle == self.ball_column else -1.0) if done else 0.0
        return self._observation(), reward, done, False, {}


class _Matching(gym.Env):
    """Reward the fraction of the observed target the action reproduces; new target each step."""

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t = 0
        self.target = self._draw()
        return self._observation(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = float(np.mean(np.asarray(action) == self.target))
        self.t += 1
        self.target = self._draw()
        return self._observation(), reward, False, self.t == EPISODE, {}


class MultiDiscreteMatch(_Matching):
    def __init__(self, targets: int = 2, choices: int = 3, indices: bool = False) -> None:
        self.targets, self.choices, self.indices = targets, choices, indices
        self.observation_space = (
            gym.spaces.MultiDiscrete([choices] * targets)
            if indices
            else gym.spaces.Box(0, 1, (targets * choices,), np.float32)
        )
        self.action_space = gym.spaces.MultiDiscrete([choices] * targets)

    def _draw(self) -> np.ndarray:
        return self.np_random.integers(self.choices, size=self.targets)

    def _observation(self) -> np.ndarray:
        if self.indices:
            return self.target.copy()
        return np.eye(self.choices, dtype=np.float32)[self.target].reshape(-1)


class BitMatch(_Matching):
    def __init__(self, bits: int = 4, binary: bool = False) -> None:
        self.bits, self.binary = bits, binary
        self.observation_space = (
            gym.spaces.MultiBinary(bits) if binary else gym.spaces.Box(0, 1, (bits,), np.float32)
        )
        self.action_space = gym.spaces.MultiBinary(bits)

    def _draw(self) -> np.ndarray:
        return self.np_random.integers(2, size=self.bits)

    def _observation(self) -> np.ndarray:
        return self.target.astype(np.int8 if self.binary else np.float32)


class DictGoal(_Matching):
    def __init__(self, goals: int = 3) -> None:
        self.goals = goals
        self.observation_space = gym.spaces.Dict(
            {
                "goal": gym.spaces.Discrete(goals),
                "noise": gym.spaces.Box(-1, 1, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Discrete(goals)

    def _draw(self) -> np.ndarray:
        return np.asarray(self.np_random.integers(self.goals))

    def _observation(self) -> dict[str, Any]:
        noise = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"goal": int(self.target), "noise": noise}


ENVS = {
    "optix-tests/Catch-v0": (Catch, {}),
    "optix-tests/CatchLarge-v0": (Catch, {"rows": 10, "columns": 10, "scale": 4}),
    "optix-tests/MultiDiscreteMatch-v0": (MultiDiscreteMatch, {}),
    "optix-tests/BitMatch-v0": (BitMatch, {}),
    "optix-tests/DictGoal-v0": (DictGoal, {}),
    "optix-tests/IndexMatch-v0": (MultiDiscreteMatch, {"indices": True}),
    "optix-tests/BitCopy-v0": (BitMatch, {"binary": True}),
}
for env_id, (cls, kwargs) in ENVS.items():
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=cls, kwargs=kwargs)

# Every observation space the policy layer reads (uint8 images small and
# large, Dict, Discrete, MultiDiscrete, MultiBinary, flat Box) and every
# action space it acts in (Discrete, MultiDiscrete, MultiBinary, Box): a
# conformance class with ``env_ids = SPACE_ENVS`` checks an on-policy agent's
# whole contract on each.
SPACE_ENVS = (
    "optix-tests/Catch-v0",
    "optix-tests/CatchLarge-v0",
    "optix-tests/MultiDiscreteMatch-v0",
    "optix-tests/BitMatch-v0",
    "optix-tests/DictGoal-v0",
    "optix-tests/IndexMatch-v0",
    "optix-tests/BitCopy-v0",
    "FrozenLake-v1",
    "Pendulum-v1",
)


# ---- continuous actions (SAC, TD3) on image, Dict and Discrete observations ----

POINTER_POSITIONS = 5


class PointAt(gym.Env):
    """Put the pointer on the target: the action (Box [−1, 1]) is where the pointer
    goes, the target one of 5 evenly spaced positions in [−1, 1], drawn anew every
    step; reward −|action − target|, 8 steps. Random play scores −6, the best
    pointer that ignores the observation (0) −4.8, one that reads it 0. The
    subclasses show the target as an image, in a Dict or as a Discrete index:

    - ``optix-tests/PointAtImage-v0``: uint8 pixels 5×10×1, the target a lit
      2-column band (the default network is ``SmallCNN``);
    - ``optix-tests/PointAtDict-v0``: ``{"target": Discrete(5), "shift": Box(−1, 1, (1,))}``,
      the target moved by a fifth of ``shift``;
    - ``optix-tests/PointAtDiscrete-v0``: the target's index, Discrete(5).
    """

    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - self.target)
        self.t += 1
        self._draw()
        return self._observation(), reward, False, self.t == EPISODE, {}

    def _draw(self) -> None:
        self.index = int(self.np_random.integers(POINTER_POSITIONS))
        self.target = -1.0 + 2.0 * self.index / (POINTER_POSITIONS - 1)


class PointAtImage(PointAt):
    observation_space = gym.spaces.Box(0, 255, (5, 2 * POINTER_POSITIONS, 1), np.uint8)

    def _observation(self) -> np.ndarray:
        image = np.zeros(self.observation_space.shape, np.uint8)
        image[:, 2 * self.index : 2 * self.index + 2] = 255
        return image


class PointAtDict(PointAt):
    observation_space = gym.spaces.Dict(
        {
            "target": gym.spaces.Discrete(POINTER_POSITIONS),
            "shift": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        }
    )

    def _draw(self) -> None:
        super()._draw()
        self.shift = self.np_random.uniform(-1.0, 1.0, 1).astype(np.float32)
        self.target = float(np.clip(self.target + 0.2 * self.shift[0], -1.0, 1.0))

    def _observation(self) -> dict[str, Any]:
        return {"target": self.index, "shift": self.shift}


class PointAtDiscrete(PointAt):
    observation_space = gym.spaces.Discrete(POINTER_POSITIONS)

    def _observation(self) -> int:
        return self.index


POINTER_ENVS = {
    "optix-tests/PointAtImage-v0": PointAtImage,
    "optix-tests/PointAtDict-v0": PointAtDict,
    "optix-tests/PointAtDiscrete-v0": PointAtDiscrete,
}
for env_id, cls in POINTER_ENVS.items():
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=cls)


# ---- partial observability (recurrent policies) ----------------------------------


class MaskVelocity(gym.ObservationWrapper):
    """CartPole with the two velocities hidden: cart position and pole angle only."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            space.low[[0, 2]], space.high[[0, 2]], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[[0, 2]]


def masked_cartpole() -> gym.Env:
    """CartPole-v1 without its velocities: a memoryless policy scores about 45, one
    that remembers its last observations can recover them and solve it."""
    return MaskVelocity(gym.make("CartPole-v1"))


# ---- observations on a scale no network reads (normalization) -------------------


class FarObservations(gym.ObservationWrapper):
    """Observations scaled and shifted far from the unit range a network's first
    layer reads: tanh units saturate, and the policy's gradients vanish."""

    def __init__(self, env: gym.Env, scale: float = 50.0, shift: float = 1000.0) -> None:
        super().__init__(env)
        self.scale, self.shift = scale, shift
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            self.observation(space.low), self.observation(space.high), dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return (observation * self.scale + self.shift).astype(np.float32)


def far_cartpole() -> gym.Env:
    return FarObservations(gym.make("CartPole-v1"))


if "optix-tests/FarCartPole-v0" not in gym.registry:
    gym.register("optix-tests/FarCartPole-v0", entry_point=far_cartpole)
