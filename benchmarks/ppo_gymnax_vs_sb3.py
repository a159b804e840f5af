"""optix-jax's compiled PPO on gymnax CartPole-v1 against Stable-Baselines3's PPO on gymnasium's.

    uv run python benchmarks/ppo_gymnax_vs_sb3.py [--seeds 0 1 2] [--envs 32 256 1024 4096]

optix: ``optix_jax.pipelines.compiled.CompiledPipeline`` on ``gymnax:CartPole-v1``
(every window one jitted ``lax.scan`` over vmapped environments) feeding
``make_ppo``'s agent (every window's update one jitted function) with the
registered ``gymnax:CartPole-v1`` preset: 32 envs × 128 steps, 4 epochs of
minibatches of 512, lr 2.5e-3, γ 0.99, λ 0.95, no entropy bonus, the default
[64, 64] tanh actor-critic. SB3 (after an untimed short run that
pays torch's one-time imports): rl-zoo's tuned CartPole-v1 PPO on gymnasium's
CartPole-v1 (8 envs × 32 steps, 20 epochs of minibatches of 256, linear
schedules from lr 1e-3 and clip 0.2), as ``ppo_cartpole_vs_sb3.py`` runs it:
each library with the settings that suit it, the same task (gymnax's CartPole
is gymnasium's dynamics and 500-step limit, written in JAX).

Each (side, seed) runs in a fresh process, the clock started after the
imports, before the agent is built. optix runs twice per seed: "cold", XLA's
persistent compilation cache off (``OPTIX_JAX_CACHE=0``), so every compile is
paid and counted; and "warm", the cache on, in a directory an untimed run
filled first (what a user's second run on a machine pays: tracing, and
loading the compiled programs). Every
``--eval-every`` env steps (after the update that completes them) the
deterministic policy plays 20 episodes (evaluation seed ``--eval-seed``;
optix's on gymnax through ``evaluate_policy``, compiled; SB3's on gymnasium);
evaluation time is excluded on both sides. Reported: training env steps per
second, and wall time and env steps to the first evaluation of at least 475,
compile included; then the ratios optix / SB3. One thread per side (XLA's
CPU client without its Eigen thread pool; one torch thread).

``--envs`` adds optix's steady rate (no evaluation, after the compile, 20
windows) at other numbers of environments, to find where the machine saturates.
``--device gpu`` runs optix's side (environments, policy and updates) on the GPU;
SB3's stays on the CPU, where its PPO on CartPole is fastest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

THRESHOLD = 475.0
ENV = "gymnax:CartPole-v1"


def run_optix(
    seed: int, steps: int, eval_every: int, eval_seed: int, device: str = "cpu"
) -> dict[str, Any]:
    import jax

    from optix_core.evaluation import evaluate_policy
    from optix_core.registry import find_agent, make_agent
    from optix_core.types import HyperparamSet
    from optix_jax.pipelines.compiled import CompiledPipeline

    hyperparams, rollout = find_agent("ppo", "discrete", "jax").settings(ENV)
    start = time.perf_counter()
    agent = make_agent(
        "ppo", ENV, backend="jax", hyperparams=HyperparamSet(hyperparams), seed=seed, device=device
    )
    pipeline = CompiledPipeline(ENV, rollout["n_envs"], rollout["window_size"], seed, agent)
    excluded, done, first, scores = 0.0, 0, None, []
    next_eval = eval_every
    while done < steps:
        agent.learn(pipeline.collect())
        jax.block_until_ready(agent._leaves)
        done += rollout["n_envs"] * rollout["window_size"]
        if done >= next_eval:
            next_eval += eval_every
            train_s = time.perf_counter() - start - excluded
            t0 = time.perf_counter()
            score = evaluate_policy(agent, ENV, episodes=20, seed=eval_seed).mean
            excluded += time.perf_counter() - t0
            scores.append((done, score))
            if score >= THRESHOLD and first is None:
                first = (done, train_s)
                break
    train_s = time.perf_counter() - start - excluded
    return {"steps": done, "train_s": train_s, "first": first, "evals": scores}


def run_steady(n_envs: int, windows: int, device: str = "cpu") -> dict[str, Any]:
    import jax

    from optix_core.registry import find_agent, make_agent
    from optix_core.types import HyperparamSet
    from optix_jax.pipelines.compiled import CompiledPipeline

    hyperparams, rollout = find_agent("ppo", "discrete", "jax").settings(ENV)
    # The same minibatches per epoch as the preset's: 8 per window.
    hyperparams["minibatch_size"] = n_envs * rollout["window_size"] // 8
    agent = make_agent(
        "ppo", ENV, backend="jax", hyperparams=HyperparamSet(hyperparams), seed=0, device=device
    )
    pipeline = CompiledPipeline(ENV, n_envs, rollout["window_size"], 0, agent)
    t0 = time.perf_counter()
    agent.learn(pipeline.collect())
    jax.block_until_ready(agent._leaves)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(windows):
        agent.learn(pipeline.collect())
    jax.block_until_ready(agent._leaves)
    rate = windows * n_envs * rollout["window_size"] / (time.perf_counter() - t0)
    return {"n_envs": n_envs, "steps_per_s": rate, "first_window_s": compile_s}


def run_sb3(seed: int, steps: int, eval_every: int, eval_seed: int) -> dict[str, Any]:
    import torch

    sys.path.insert(0, os.path.dirname(__file__))
    from ppo_cartpole_vs_sb3 import Clock
    from ppo_cartpole_vs_sb3 import run_sb3 as sb3_cartpole

    from optix_core.evaluation import evaluate_policy

    torch.set_num_threads(1)
    # Untimed first: torch imports torch._dynamo (about 900 modules) at the first
    # optimizer a process builds; that is start-up, not training.
    sb3_cartpole(0, 1024, Clock(eval_every, eval_seed, 1, evaluate_policy))
    clock = Clock(eval_every, eval_seed, 20, evaluate_policy)
    out = sb3_cartpole(seed, steps, clock)
    return {
        "steps": out["steps"],
        "train_s": out["train_s"],
        "first": clock.first,
        "evals": clock.scores,
    }


def child(args: argparse.Namespace) -> None:
    if args.side == "steady":
        print(json.dumps(run_steady(args.n_envs, args.windows, args.device)))
    elif args.side == "optix":
        print(
            json.dumps(
                run_optix(args.seed, args.steps, args.eval_every, args.eval_seed, args.device)
            )
        )
    else:
        print(json.dumps(run_sb3(args.seed, args.steps, args.eval_every, args.eval_seed)))


def spawn(*argv: str, cache: str | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        **({"JAX_COMPILATION_CACHE_DIR": cache} if cache else {"OPTIX_JAX_CACHE": "0"}),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false",
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000, help="optix's budget")
    parser.add_argument("--sb3-steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=8192)
    parser.add_argument("--eval-seed", type=int, default=10_000)
    parser.add_argument("--envs", type=int, nargs="*", default=[32, 256, 1024, 4096])
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="optix's JAX device: cpu or gpu")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["optix", "sb3", "steady"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--n-envs", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"PPO to a deterministic 475: optix-jax compiled on {ENV} ({args.device}) against SB3 "
        "on CartPole-v1 (cpu); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {"optix": [], "optix-warm": [], "sb3": []}
    common = ["--eval-every", str(args.eval_every), "--eval-seed", str(args.eval_seed)]
    cache = tempfile.mkdtemp(prefix="optix-jax-cache-")
    device = ["--device", args.device]
    spawn("--side", "optix", "--seed", "99", "--steps", "16384", *device, *common, cache=cache)
    for i, seed in enumerate(args.seeds):
        order = ["sb3", "optix", "optix-warm"] if i % 2 == 0 else ["optix-warm", "optix", "sb3"]
        for side in order:
            steps = args.sb3_steps if side == "sb3" else args.steps
            run = ["--side", side.removesuffix("-warm"), "--seed", str(seed), "--steps", str(steps)]
            run += [] if side == "sb3" else ["--device", args.device]
            row = spawn(*run, *common, cache=cache if side == "optix-warm" else None)
            row.update(seed=seed, steps_per_s=row["steps"] / row["train_s"])
            results[side].append(row)
            reach = (
                f"{row['first'][0]} steps in {row['first'][1]:.2f} s" if row["first"] else "never"
            )
            print(
                f"seed {seed} {side:10s}: {row['steps_per_s']:9,.0f} steps/s, "
                f"first eval >= 475: {reach}, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    for side in ("optix", "optix-warm"):
        speed = [
            o["steps_per_s"] / s["steps_per_s"]
            for o, s in zip(results[side], results["sb3"], strict=True)
        ]
        print(
            f"steps/s to the first 475, {side} / SB3 per seed: "
            + ", ".join(f"{r:.1f}" for r in speed)
            + f" (mean {statistics.mean(speed):.1f})"
        )
        reach = [
            o["first"][1] / s["first"][1]
            for o, s in zip(results[side], results["sb3"], strict=True)
            if o["first"] and s["first"]
        ]
        if reach:
            print(
                f"time to 475 (compile included), {side} / SB3 per seed: "
                + ", ".join(f"{r:.2f}" for r in reach)
                + f" (mean {statistics.mean(reach):.2f}; target <= 0.1)"
            )
    results["steady"] = []
    sb3_rate = statistics.mean(r["steps_per_s"] for r in results["sb3"])
    for n_envs in args.envs:
        row = spawn(
            "--side", "steady", "--n-envs", str(n_envs), "--windows", str(args.windows), *device
        )
        results["steady"].append(row)
        print(
            f"steady, {n_envs:5d} envs x 128 steps: {row['steps_per_s']:11,.0f} env steps/s, "
            f"{row['steps_per_s'] / sb3_rate:.1f}x SB3's (learning included; target >= 100,000 "
            f"and >= 20x; first window with its compiles {row['first_window_s']:.1f} s)",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
