"""SAC with gSDE on MountainCarContinuous-v0: the zoo's [64, 64] against SB3's default [256, 256].

    uv run python benchmarks/sac_mcc_networks.py [--networks 64,64 256,256] [--seeds 0]
        [--steps 50000] [--every 5120] [--out benchmarks/results/sac-mcc-networks.json]

optix's SAC preset for MountainCarContinuous-v0 (gSDE, ``log_std_init``
−3.67), the same fixed budget, once per network and seed; every ``--every``
env steps, the mean of the last training episodes (exploring, with gSDE's
noise) beside the deterministic policy on 5 fresh episodes. gSDE's noise is
z·θ_ε over the actor's last features z, so its scale grows with their number:
the zoo gives this task [64, 64]. The table shows when each policy first
reaches the flag (a return above 90).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from optix_core import VectorBatchPipeline
from optix_core.evaluation import evaluate_policy
from optix_core.registry import find_agent, make_agent

ENV = "MountainCarContinuous-v0"
FLAG = 90.0  # a return above this reached the flag


def run(hidden: list[int], seed: int, steps: int, every: int) -> list[dict[str, float]]:
    hyperparams, rollout = find_agent("sac", "continuous", "torch").settings(ENV)  # the preset
    network = {"hidden": hidden}
    agent = make_agent("sac", ENV, "torch", hyperparams, "cpu", seed, network)
    pipe = VectorBatchPipeline(env_id=ENV, seed=seed, agent=agent, **rollout)
    curve, start = [], time.perf_counter()
    try:
        while pipe.env_steps < steps:
            data = pipe.collect()
            agent.learn(data)
            if pipe.env_steps % every:
                continue
            recent = data.infos.get("recent_returns", ())
            judged = evaluate_policy(agent, ENV, episodes=5, seed=1_000_000 + pipe.env_steps)
            point = {
                "env_steps": float(pipe.env_steps),
                "train": float(np.mean(recent)) if len(recent) else float("nan"),
                "deterministic": judged.mean,
                "seconds": time.perf_counter() - start,
            }
            curve.append(point)
            print(
                f"  {hidden} seed {seed}: " + "  ".join(f"{k} {v:,.1f}" for k, v in point.items()),
                flush=True,
            )
    finally:
        pipe.close()
    return curve


def first_flag(curve: list[dict[str, float]], key: str) -> str:
    return next((f"{p['env_steps']:,.0f}" for p in curve if p[key] > FLAG), "never")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--networks", nargs="+", default=["64,64", "256,256"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=5_120, help="a multiple of the window")
    parser.add_argument("--out", default="benchmarks/results/sac-mcc-networks.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for network in args.networks:
        hidden = [int(width) for width in network.split(",")]
        for seed in args.seeds:
            curve = run(hidden, seed, args.steps, args.every)
            results.append({"hidden": hidden, "seed": seed, "curve": curve})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": vars(args), "runs": results}, indent=1))
    print(
        "\n| network | seed | training reaches the flag | deterministic reaches it | final deterministic |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        curve = r["curve"]
        print(
            f"| {r['hidden']} | {r['seed']} | {first_flag(curve, 'train')} | "
            f"{first_flag(curve, 'deterministic')} | {curve[-1]['deterministic']:.1f} |"
        )
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
