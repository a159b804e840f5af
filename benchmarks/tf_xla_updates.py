"""optix-tf's compiled updates with and without XLA (``jit_compile=True``), side by side.

    uv run python benchmarks/tf_xla_updates.py [--rounds 12]

Two updates, each timed on the same windows by two agents built alike, one
whose ``tf.function`` is the one optix-tf ships (graph mode) and one whose
function is recompiled with ``jit_compile=True``; the agents take turns, the
one going first alternating, so a shared machine's load falls on both:

- PPO on CartPole-v1 with rl-zoo's settings (8 environments × 32 steps,
  minibatch 256, 20 epochs): the whole window's update, one call, per window.
- SAC on Pendulum-v1 with the defaults (256×256 networks, batch 256): one
  gradient step (critics, actor, temperature, Polyak) per call, per step.

The first two calls (tracing and compiling) are left out of the medians.
One TensorFlow thread, as the other benchmarks. optix-tf ships the faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import tensorflow as tf

from optix_core import VectorBatchPipeline


def ppo_agents() -> tuple[dict[bool, Any], list[Any], int]:
    from optix_tf.algorithms.ppo import make_ppo

    env = gym.make("CartPole-v1")
    hp = {"n_epochs": 20, "minibatch_size": 256, "gae_lambda": 0.8, "gamma": 0.98}
    agents = {}
    for jit in (False, True):
        agent = make_ppo(
            env.observation_space, env.action_space, hyperparams=hp, device="cpu", seed=0
        )
        if jit:
            agent._update = tf.function(agent.update, jit_compile=True, reduce_retracing=True)
        agents[jit] = agent
    return agents, windows("CartPole-v1", 8, 32, agents[False]), 1


def sac_agents() -> tuple[dict[bool, Any], list[Any], int]:
    from optix_tf.algorithms.sac import make_sac

    env = gym.make("Pendulum-v1")
    agents = {}
    for jit in (False, True):
        agent = make_sac(
            env.observation_space,
            env.action_space,
            hyperparams={"learning_starts": 0},
            device="cpu",
            seed=0,
        )
        if jit:
            agent._step = tf.function(agent.gradient_step, jit_compile=True, reduce_retracing=True)
        agents[jit] = agent
    return agents, windows("Pendulum-v1", 1, 100, agents[False]), 100


def windows(env_id: str, n_envs: int, steps: int, agent: Any, count: int = 4) -> list[Any]:
    pipeline = VectorBatchPipeline(
        env_id=env_id, n_envs=n_envs, window_size=steps, seed=0, agent=agent
    )
    try:
        return [pipeline.collect() for _ in range(count)]
    finally:
        pipeline.close()


def compare(name: str, build: Callable[[], tuple[dict[bool, Any], list[Any], int]], rounds: int):
    agents, data, calls_per_window = build()
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for jit in (True, False) if r % 2 else (False, True):
            start = time.perf_counter()
            agents[jit].learn(data[r % len(data)])
            times[jit].append((time.perf_counter() - start) / calls_per_window * 1e3)
    graph, xla = (statistics.median(times[jit][2:]) for jit in (False, True))
    print(
        f"{name}: graph {graph:.2f} ms, XLA {xla:.2f} ms per call (XLA / graph {xla / graph:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    compare("PPO CartPole-v1 window update", ppo_agents, args.rounds)
    compare("SAC Pendulum-v1 gradient step", sac_agents, args.rounds)


if __name__ == "__main__":
    main()
