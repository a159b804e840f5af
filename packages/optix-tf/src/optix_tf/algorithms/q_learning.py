"""What the value-based agents (DQN, Rainbow) share in TensorFlow.

``QAgentBase``: an online Q-network and its target copy, their optimizer,
the hard copy θ_target ← θ, and greedy acting (argmax_a Q(s, a)) that does
not retrace per call, over ``replay.TFReplayAgent`` (the replay memory, the
update schedule and the checkpoints of both). ``check_q_network``: the one
check that a network fits the spaces. What is not TensorFlow (ε-greedy
exploration, when the target is copied, the action-space checks) is
optix-core's ``off_policy.q_learning`` and ``off_policy.schedule``. Each
algorithm's file holds its network, its acting and its loss.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from optix_core.policies.numpy_networks import NUMPY_ACTIVATIONS, dense_forward
from optix_core.types import HyperparamSet
from optix_tf.algorithms.replay import TFReplayAgent
from optix_tf.policies import observations as O
from optix_tf.policies.networks import probe_input


class QAgentBase(TFReplayAgent):
    """Online and target Q-networks and their optimizer, over ``TFReplayAgent``'s replay.

    A subclass checks its network fits the spaces, calls this constructor,
    sets up what is its own, then calls ``apply_hyperparams()``. The target
    network is ``target_network`` when given (the same architecture: a
    subclassed Keras model cannot always be copied), else a clone of
    ``q_network``; either way it starts as a copy of the online weights.
    """

    adam_eps: ClassVar[float] = 1e-8  # ε of the default Adam (torch's default, as optix-torch)

    def __init__(
        self,
        q_network: keras.Model,
        optimizer: keras.optimizers.Optimizer | None,
        hyperparams: HyperparamSet | dict[str, Any] | None,
        device: str,
        seed: int | None,
        probe: Any,
        target_network: keras.Model | None = None,
    ) -> None:
        super().__init__(hyperparams, device, seed)
        self.q_network = q_network
        with tf.device(self.device):
            self.target_network = target_network or clone_network(q_network, self.algorithm)
            if probe is not None:
                self.target_network(probe)  # built before its weights are copied
            self.target_network.trainable = False
            self._sync_target()
            self.optimizer = optimizer or keras.optimizers.Adam(
                learning_rate=self.hp["learning_rate"], epsilon=self.adam_eps
            )
            self._build_optimizers()  # its slots exist before the first (compiled) step
        self._greedy = tf.function(self.greedy_graph, reduce_retracing=True)
        self._numpy_q: NumpyQ | None = None
        self._numpy_q_stale = True

    def modules(self) -> dict[str, keras.Model]:
        return {"q_network": self.q_network, "target_network": self.target_network}

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        return {"main": self.optimizer}

    def optimizer_variables(self, name: str) -> list[Any]:
        return list(self.q_network.trainable_variables)

    def _sync_target(self) -> None:
        """θ_target ← θ (Mnih et al. 2015: every C updates); usable inside a tf.function."""
        for target, online in zip(self.target_network.weights, self.q_network.weights, strict=True):
            target.assign(online)

    # ---- acting -------------------------------------------------------------

    def greedy_graph(self, obs: Any) -> tf.Tensor:
        """argmax_a Q(s, a) for a batch of observation tensors (compiled as ``_greedy``)."""
        return tf.argmax(self.q_network(obs), axis=-1)

    def greedy_actions(self, observation: Any) -> np.ndarray:
        """argmax_a Q(s, a) for a batch of observations, on the host.

        On the CPU, a plain Sequential of Dense layers acts from a numpy snapshot of its
        weights (a call into TensorFlow costs more than its arithmetic on a
        few rows), retaken after every ``learn`` and ``load_weights``; call
        ``weights_changed()`` after changing the weights another way. Any
        other network runs through one ``tf.function`` that does not retrace
        per batch size.
        """
        if self._numpy_q_stale:
            on_cpu = "CPU" in str(self.device).upper()
            self._numpy_q = NumpyQ.of(self.q_network) if on_cpu else None
            self._numpy_q_stale = False
        if self._numpy_q is not None:
            return self._numpy_q(observation).argmax(axis=-1)
        with tf.device(self.device):
            return self._greedy(O.to_tensor(observation)).numpy()

    def weights_changed(self) -> None:
        """Retake the acting snapshot of the Q-network's weights before the next action."""
        self._numpy_q_stale = True

    def load_weights(self, path: str) -> None:
        super().load_weights(path)
        self.weights_changed()


# ---- the network: its check, its copy, its numpy snapshot ------------------------------


def check_q_network(
    network: keras.Model,
    observation_space: gym.Space | None,
    expected: tuple[int, ...],
    owner: str,
) -> Any:
    """Run two observations through ``network`` and insist on outputs shaped ``[2, *expected]``.

    The observations come from ``observation_space``, else from the space the
    network was built for (its ``observation_space`` attribute, as the
    default networks keep), else they are shaped by its declared ``Input``;
    without any of these the network must already be built, and is trusted.
    Returns the probe (for building copies of the network), or None.
    """
    space = observation_space
    if space is None:
        space = getattr(network, "observation_space", None)
    probe = probe_input(network, space)
    if probe is None:
        if not network.built:
            raise ValueError(
                f"{owner}: the q_network is not built and its input is unknown; "
                "give it an Input layer or give observation_space="
            )
        return None
    where = f"from {space}" if space is not None else f"shaped {tuple(probe.shape[1:])}"
    try:
        out = network(probe, training=False)
    except Exception as exc:
        raise ValueError(f"{owner}: the q_network fails on observations {where} ({exc})") from None
    if tuple(out.shape[1:]) != expected:
        raise ValueError(
            f"{owner}: the q_network outputs shape {tuple(out.shape[1:])} per observation, "
            f"expected {expected} (n_actions={expected[0]}"
            + (f", n_atoms={expected[1]})" if len(expected) > 1 else ")")
        )
    return probe


def clone_network(network: keras.Model, owner: str) -> keras.Model:
    """A new network of ``network``'s architecture (weights not yet copied).

    The default networks rebuild themselves (``clone_architecture()``);
    Sequential and functional models go through ``keras.models.clone_model``;
    a subclassed model that can be neither is refused with what to do.
    """
    rebuild = getattr(network, "clone_architecture", None)
    if rebuild is not None:
        return rebuild()
    try:
        return keras.models.clone_model(network)
    except Exception:
        pass
    try:
        return copy.deepcopy(network)
    except Exception as exc:
        raise ValueError(
            f"{owner}: cannot copy the q_network {type(network).__name__} for the target "
            f"network ({type(exc).__name__}); give target_network= (a second instance of the "
            "same architecture) or implement get_config()"
        ) from None


class NumpyQ:
    """A snapshot of a Sequential Dense Q-network's weights that runs its forward pass in numpy."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
        self.layers = layers

    @classmethod
    def of(cls, network: keras.Model) -> NumpyQ | None:
        """The snapshot, where ``network`` is a ``keras.Sequential`` of Dense layers with
        relu, tanh or no activation; else None."""
        if type(network) is not keras.Sequential or not network.layers:
            return None
        layers = []
        for layer in network.layers:
            name = getattr(layer.activation, "__name__", "")
            if type(layer) is not keras.layers.Dense or name not in NUMPY_ACTIVATIONS:
                return None
            if not layer.use_bias:
                return None
            layers.append((layer.kernel.numpy(), layer.bias.numpy(), name))
        return cls(layers)

    def __call__(self, obs: Any) -> np.ndarray:
        return dense_forward(obs, self.layers)
