"""A JAX, a TF and a torch PPO checkpoint of the same env, each loaded after a restart.

Each side trains two windows and saves in one interpreter; a fresh interpreter
builds the agent from another seed, loads the checkpoint and must act exactly
as the saved agent would have: the same values, log-probabilities and sampled
actions, which needs the weights and the acting generator back. Handing one
backend's checkpoint to another is a clear error naming the backend that
wrote it, before anything is loaded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

BACKENDS = ("jax", "tf", "torch")

# argv: backend, checkpoint directory, output .npz
TRAIN_AND_SAVE = """
import sys

import numpy as np

from optix_core import VectorBatchPipeline
from optix_core.registry import make_agent

backend, checkpoint, out = sys.argv[1:]
agent = make_agent("ppo", "CartPole-v1", backend=backend, device="cpu", seed=0)
pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=2, window_size=64, seed=0, agent=agent)
try:
    for _ in range(2):
        agent.learn(pipeline.collect())
finally:
    pipeline.close()
agent.save_weights(checkpoint)
observations = np.random.default_rng(7).normal(size=(32, 4)).astype(np.float32)
actions, info = agent.act_info(observations, np.zeros(32, bool))
np.savez(out, observations=observations, actions=actions, **info)
"""

# argv: backend, its own checkpoint, another backend's checkpoint, output .npz,
# what TRAIN_AND_SAVE wrote
RESTART_AND_LOAD = """
import sys

import numpy as np

from optix_core.registry import make_agent

backend, checkpoint, foreign, out, expected = sys.argv[1:]
saved = np.load(expected)
agent = make_agent("ppo", "CartPole-v1", backend=backend, device="cpu", seed=1)
try:
    agent.load_weights(foreign)
except ValueError as exc:
    print("FOREIGN", exc)
before = agent.act_info(saved["observations"], np.zeros(32, bool))[1]["values"]
agent.load_weights(checkpoint)
actions, info = agent.act_info(saved["observations"], np.zeros(32, bool))
np.savez(out, before_values=before, actions=actions, **info)
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    for backend in BACKENDS:
        checked(run_python(TRAIN_AND_SAVE, backend, root / backend, root / f"{backend}.npz"))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_checkpoint_loads_into_its_own_backend_after_a_restart(saved, backend) -> None:
    other = BACKENDS[(BACKENDS.index(backend) + 1) % len(BACKENDS)]
    expected = saved / f"{backend}.npz"
    result = checked(
        run_python(
            RESTART_AND_LOAD,
            backend,
            saved / backend,
            saved / other,
            saved / f"{backend}-loaded.npz",
            expected,
        )
    )
    assert (
        f"FOREIGN {saved / other} holds a ppo checkpoint written by the {other!r} backend; "
        f"it loads only into that backend (this agent is {backend!r})"
    ) in result.stdout, result.stdout
    want, got = np.load(expected), np.load(saved / f"{backend}-loaded.npz")
    # Another seed builds other weights: the load has something to undo.
    assert not np.allclose(got["before_values"], want["values"])
    np.testing.assert_array_equal(got["values"], want["values"])
    np.testing.assert_array_equal(got["log_probs"], want["log_probs"])
    np.testing.assert_array_equal(got["actions"], want["actions"])
