"""optix-distributed's IMPALA: env steps/s with 1, 2, ... local actors, the learner
learning in the same run, and how soon the actors start stepping.

    uv run python benchmarks/impala_scaling.py [--actors 1 2] [--steps 200000] [--seeds 0 1 2]

Each run: ``ActorLearnerPipeline`` on CartPole-v1 with the registered impala
rollout (4 envs × 16-step trajectories per actor, 8 batches per window) and
``make_impala``'s default [64, 64] tanh actor-critic on the CPU; the learner
takes one V-trace step per batch, as under ``optix train``. Steps/s counts the
steps the learner received and learned from, from the first window to the
last (start-up excluded; reported apart). Start-up: from building the
pipeline to the first window in the learner's hands, for each start method.
Every framework on one thread per process (the learner and each actor).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from optix_core.registry import env_spaces, find_agent
from optix_core.types import HyperparamSet
from optix_distributed.impala import make_impala
from optix_distributed.pipeline import ActorLearnerPipeline

ENV = "CartPole-v1"


def run(n_actors: int, steps: int, seed: int, start_method: str | None) -> dict:
    hyperparams, rollout = find_agent("impala", "discrete", "torch").settings(ENV)
    obs, act = env_spaces(ENV)
    agent = make_impala(obs, act, seed=seed, device="cpu", hyperparams=HyperparamSet(hyperparams))
    t0 = time.perf_counter()
    pipeline = ActorLearnerPipeline(
        ENV,
        rollout["n_envs"],
        rollout["window_size"],
        seed,
        n_actors=n_actors,
        rounds=rollout["rounds"],
        start_method=start_method,
    )
    pipeline.bind(agent)
    try:
        window = pipeline.collect()
        startup = time.perf_counter() - t0
        agent.learn(window)
        first, t1 = pipeline.env_steps, time.perf_counter()
        lags = []
        while pipeline.env_steps - first < steps:
            window = pipeline.collect()
            agent.learn(window)
            lags.append(float(window.infos["policy_lag"].mean()))
        elapsed = time.perf_counter() - t1
        done = pipeline.env_steps - first
    finally:
        pipeline.close()
    return {
        "n_actors": n_actors,
        "seed": seed,
        "start_method": pipeline.executor.start_method,
        "startup_s": startup,
        "steps_per_s": done / elapsed,
        "mean_policy_lag": statistics.mean(lags),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"IMPALA on {ENV}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for seed in args.seeds:
        for n_actors in args.actors:
            row = run(n_actors, args.steps, seed, None)
            rows.append(row)
            print(
                f"seed {seed}, {n_actors} actor(s): {row['steps_per_s']:8,.0f} env steps/s "
                f"(mean policy lag {row['mean_policy_lag']:.2f}), first window after "
                f"{row['startup_s']:.2f} s ({row['start_method']})",
                flush=True,
            )
    base = statistics.mean(r["steps_per_s"] for r in rows if r["n_actors"] == args.actors[0])
    for n_actors in args.actors[1:]:
        rate = statistics.mean(r["steps_per_s"] for r in rows if r["n_actors"] == n_actors)
        print(f"{n_actors} actors / {args.actors[0]}: {rate / base:.2f}x env steps/s")
    for method in ("fork", "forkserver", "spawn"):
        row = run(2, 4096, 0, method)
        rows.append(row)
        print(f"start-up with 2 actors, {method}: first window after {row['startup_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
