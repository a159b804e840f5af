"""JaxAgentBase: the plumbing every JAX agent shares.

Device placement, hyperparameter validation, the agent's own random
generators, checkpoints (safetensors for network and optimizer state, never
pickle) and teardown. An algorithm subclass builds its Flax NNX networks and
``nnx.Optimizer``s (inside ``self.on_device()``), declares them in
``modules()`` and ``optimizers()``, and writes ``act``, ``act_info`` and
``learn``.

Randomness on the Python route lives in numpy, owned by the agent:
``self.rng`` orders minibatches and samples rollout actions, ``self.act_rng``
samples ``act()``'s actions, so an evaluation never moves the training
stream, and a checkpoint resumes both exactly. A compiled pipeline draws its
actions from its own ``jax.random`` key, which it checkpoints.

Optimizers are optax transformations wrapped by ``optax.inject_hyperparams``
so that the learning rate is part of their state: the loop moves it without
a retrace, and a checkpoint keeps it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optix_core.configured_agent import ConfiguredAgent
from optix_core.types import HyperparamSet
from optix_jax import compilation_cache
from optix_jax.device import resolve_device
from optix_jax.serialization import WEIGHTS, apply, optimizer_file, read_state, save_state

compilation_cache.enable()  # seconds of XLA compile per process, paid once instead


def adam(learning_rate: float, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam whose learning rate lives in its state (``set_learning_rate``)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, eps=eps)


@functools.lru_cache(maxsize=8)
def default_adam(eps: float) -> optax.GradientTransformation:
    """The default optimizer, ``adam`` with ε ``eps``, one object for every agent: a
    transformation is part of an optimizer's graphdef, so agents built alike have equal
    graphdefs and share their compiled updates (``compiled``). Each agent's learning
    rate lives in its own optimizer's state (``apply_hyperparams`` sets it)."""
    return adam(1e-3, eps=eps)


def compiled(function: Callable, *static: Any) -> Callable:
    """``jax.jit(partial(function, *static))``, one per distinct ``static`` (graphdefs,
    distributions, flags) in the process: agents built alike (another seed, another
    learning rate) share its compilations, which take seconds each on a CPU. Static
    arguments that cannot be hashed (a user's network with such an attribute) get a
    function of their own."""
    try:
        return _shared_jit(function, *static)
    except TypeError:
        return jax.jit(functools.partial(function, *static))


@functools.lru_cache(maxsize=64)
def _shared_jit(function: Callable, *static: Any) -> Callable:
    return jax.jit(functools.partial(function, *static))


def new_optimizer(model: nnx.Module, tx: optax.GradientTransformation) -> nnx.Optimizer:
    """``nnx.Optimizer`` over ``model``'s Params, its state (the moments' zeros) made
    by one compiled program: made eagerly, each parameter shape compiles a program of
    its own. A transformation that cannot be hashed is applied eagerly."""
    try:
        optimizer = _compiled_optimizer(model, tx)
    except TypeError:
        return _optimizer(model, tx)
    optimizer.tx = tx  # nnx.jit returns a copy of its static arguments: keep the caller's own
    return optimizer


def _optimizer(model: nnx.Module, tx: optax.GradientTransformation) -> nnx.Optimizer:
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


_compiled_optimizer = nnx.jit(_optimizer, static_argnums=1)


class JaxAgentBase(ConfiguredAgent):
    algorithm: ClassVar[str] = "jax-agent"
    backend: ClassVar[str] = "jax"

    def __init__(
        self,
        hyperparams: HyperparamSet | dict[str, Any] | None = None,
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.init_hyperparams(hyperparams)
        # The agent owns its randomness: sampling and minibatch order never touch
        # the global generators, so a checkpoint resumes the exact same stream.
        self.rng = np.random.default_rng(seed)  # rollouts and minibatches
        self.act_rng = np.random.default_rng(int(self.rng.integers(2**63 - 1)))  # act() only

    # ---- what subclasses declare ------------------------------------------

    def modules(self) -> dict[str, nnx.Module]:
        """The networks whose state makes up the policy."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, nnx.Optimizer]:
        """The ``nnx.Optimizer``s whose state a checkpoint keeps."""
        return {}

    def apply_hyperparams(self) -> None:
        """Push hyperparameters into the optimizers; called after every change."""
        lr = self._hp.params.get("learning_rate")
        if lr is not None:
            for optimizer in self.optimizers().values():
                set_learning_rate(optimizer, lr)

    def weights_changed(self) -> None:
        """The networks' state moved (``learn``, ``load_weights``): drop what was cached of it."""

    # ---- checkpoints -----------------------------------------------------------

    def save_weights(self, path: str) -> None:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        save_state(directory / WEIGHTS, self.modules(), "weights")
        for name, optimizer in self.optimizers().items():
            save_state(directory / optimizer_file(name), {name: optimizer}, "optimizer")
        self.write_state(directory, self._generators())
        self.save_extra(directory)

    def load_weights(self, path: str) -> None:
        """Restore a checkpoint; every file is checked before anything is changed."""
        directory = Path(path)
        state = self.read_state(directory, tuple(self._generators()))
        updates = read_state(directory / WEIGHTS, self.modules(), "weights", self.algorithm)
        for name, optimizer in self.optimizers().items():
            updates += read_state(
                directory / optimizer_file(name), {name: optimizer}, "optimizer", self.algorithm
            )
        with self.on_device():
            apply(updates)
        self.restore_state(state, self._generators(), directory)
        self.weights_changed()

    def teardown(self) -> None:
        """Let JAX free what this agent alone holds; the agent is not used again.

        Drops the agent's references to its networks, optimizers and compiled
        functions, then runs the garbage collector once, so their device
        buffers are freed unless someone else still holds them (a user-built
        module passed in stays intact). Using the agent afterwards raises a
        clear RuntimeError. Subclasses that hold such objects in containers
        release them and call ``super().teardown()``; calling it twice is harmless.
        """
        releasable = (nnx.Module, nnx.Optimizer, nnx.State, jax.Array)
        for attribute, value in list(vars(self).items()):
            if isinstance(value, _Released):
                continue
            if isinstance(value, releasable) or _is_compiled(value) or _holds_arrays(value):
                setattr(self, attribute, _Released(self.algorithm, attribute))
        gc.collect()

    # ---- helpers ---------------------------------------------------------

    def on_device(self) -> contextlib.AbstractContextManager:
        """``jax.default_device(self.device)``: build networks, act and learn inside it."""
        return jax.default_device(self.device)

    def _generators(self) -> dict[str, np.random.Generator]:
        return {"numpy_rng": self.rng, "act_rng": self.act_rng}


def set_learning_rate(optimizer: nnx.Optimizer, learning_rate: float) -> None:
    """Make a new learning rate take effect at the next step (jitted steps included:
    the rate is optimizer state they read, so nothing retraces)."""
    hyperparams = getattr(optimizer.opt_state, "hyperparams", None)
    if hyperparams is None or "learning_rate" not in hyperparams:
        raise ValueError(
            "the optimizer's learning rate is not in its state, so it cannot be set: build "
            "it with optax.inject_hyperparams (optix_jax.base.adam does), or leave "
            "learning_rate out of the agent's hyperparameters"
        )
    rate = hyperparams["learning_rate"]
    rate.set_value(jnp.asarray(learning_rate, dtype=rate.get_value().dtype))


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

    def __repr__(self) -> str:
        return f"<released: {self._message}>"


def _holds_arrays(value: Any) -> bool:
    """A list or tuple of device arrays (a state's leaves, cached for acting)."""
    return isinstance(value, list | tuple) and any(isinstance(v, jax.Array) for v in value)


def _is_compiled(value: Any) -> bool:
    return hasattr(value, "lower") and hasattr(value, "trace")  # a jax.jit-wrapped function
