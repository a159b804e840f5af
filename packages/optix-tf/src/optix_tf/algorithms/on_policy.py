"""What the on-policy algorithms (PPO, A2C) share in TensorFlow.

The framework-free part (the values a window bootstraps from, GAE,
explained variance, PPO's window table and minibatch order) is optix-core's
``optix_core.on_policy``, which every backend reads. This adds the
TensorFlow half both agents act and learn through: the networks' forward
pass (an actor and a critic, an actor-critic returning both, or, for
REINFORCE, an actor alone), acting (through numpy copies of the default network's weights on the
CPU, else a ``tf.function`` that does not retrace per call) with sampling
in numpy from the agent's generators (training's through ``explore``: gSDE's
held matrices with ``use_sde``), the rollout's values through those networks,
and the default agent of a factory.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core import on_policy
from optix_core.on_policy import gsde_log_std_init
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf.policies import observations as O
from optix_tf.policies.distributions import distribution_for
from optix_tf.policies.networks import ActorCritic, NumpyActorCritic, probe_input
from optix_tf.policies.sde import StateDependentActorCritic


class OnPolicyNetworks:
    """Mixed into a ``TFAgentBase`` that sets ``actor``, ``critic`` (or None),
    ``shared`` (the actor returns ``(parameters, values)`` itself),
    ``distribution``, and ``_act = tf.function(self.forward, reduce_retracing=True)``,
    ahead of which ``OnPolicyWindow`` supplies ``explore``."""

    actor: keras.Model
    critic: keras.Model | None
    shared: bool

    def observed(self, observation: Any) -> Any:
        """Observations as the networks take them (PPO's and A2C's may standardize them)."""
        return observation

    # ---- networks -------------------------------------------------------

    def modules(self) -> dict[str, keras.Model]:
        if self.critic is not None:
            return {"actor": self.actor, "critic": self.critic}
        return {"actor_critic" if self.shared else "actor": self.actor}

    @property
    def variables(self) -> list[tf.Variable]:
        """Every trainable variable, each once (a shared extractor is trained once)."""
        seen: dict[int, tf.Variable] = {}
        for model in self.modules().values():
            for v in model.trainable_variables:
                seen.setdefault(id(v), v)
        return list(seen.values())

    def forward(self, obs: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """``(distribution parameters [B, param_dim], V(s) [B])``; V is 0 for an
        actor without a critic (REINFORCE)."""
        if self.critic is not None:
            return self.actor(obs), self.critic(obs)[:, 0]
        if self.shared:
            params, value = self.actor(obs)
            return params, tf.reshape(value, [-1])
        params = self.actor(obs)
        return params, tf.zeros(tf.shape(params)[:1], params.dtype)

    # ---- acting -------------------------------------------------------------

    def _numpy_forward(self, observation: Any) -> tuple[np.ndarray, np.ndarray]:
        snapshot = self._numpy_snapshot()
        if snapshot is not None:
            return snapshot(observation)
        with tf.device(self.device):
            params, values = self._act(O.to_tensor(observation))
        return params.numpy(), values.numpy()

    def _numpy_snapshot(self) -> NumpyActorCritic | None:
        """The default network's weights in numpy, for acting on the CPU (several
        times faster than a call into TensorFlow on a handful of rows); None
        where it does not apply. Taken once per change of the weights."""
        if getattr(self, "_snapshot", None) is None:
            on_cpu = "CPU" in str(self.device).upper()
            snapshot = NumpyActorCritic.of(self.actor) if self.shared and on_cpu else None
            self._snapshot = snapshot or False
        return self._snapshot or None

    def weights_changed(self) -> None:
        """Forget the acting snapshot: the weights moved (``learn``, ``load_weights``)."""
        self._snapshot = None

    def load_weights(self, path: str) -> None:
        super().load_weights(path)
        self.weights_changed()

    def _numpy_log_prob(self, params: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.distribution.log_prob(tf.constant(params), tf.constant(actions)).numpy()

    def act(self, observation: Any, deterministic: bool = False) -> np.ndarray:
        params = self._numpy_forward(self.observed(observation))[0]
        if deterministic:
            return self.distribution.mode(params)
        return self.distribution.sample(params, self.act_rng)[0]

    def act_info(
        self, observation: Any, episode_start: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        params, values = self._numpy_forward(self.observed(observation))
        actions, info = self.explore(params, self.rng)
        return actions, {**info, "values": values}

    def sde_log_std(self) -> np.ndarray:
        """gSDE's log σ, held by its network (``StateDependentActorCritic``)."""
        return self.actor.sde_log_std()

    # ---- learning -------------------------------------------------------

    def rollout_values(
        self, data: EpisodeData, obs: Any, learn_actions: np.ndarray, recorded: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``optix_core.on_policy.rollout_values`` through these networks."""
        return on_policy.rollout_values(
            data,
            obs,
            learn_actions,
            self.distribution,
            self._numpy_forward,
            self._numpy_log_prob,
            recorded,
        )


def normalized_advantages(advantages: tf.Tensor, normalize: tf.Tensor) -> tf.Tensor:
    """(Â − mean Â) / (std Â + 1e-8) where ``normalize`` > 0 and there is more than one
    row, else Â (std unbiased, as torch's)."""
    mean, var = tf.nn.moments(advantages, axes=[0])
    count = tf.cast(tf.shape(advantages)[0], tf.float32)
    std = tf.sqrt(var * count / (count - 1.0))
    wanted = tf.logical_and(normalize > 0, count > 1)
    return tf.where(wanted, (advantages - mean) / (std + 1e-8), advantages)


def returns_values(network: keras.Model, observation_space: gym.Space | None) -> bool:
    """Whether ``network`` returns ``(policy_output, value)`` rather than the policy
    output alone (probed on two observations; False when it cannot be probed)."""
    if isinstance(network, ActorCritic):
        return True
    probe = probe_input(network, observation_space)
    return probe is not None and isinstance(network(probe), tuple | list)


def default_agent(
    agent_cls: type,
    observation_space: gym.Space,
    action_space: gym.Space,
    hyperparams: HyperparamSet | None,
    device: str,
    seed: int | None,
    owner: str,
    **options: Any,
) -> Any:
    """An AgentSpec factory's agent: ``ActorCritic`` chosen from the spaces
    (Stable-Baselines3's networks: [64, 64] tanh heads on flat features,
    linear heads on NatureCNN's), with the action space's distribution; with
    ``use_sde``, ``StateDependentActorCritic``. ``options`` are the network's
    (``hidden``, ``ortho_init``)."""
    log_std_init = gsde_log_std_init(agent_cls, hyperparams, action_space, owner)
    if log_std_init is not None:
        network = StateDependentActorCritic(
            observation_space, action_space, log_std_init=log_std_init, seed=seed, **options
        )
        distribution = network.distribution
    else:
        distribution = distribution_for(action_space, owner=owner)
        network = ActorCritic(observation_space, distribution.param_dim, seed=seed, **options)
    return agent_cls(
        network,
        hyperparams=hyperparams,
        device=device,
        seed=seed,
        action_space=action_space,
        observation_space=observation_space,
        distribution=distribution,
    )
