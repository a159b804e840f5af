"""FlaxDQNAgent: deep Q-learning with experience replay and a target network, in JAX.

Mnih et al. (2015), "Human-level control through deep reinforcement
learning", with the prioritized replay of Schaul et al. (2016), the n-step
targets of Sutton & Barto (2018, eq. 7.1) and, optionally, the double-Q
target of van Hasselt et al. (2016): the same algorithm as optix-torch's
``TorchDQNAgent`` and optix-tf's ``TFDQNAgent``, over the same shared pieces
(optix-core's ``off_policy``: the replay memory, Stable-Baselines3's update
schedule, ε-greedy exploration; ``algorithms.config.dqn``: the
hyperparameters). Each learn() call stores the window's transitions and
takes the gradient steps they earn, each on

    y_i = R_i + γ_i · (1 − terminated_i) · max_a' Q_target(s'_i, a')
          (double_q: Q_target(s'_i, argmax_a' Q(s'_i, a')))
    L   = Σ_i w_i · Huber(Q(s_i, a_i) − y_i) / B        (squared error with huber_loss False)

where an n-step transition carries R = Σ_{k<m} γ^k r_{t+k} and γ_i = γ^m,
and w_i = 1 for uniform replay or the importance weight of prioritized
replay (β annealed from ``per_beta`` to 1 over ``per_beta_steps`` env steps),
whose priorities become |Q(s_i, a_i) − y_i| (+ the memory's ε). The gradient
is clipped to a global norm of ``max_grad_norm`` and Adam steps. After every
``target_update_freq``-th gradient step the target network becomes a copy of
the online one (a hard update, as SB3's target_update_interval). Truncated
episodes bootstrap from their final observation; only ``terminated`` stops
the bootstrap.

Exploration is ε-greedy with ε a function of the env steps collected so far
(``off_policy.epsilon_schedule``, evaluated at every training action;
uniformly random until ``learning_starts``), drawn from the agent's numpy
generators (``off_policy.epsilon_greedy``), so the exploration stream is the
same as the other backends' for the same seed.

Compiled: a block of minibatches ``[count, B, ...]`` (with uniform replay,
usually every update a window earns) is one jitted call, a ``jax.lax.scan``
over its minibatches of a pure function of ``nnx.state((q_network,
target_network, optimizer))``; the target copies that fall inside the block
happen inside the scan after the right step (``(n_updates + j + 1) %
target_update_freq == 0``, ``off_policy.sync_segments``' timing), and the
losses come back once per window (prioritized replay: the TD errors once per
minibatch, for its priorities). A new block count compiles once more (the
schedule's count per window is fixed unless ``gradient_steps`` or the window
changes). Acting is one jitted forward pass argmax_a Q(s, a), compiled once
per batch size. Agents of one architecture (another seed, another learning
rate) share their compiled functions (``compiled``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optix_core.algorithms.config import dqn as config
from optix_core.off_policy import (
    check_n_actions,
    epsilon_greedy,
    epsilon_schedule,
    require_discrete,
)
from optix_core.types import EpisodeData, HyperparamSet
from optix_jax.algorithms.on_policy import clip_by_global_norm
from optix_jax.algorithms.replay import JaxReplayAgent
from optix_jax.base import compiled, default_adam, new_optimizer
from optix_jax.device import resolve_device
from optix_jax.policies import observations as O
from optix_jax.policies.extractors import (
    ImageCNN,
    default_extractor,
    features_dim,
    torch_linear,
)

# The minibatch fields a block of the jitted update reads, in its argument order.
FIELDS = ("observations", "actions", "rewards", "next_observations", "bootstrap", "weights")


class FlaxDQNAgent(JaxReplayAgent):
    """DQN on a user's Flax NNX Q-network (observations → one Q-value per action).

    Args:
        q_network: any ``nnx.Module`` mapping a batch of observations (as
            ``policies.observations.to_jax`` makes them: uint8 images stay
            uint8, Dict observations are dicts of arrays) to ``[B, n_actions]``.
            It is trained in place; the target network is an ``nnx.clone`` of it.
        n_actions: the size of the Discrete action space.
        optimizer: an optax transformation with its learning rate injected
            (``optax.inject_hyperparams``); default Adam (ε = 1e-8, torch's, as
            the other backends). Its learning rate follows ``hyperparams``.
        hyperparams: keys of ``optix_core.algorithms.config.dqn.DEFAULTS``.
        device: "auto", "cpu", "gpu", "gpu:N" ("cuda" and "cuda:N" alike).
        seed: seeds the agent's own generators (exploration, minibatches).
        observation_space: when given, the network is probed with observations
            from it (without it the network is trusted).
        double_q: the double-Q target (van Hasselt et al. 2016): the online
            network picks a' = argmax Q(s', ·), the target network values it.
            Default False: Mnih et al.'s max, as Stable-Baselines3 and the
            other backends' DQN.
    """

    algorithm = "dqn"
    DEFAULTS = config.DEFAULTS
    BOUNDS = config.BOUNDS
    adam_eps = 1e-8  # ε of the default Adam (torch's default, as optix-torch and optix-tf)

    def __init__(
        self,
        q_network: nnx.Module,
        n_actions: int,
        optimizer: Any = None,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
        observation_space: gym.Space | None = None,
        *,
        double_q: bool = False,
    ) -> None:
        self.n_actions = check_n_actions(n_actions, self.algorithm)
        super().__init__(hyperparams, device, seed)
        with self.on_device():
            check_q_network(q_network, observation_space, self.n_actions, self.algorithm)
            self.q_network = q_network
            self.target_network = nnx.clone(q_network)
            tx = optimizer or default_adam(self.adam_eps)
            self.optimizer = new_optimizer(self.q_network, tx)
        self.double_q = bool(double_q)
        graphdef, _ = nnx.split(self._trained())
        self._train = compiled(train_block, graphdef, self.double_q)
        q_graphdef, self._q_state = nnx.split(self.q_network)
        self._greedy = compiled(greedy, q_graphdef)
        self.apply_hyperparams()

    def modules(self) -> dict[str, nnx.Module]:
        return {"q_network": self.q_network, "target_network": self.target_network}

    def optimizers(self) -> dict[str, nnx.Optimizer]:
        return {"main": self.optimizer}

    def _trained(self) -> tuple[nnx.Module, nnx.Module, nnx.Optimizer]:
        """What a gradient step changes, as one NNX graph."""
        return self.q_network, self.target_network, self.optimizer

    def weights_changed(self) -> None:
        """Retake the state the jitted acting reads."""
        self._q_state = nnx.state(self.q_network)

    @property
    def epsilon(self) -> float:
        """The exploration rate of the next training action."""
        return self.epsilon_at(self.steps_collected)

    def epsilon_at(self, env_steps: int) -> float:
        """ε after ``env_steps`` env steps: 1 until ``learning_starts``, then the schedule
        (optix-core's ``off_policy.epsilon_schedule``)."""
        return epsilon_schedule(env_steps, self.hp)

    # ---- acting -------------------------------------------------------------

    def greedy_actions(self, observation: Any) -> np.ndarray:
        """argmax_a Q(s, a) for a batch of observations, on the host (one jitted call)."""
        with self.on_device():
            actions = self._greedy(self._q_state, O.to_jax(observation))
        return np.asarray(actions).astype(np.int64)

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        """Greedy actions, or ε-greedy at the current ε from ``act_rng`` (never moves ε)."""
        if deterministic:
            return self.greedy_actions(observation)
        n = O.batch_size(observation)
        return epsilon_greedy(
            self.act_rng, self.epsilon, n, self.n_actions, lambda: self.greedy_actions(observation)
        )

    def act_info(self, observation: Any, episode_start: np.ndarray) -> tuple[np.ndarray, dict]:
        n = O.batch_size(observation)
        # One vector step: every environment at the ε of the steps collected before it (SB3).
        actions = epsilon_greedy(
            self.rng, self.epsilon, n, self.n_actions, lambda: self.greedy_actions(observation)
        )
        self._acting_steps += n
        return actions, {}

    # ---- learning -----------------------------------------------------------

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        hp = self.hp
        sync_every = int(hp["target_update_freq"])
        settings = jnp.asarray([hp["max_grad_norm"], float(bool(hp["huber_loss"]))], jnp.float32)
        state = None
        loss_sum, target_sum, steps = 0.0, 0.0, 0
        with self.on_device():
            for batch in self.replay_minibatches(episode_data):
                if state is None:
                    state = nnx.state(self._trained())
                count = int(batch["rewards"].shape[0])
                if "weights" not in batch:
                    batch["weights"] = jnp.ones_like(batch["rewards"])
                state, out = self._train(
                    state,
                    *(batch[key] for key in FIELDS),
                    jnp.int32(self.n_updates % sync_every),
                    jnp.int32(sync_every),
                    settings,
                )
                self.n_updates += count
                steps += count
                loss_sum += out["loss"]  # arrays: read back once, after the window's updates
                target_sum += out["target"]
                if "indices" in batch:  # prioritized: one minibatch per block, |δ| its new priority
                    self.replay.update_priorities(batch["indices"], np.abs(np.asarray(out["td"])))
            if state is not None:
                nnx.update(self._trained(), state)
        if steps:
            self.weights_changed()
        stats = {"epsilon": self.epsilon, **self.replay_stats()}
        if steps:
            stats["loss"] = float(loss_sum) / steps
            stats["target_q"] = float(target_sum) / steps
        return stats

    def teardown(self) -> None:
        self._q_state = None
        super().teardown()


# ---- the jitted functions: pure functions of the networks' and optimizer's state ----


def greedy(graphdef: nnx.GraphDef, state: nnx.State, obs: Any) -> jax.Array:
    """argmax_a Q(s, a) for a batch of observations."""
    return jnp.argmax(nnx.merge(graphdef, state)(obs), axis=-1)


def train_block(
    graphdef: nnx.GraphDef,
    double_q: bool,
    state: nnx.State,
    obs: Any,
    actions: jax.Array,
    rewards: jax.Array,
    next_obs: Any,
    bootstrap: jax.Array,
    weights: jax.Array,
    phase: jax.Array,
    sync_every: jax.Array,
    settings: jax.Array,
) -> tuple[nnx.State, dict[str, jax.Array]]:
    """Every gradient step of a block of minibatches ``[count, B, ...]``, one
    ``jax.lax.scan`` over them; ``state`` is ``nnx.state((q_network, target_network,
    optimizer))``. ``phase`` is the gradient steps taken before the block modulo
    ``sync_every``: the target copy follows every step j with (phase + j + 1) a
    multiple of ``sync_every``. Returns the new state, the sum of the losses, the sum
    of the minibatches' mean targets, and the last minibatch's TD errors."""
    max_norm, huber = settings[0], settings[1] > 0

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, tuple]:
        state, j = carry
        step_obs, step_actions, step_rewards, step_next, step_bootstrap, step_weights = inputs
        q_network, target_network, optimizer = nnx.merge(graphdef, state)
        online_next = q_network(step_next) if double_q else None
        next_q = next_values(target_network(step_next), online_next)
        y = jax.lax.stop_gradient(step_rewards + step_bootstrap * next_q)

        def loss_fn(q_network: nnx.Module) -> tuple[jax.Array, jax.Array]:
            return td_loss(q_network(step_obs), step_actions, y, step_weights, huber)

        (loss, td), grads = nnx.value_and_grad(loss_fn, has_aux=True)(q_network)
        optimizer.update(q_network, clip_by_global_norm(grads, max_norm))
        sync = (phase + j + 1) % sync_every == 0
        online, target = nnx.state(q_network), nnx.state(target_network)
        nnx.update(target_network, jax.lax.cond(sync, lambda: online, lambda: target))
        _, state = nnx.split((q_network, target_network, optimizer))
        return (state, j + 1), (loss, jnp.mean(y), td)

    inputs = (obs, actions, rewards, next_obs, bootstrap, weights)
    (state, _), (losses, targets, tds) = jax.lax.scan(step, (state, jnp.int32(0)), inputs)
    return state, {"loss": jnp.sum(losses), "target": jnp.sum(targets), "td": tds[-1]}


def next_values(target_q: jax.Array, online_q: jax.Array | None = None) -> jax.Array:
    """The value of s' the target bootstraps from: max_a' Q_target(s', a') (Mnih et al.
    2015), or with the online network's Q(s', ·) given, Q_target(s', argmax_a' Q(s', a'))
    (double Q, van Hasselt et al. 2016)."""
    if online_q is None:
        return jnp.max(target_q, axis=-1)
    chosen = jnp.argmax(online_q, axis=-1)
    return jnp.take_along_axis(target_q, chosen[:, None], axis=-1)[:, 0]


def td_loss(
    q_values: jax.Array, actions: jax.Array, y: jax.Array, weights: jax.Array, huber: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """L = Σ_i w_i ℓ(Q(s_i, a_i) − y_i) / B, ℓ Huber (δ = 1, torch's smooth_l1) or the
    squared error; also the TD errors Q(s_i, a_i) − y_i (no gradient)."""
    index = actions.reshape(-1, 1).astype(jnp.int32)
    q = jnp.take_along_axis(q_values, index, axis=-1)[:, 0]
    error = q - y
    absolute = jnp.abs(error)
    huber_terms = jnp.where(absolute < 1.0, 0.5 * jnp.square(error), absolute - 0.5)
    terms = jnp.where(huber, huber_terms, jnp.square(error))
    return jnp.mean(weights * terms), jax.lax.stop_gradient(error)


# ---- networks ---------------------------------------------------------------------


def check_q_network(
    network: nnx.Module, observation_space: gym.Space | None, n_actions: int, owner: str
) -> None:
    """Run two observations from ``observation_space`` through ``network`` and insist on
    outputs shaped ``[2, n_actions]`` (without a space the network is trusted)."""
    if observation_space is None:
        return
    try:
        out = O.probe(network, O.probe_batch(observation_space))
    except Exception as exc:
        raise ValueError(
            f"{owner}: the q_network fails on observations from {observation_space} ({exc})"
        ) from None
    shape = tuple(int(d) for d in getattr(out, "shape", ()))
    if shape[1:] != (n_actions,):
        raise ValueError(
            f"{owner}: the q_network outputs shape {shape[1:]} per observation, "
            f"expected ({n_actions},) (n_actions={n_actions})"
        )


class QNetwork(nnx.Module):
    """Observations → features extractor → ReLU MLP → one Q-value per action.

    The default DQN network. ``extractor`` defaults to the policy layer's
    ``default_extractor(observation_space)``: the flattened vector for flat
    Box spaces, NatureCNN (≥ 36 pixels a side) or SmallCNN for uint8 images
    (initialised orthogonally), one-hot for Discrete, combined for Dict; any
    ``nnx.Module`` mapping observations to ``[B, features]`` serves.
    ``hidden`` defaults to none after a CNN (Mnih et al. 2015: its 512-unit
    layer feeds the Q-values; SB3's CnnPolicy alike) and (256, 256) otherwise
    (rl-zoo's CartPole network, as optix-torch's and optix-tf's defaults); the
    MLP's layers are initialised as torch's ``nn.Linear``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        n_actions: int,
        extractor: nnx.Module | None = None,
        hidden: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        rngs = nnx.Rngs(0 if seed is None else seed)
        self.extractor = (
            extractor if extractor is not None else default_extractor(observation_space, rngs)
        )
        width = features_dim(self.extractor, observation_space)
        if hidden is None:
            hidden = () if isinstance(self.extractor, ImageCNN) else (256, 256)
        dims = [width, *hidden]
        self.hidden = nnx.List([torch_linear(a, b, rngs) for a, b in pairwise(dims)])
        self.out = torch_linear(dims[-1], int(n_actions), rngs)

    def __call__(self, obs: Any) -> jax.Array:
        x = self.extractor(obs)
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.out(x)


def make_dqn(
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    hyperparams: HyperparamSet | dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
) -> FlaxDQNAgent:
    """The AgentSpec factory: ``QNetwork`` for the observation space."""
    n_actions = require_discrete(action_space, "dqn")
    with jax.default_device(resolve_device(device)):
        q_network = QNetwork(observation_space, n_actions, seed=seed)
    return FlaxDQNAgent(
        q_network,
        n_actions,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        observation_space=observation_space,
    )
