"""TFAgentBase: the plumbing every TensorFlow agent shares.

Device placement, hyperparameter validation, the agent's own random
generators, checkpoints (safetensors for weights and optimizer state, never
pickle) and teardown. An algorithm subclass builds its Keras networks and
optimizers (inside ``self.device_scope()``), declares them in ``modules()``
and ``optimizers()``, and writes ``act``, ``act_info`` and ``learn``.

Randomness lives in numpy, owned by the agent: ``self.rng`` orders minibatches
and samples rollout actions, ``self.act_rng`` samples ``act()``'s actions, so
an evaluation never moves the training stream. No TensorFlow op needs a seed,
and a checkpoint resumes both streams exactly.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from optix_core.configured_agent import ConfiguredAgent
from optix_core.types import HyperparamSet
from optix_tf.device import resolve_device
from optix_tf.serialization import (
    assign,
    build_optimizer,
    read_optimizer,
    read_tensors,
    save_optimizer,
    save_tensors,
)


class TFAgentBase(ConfiguredAgent):
    algorithm: ClassVar[str] = "tf-agent"
    backend: ClassVar[str] = "tf"

    def __init__(
        self,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.device = resolve_device(_device_name(device))  # "/CPU:0", "/GPU:1"
        self.init_hyperparams(hyperparams)
        # The agent owns its randomness: sampling and minibatch order never touch
        # the global generators, so a checkpoint resumes the exact same stream.
        self.rng = np.random.default_rng(seed)  # rollouts and minibatches
        self.act_rng = np.random.default_rng(int(self.rng.integers(2**63 - 1)))  # act() only

    # ---- what subclasses declare ------------------------------------------

    def modules(self) -> dict[str, keras.layers.Layer]:
        """The networks (Keras models or layers, built) whose weights make up the policy."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        """Keras 3 optimizers whose state a checkpoint keeps."""
        return {}

    def optimizer_variables(self, name: str) -> list[Any]:
        """The variables optimizer ``name`` updates, used to build its slots before
        its first step (so that its state can be saved or loaded at any time).

        By default: the trainable variables of the network of the same name, or of
        every network when there is a single optimizer. Override it otherwise
        (SAC's temperature optimizer, one optimizer over two of three networks).
        """
        modules = self.modules()
        if name in modules:
            return list(modules[name].trainable_variables)
        if len(self.optimizers()) == 1:
            return [v for module in modules.values() for v in module.trainable_variables]
        raise NotImplementedError(
            f"{type(self).__name__}: say which variables optimizer {name!r} updates by "
            "overriding optimizer_variables(name) (no network shares its name)"
        )

    def apply_hyperparams(self) -> None:
        """Push hyperparameters into the optimizers; called after every change."""
        lr = self._hp.params.get("learning_rate")
        if lr is not None:
            for optimizer in self.optimizers().values():
                set_learning_rate(optimizer, lr)

    # ---- checkpoints -----------------------------------------------------------

    def save_weights(self, path: str) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        modules = self.modules()
        with self.device_scope():
            self._build_optimizers()
            save_tensors(directory, modules)
            for name, optimizer in self.optimizers().items():
                save_optimizer(directory, name, optimizer, modules)
        self.write_state(directory, self._generators())
        self.save_extra(directory)

    def load_weights(self, path: str) -> None:
        """Restore a checkpoint; every file is checked before anything is changed."""
        directory = Path(path)
        state = self.read_state(directory, tuple(self._generators()))
        modules = self.modules()
        with self.device_scope():
            self._build_optimizers()
            assignments = read_tensors(directory, modules, self.algorithm)
            for name, optimizer in self.optimizers().items():
                assignments += read_optimizer(directory, name, optimizer, modules, self.algorithm)
            assign(assignments)
        self.restore_state(state, self._generators(), directory)

    def teardown(self) -> None:
        """Let TensorFlow free what this agent alone holds; the agent is not used again.

        Drops the agent's own references to its networks, optimizers (with their
        slots), variables and ``tf.function`` objects (their traced graphs), then
        runs the garbage collector once, so their memory goes back to
        TensorFlow's allocator unless someone else still holds them (a
        user-built model passed in stays intact: nothing is mutated, no slot is
        zeroed). Using the agent afterwards raises a clear RuntimeError.

        Not done: ``keras.backend.clear_session()`` (process-wide: it would reset
        every other agent and model in the process), and giving GPU memory back
        to the driver (TensorFlow's allocator keeps its pool until the process
        ends; enable memory growth to keep that pool small). Subclasses that hold
        such objects inside containers release them and then call
        ``super().teardown()``; calling it twice is harmless.
        """
        releasable = (keras.layers.Layer, keras.optimizers.Optimizer, keras.Variable, tf.Variable)
        for attribute, value in list(vars(self).items()):
            if isinstance(value, releasable) or _is_tf_function(value):
                setattr(self, attribute, _Released(self.algorithm, attribute))
        gc.collect()

    # ---- helpers ---------------------------------------------------------

    def device_scope(self) -> contextlib.AbstractContextManager:
        """``tf.device(self.device)``: build networks and optimizers, act and learn inside it."""
        return tf.device(self.device)

    def to_tensor(self, array: Any, dtype: tf.DType = tf.float32) -> tf.Tensor:
        """One host-to-device copy of a numpy batch."""
        with tf.device(self.device):
            return tf.convert_to_tensor(np.asarray(array), dtype=dtype)

    def _generators(self) -> dict[str, np.random.Generator]:
        return {"numpy_rng": self.rng, "act_rng": self.act_rng}

    def _build_optimizers(self) -> None:
        for name, optimizer in self.optimizers().items():
            if not optimizer.built:
                build_optimizer(optimizer, self.optimizer_variables(name))


def set_learning_rate(optimizer: keras.optimizers.Optimizer, learning_rate: float) -> None:
    """Make a new learning rate take effect at the next step (compiled steps included:
    the rate is a variable they read, so nothing retraces)."""
    current = getattr(optimizer, "_learning_rate", None)
    if not isinstance(current, keras.Variable | tf.Variable):
        raise ValueError(
            f"{type(optimizer).__name__}'s learning rate follows {type(current).__name__}, "
            "so it cannot be set: build the optimizer with a float learning_rate, or leave "
            "learning_rate out of the agent's hyperparameters"
        )
    current.assign(float(learning_rate))


class _Released:
    """What a torn-down agent holds in place of a network or an optimizer."""

    def __init__(self, algorithm: str, attribute: str) -> None:
        self._message = (
            f"this {algorithm} agent was torn down: its {attribute!r} was released; "
            "build a new agent (and load_weights) to use it again"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(self._message)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(self._message)

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError(self._message)

    def __repr__(self) -> str:
        return f"<released: {self._message}>"


def _is_tf_function(value: Any) -> bool:
    return isinstance(value, tf.types.experimental.PolymorphicFunction)


def _device_name(device: str) -> str:
    """Accept TensorFlow's spelling too: ``"/GPU:1"`` → ``"gpu:1"``, ``"/CPU:0"`` → ``"cpu"``."""
    name = str(device).strip().lower()
    if name.startswith("/"):
        name = name.removeprefix("/").removeprefix("device:")
    return "cpu" if name in ("cpu:0", "cpu") else name
