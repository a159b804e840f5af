"""TFAgentBase's checkpoints, hyperparameters, devices and teardown, on real TensorFlow."""

from __future__ import annotations

import gc
import json
import os
import pickle
import weakref
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from optix_core.checkpoints import CheckpointError
from optix_core.hyperparams import Bound, HyperparamError
from optix_core.types import EpisodeData, HyperparamSet
from optix_tf import TFAgentBase, TFEvaluator, UnsafeCheckpointError
from optix_tf.serialization import WEIGHTS, optimizer_file, optimizer_variables

OBS, ACTIONS = 3, 2


class TinyAgent(TFAgentBase):
    """Two small networks and one Adam: the shape of an actor-critic agent."""

    algorithm = "tiny"
    DEFAULTS = {"learning_rate": 1e-2, "hidden": 8}  # noqa: RUF012
    BOUNDS = {"learning_rate": Bound(0, 1, open_low=True), "hidden": Bound(1, 64, integer=True)}  # noqa: RUF012
    ONLINE_SEARCH_SPACE = {"learning_rate": ("log_float", 1e-4, 1e-1)}  # noqa: RUF012

    def __init__(self, hyperparams=None, device="cpu", seed=None) -> None:
        super().__init__(hyperparams, device=device, seed=seed)
        with self.device_scope():
            self.actor = self._mlp(ACTIONS)
            self.critic = self._mlp(1)
            self.optimizer = keras.optimizers.Adam(self.hp["learning_rate"])
        self.apply_hyperparams()

    def _mlp(self, out: int) -> keras.Sequential:
        init = keras.initializers.GlorotUniform(seed=int(self.rng.integers(2**31)))
        return keras.Sequential(
            [
                keras.Input((OBS,)),
                keras.layers.Dense(self.hp["hidden"], activation="tanh", kernel_initializer=init),
                keras.layers.Dense(out, kernel_initializer=init),
            ]
        )

    def modules(self):
        return {"actor": self.actor, "critic": self.critic}

    def optimizers(self):
        return {"main": self.optimizer}

    def act(self, observation, deterministic=False):
        with self.device_scope():
            logits = self.actor(self.to_tensor(observation)).numpy()
        if deterministic:
            return logits.argmax(axis=-1)
        return (logits + self.act_rng.gumbel(size=logits.shape)).argmax(axis=-1)

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        obs = np.asarray(episode_data.observations, np.float32).reshape(-1, OBS)
        order = self.rng.permutation(len(obs))
        with self.device_scope():
            x = self.to_tensor(obs[order])
            # critic first: the optimizer builds lazily in another order than
            # optimizer_variables() gives, which checkpoints must not care about
            variables = [*self.critic.trainable_variables, *self.actor.trainable_variables]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((self.critic(x) - 1.0) ** 2) + tf.reduce_mean(
                    tf.square(self.actor(x) - tf.constant([[0.5, -0.5]]))
                )
            self.optimizer.apply_gradients(
                zip(tape.gradient(loss, variables), variables, strict=True)
            )
        return {"loss": float(loss)}


def window(agent: TinyAgent, steps: int = 8) -> EpisodeData:
    obs = agent.rng.normal(size=(steps, 1, OBS)).astype(np.float32)
    zeros = np.zeros((steps, 1), dtype=bool)
    return EpisodeData(
        observations=obs,
        actions=np.zeros((steps, 1), np.int64),
        rewards=np.ones((steps, 1), np.float32),
        terminated=zeros,
        truncated=zeros,
    )


def trained(seed: int = 0, steps: int = 3) -> TinyAgent:
    agent = TinyAgent(seed=seed)
    for _ in range(steps):
        agent.learn(window(agent))
    return agent


def state_of(agent: TinyAgent) -> dict[str, np.ndarray]:
    """Every network variable and every optimizer variable, by checkpoint key."""
    out = {k: v.numpy() for k, v in optimizer_variables(agent.optimizer, agent.modules()).items()}
    for name, module in agent.modules().items():
        out.update({f"{name}/{i}": v.numpy() for i, v in enumerate(module.weights)})
    return out


def assert_same_state(a: TinyAgent, b: TinyAgent) -> None:
    sa, sb = state_of(a), state_of(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


class _Payload:
    """Unpickling this runs a command: what a booby-trapped checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- round trips -------------------------------------------------------------


def test_a_round_trip_restores_weights_optimizer_slots_and_random_streams(tmp_path):
    agent = trained(seed=0)
    assert int(agent.optimizer.iterations.numpy()) == 3
    agent.save_weights(str(tmp_path / "ckpt"))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        optimizer_file("main"),
        "state.json",
        WEIGHTS,
    ]

    fresh = TinyAgent(seed=1)  # other initial weights, an optimizer that never stepped
    assert not np.array_equal(fresh.actor.weights[0].numpy(), agent.actor.weights[0].numpy())
    assert not fresh.optimizer.built
    fresh.load_weights(str(tmp_path / "ckpt"))

    assert_same_state(fresh, agent)  # every weight, the iteration count, every Adam slot
    assert int(fresh.optimizer.iterations.numpy()) == 3
    # the next step is the same step: the slots sit at the right variables
    agent.learn(window(agent))
    fresh.learn(window(fresh))
    assert_same_state(fresh, agent)
    # and both random streams continue where they were
    np.testing.assert_array_equal(fresh.rng.random(5), agent.rng.random(5))
    obs = np.zeros((4, OBS), np.float32)
    np.testing.assert_array_equal(fresh.act(obs), agent.act(obs))
    np.testing.assert_array_equal(fresh.act_rng.random(5), agent.act_rng.random(5))


def test_an_agent_that_never_stepped_saves_and_loads(tmp_path):
    untouched = TinyAgent(seed=2)
    untouched.save_weights(str(tmp_path / "ckpt"))
    fresh = TinyAgent(seed=3)
    fresh.load_weights(str(tmp_path / "ckpt"))
    assert_same_state(fresh, untouched)
    assert int(fresh.optimizer.iterations.numpy()) == 0


def test_act_does_not_move_the_training_stream():
    a, b = TinyAgent(seed=4), TinyAgent(seed=4)
    a.act(np.zeros((5, OBS), np.float32))
    np.testing.assert_array_equal(a.rng.random(3), b.rng.random(3))


# ---- refused checkpoints -------------------------------------------------------


@pytest.mark.parametrize("target", [WEIGHTS, optimizer_file("main")])
def test_a_pickle_payload_in_place_of_a_tensor_file_is_refused_unexecuted(tmp_path, target):
    TinyAgent(seed=0).save_weights(str(tmp_path / "ckpt"))
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps({"state": _Payload(marker)}, protocol=4)
    (tmp_path / "ckpt" / target).write_bytes(payload)
    fresh = TinyAgent(seed=1)
    before = state_of(fresh)
    with pytest.raises(UnsafeCheckpointError, match=f"{target} is not a safetensors file") as err:
        fresh.load_weights(str(tmp_path / "ckpt"))
    assert "pickle" in str(err.value)
    assert isinstance(err.value, CheckpointError)  # the registry skips it for an older snapshot
    assert not marker.exists()
    after = state_of(fresh)  # nothing was half-loaded (load built the empty Adam slots)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    pickle.loads(payload)  # the payload is live: unpickling it would have run
    assert marker.exists()


def test_a_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    TinyAgent(seed=0).save_weights(str(tmp_path / "ckpt"))
    wider = TinyAgent({"hidden": 16}, seed=0)
    with pytest.raises(
        ValueError,
        match=r"'actor' network does not match this agent's.*actor/0:kernel has shape \(3, 8\) in the checkpoint and \(3, 16\) here",
    ):
        wider.load_weights(str(tmp_path / "ckpt"))


def test_missing_files_and_foreign_checkpoints_are_clear_errors(tmp_path):
    agent = TinyAgent(seed=0)
    with pytest.raises(FileNotFoundError, match="holds no tiny checkpoint"):
        agent.load_weights(str(tmp_path / "nothing"))
    agent.save_weights(str(tmp_path / "ckpt"))
    (tmp_path / "ckpt" / optimizer_file("main")).unlink()
    with pytest.raises(FileNotFoundError, match=f"{optimizer_file('main')} is missing"):
        agent.load_weights(str(tmp_path / "ckpt"))

    state = tmp_path / "ckpt" / "state.json"
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "algorithm": "ppo"}))
    with pytest.raises(ValueError, match="holds a 'ppo' checkpoint, not 'tiny'"):
        agent.load_weights(str(tmp_path / "ckpt"))
    # A checkpoint without a backend predates optix-tf: optix-torch wrote it.
    state.write_text(json.dumps({k: v for k, v in saved.items() if k != "backend"}))
    with pytest.raises(ValueError, match="written by the 'torch' backend; it loads only into"):
        agent.load_weights(str(tmp_path / "ckpt"))


# ---- hyperparameters, devices, teardown -----------------------------------------------


def test_set_hyperparams_reaches_the_optimizer_at_once():
    agent = TinyAgent(seed=0)
    assert agent.optimizer.learning_rate.numpy() == pytest.approx(1e-2)
    agent.set_hyperparams(HyperparamSet({"learning_rate": 0.25}, episode_id=7))
    assert agent.optimizer.learning_rate.numpy() == pytest.approx(0.25)
    assert agent.get_hyperparams() == HyperparamSet({"learning_rate": 0.25, "hidden": 8}, 7)
    assert agent.search_space == TinyAgent.ONLINE_SEARCH_SPACE
    with pytest.raises(HyperparamError, match="learning_rate=2"):
        agent.set_hyperparams(HyperparamSet({"learning_rate": 2.0}))
    with pytest.raises(HyperparamError, match="unknown hyperparameter 'gamma'"):
        TinyAgent({"gamma": 0.9})


def test_devices_cpu_works_and_a_missing_gpu_is_an_error():
    for spelling in ("cpu", "/CPU:0"):
        agent = TinyAgent(device=spelling, seed=0)
        assert agent.device == "/CPU:0"
        assert agent.act(np.zeros((2, OBS), np.float32)).shape == (2,)
    gpus = len(tf.config.list_physical_devices("GPU"))
    with pytest.raises(ValueError, match="not available"):
        TinyAgent(device=f"gpu:{gpus + 3}")
    with pytest.raises(ValueError, match="not available"):
        TinyAgent(device=f"cuda:{gpus + 3}")


def test_teardown_releases_the_networks_and_says_so_afterwards():
    agent = trained(seed=0, steps=1)
    actor = weakref.ref(agent.actor)
    agent.teardown()
    gc.collect()
    assert actor() is None  # nothing else held it: TensorFlow can free its variables
    with pytest.raises(RuntimeError, match="torn down"):
        agent.act(np.zeros((1, OBS), np.float32))
    agent.teardown()  # twice is harmless


def test_tfevaluator_keeps_tensor_optix_name():
    from optix_core.evaluator import EpisodeReturnEvaluator

    assert issubclass(TFEvaluator, EpisodeReturnEvaluator)
