"""optix-distributed's IMPALA against RLlib's IMPALA on CartPole-v1, side by side in one run.

    uv run python benchmarks/impala_vs_rllib.py [--seeds 0 1 2] [--steps 500000]
        [--eval-every 10000] [--only optix|rllib] [--json results.json]

RLlib cannot share the workspace's lock (``ray[rllib]`` pins gymnasium 1.2.2,
the workspace has 1.4), so its side runs in an isolated environment that this
script makes with ``uv run --isolated --no-project --python 3.11 --with
"ray[rllib]==2.60.0" --with "torch==<the workspace's torch>"`` (the same torch
release, so uv reuses its cache; the first run installs, timed and reported
apart, never part of a measurement). Each side runs in a fresh subprocess per
seed, this same file with ``--child optix|rllib``; its clock starts after its
imports (and, for RLlib, after ``ray.init``, reported apart: a local cluster's
start-up, as for a user whose cluster is already up). The seeds run one after
the other; within a seed the side that goes first alternates.

The same settings on both sides: 2 actors / Env runners, 4 CartPole-v1
environments each, trajectories (RLlib: rollout fragments) of 16 steps, so
128 steps per learner update (RLlib: ``train_batch_size_per_learner=128``);
separate [64, 64] tanh actor and critic MLPs (RLlib: ``DefaultModelConfig(
fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False)``);
Adam, learning rate 5e-4, gamma 0.99, V-trace with rho_bar = c_bar = 1 (RLlib's
c_bar is fixed at 1), no entropy bonus, gradients clipped to a global norm of
0.5 (RLlib: ``grad_clip=0.5, grad_clip_by="global_norm"``), one update per
batch. The value loss is the same function on both sides: optix's
``vf_coef · mean((v_s − V)²)`` with vf_coef 0.5, RLlib's
``vf_loss_coeff · 0.5 · mean((v_s − V)²)``, so RLlib gets
``vf_loss_coeff=1.0``. RLlib on its new API stack with torch and a local
learner (``num_learners=0``: the learner runs in the driver, on IMPALA's
learner thread). One torch thread per process on both sides
(``OMP_NUM_THREADS=1`` for the child and every process it starts, and
``torch.set_num_threads(1)``). What still differs: the initialisation
(optix orthogonal, RLlib torch's default), and how V-trace's trajectories are
cut (RLlib appends one bootstrap step to every episode chunk).

Counted, by each algorithm's own counters: optix's ``pipeline.env_steps``
(steps the learner received; every one is learned from), RLlib's
``num_env_steps_sampled_lifetime`` (its ``num_env_steps_trained_lifetime``
is reported too; it also counts the bootstrap step appended to every episode
chunk, so it runs ahead of the steps sampled). Steps/s is over the run from
the first window (optix: 1,024 steps) or iteration (RLlib: at least
``--rllib-iteration-steps``) to the end, evaluation time left out; the time
to it is reported as start-up. Every ``--eval-every`` steps (at the first
window or iteration boundary at or past each multiple) the current policy
plays the same 20 deterministic (argmax) episodes (evaluation seed
``--eval-seed``, 8 environments): optix's through
``optix_core.evaluation.evaluate_policy``, RLlib's learner weights copied into
``algo.get_module()`` and played through its ``forward_inference`` on numpy
observations here (``play``, the same episodes as ``evaluate_policy``),
outside RLlib's evaluation machinery. Evaluation time is excluded on both
sides. A run stops at the first evaluation of at least 475 or at ``--steps``;
reported per seed and side: steps/s, start-up, the training time (from the
clock's start, so start-up included: RLlib's ``build_algo()`` and its first
iteration, in which the driver polls until the EnvRunners' first samples
arrive) and steps to that evaluation, the same time less start-up (for
reading), the final policy on 20 fresh episodes (seed ``--eval-seed`` + 1);
then the ratios optix / RLlib. RLlib's defaults stand where the settings above
say nothing: its driver polls the EnvRunners without waiting
(``timeout_s_sampler_manager=0``), the EnvRunners pull weights from an
``EnvRunnerStateServer`` actor, the learner thread's queue holds 3 batches.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ENV = "CartPole-v1"
THRESHOLD = 475.0
RAY_VERSION = "2.60.0"
N_ACTORS, N_ENVS, TRAJECTORY, ROUNDS = 2, 4, 16, 8
LR, GAMMA, VF_COEF, MAX_GRAD_NORM = 5e-4, 0.99, 0.5, 0.5
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Clock:
    """Training time with evaluations left out, and the first evaluation >= 475."""

    def __init__(self, eval_every: int, episodes: int, eval_seed: int) -> None:
        self.eval_every, self.episodes, self.eval_seed = eval_every, episodes, eval_seed
        self.start = time.perf_counter()
        self.excluded = 0.0
        self.next_eval = eval_every
        self.first: dict[str, float] | None = None
        self.scores: list[tuple[int, float]] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.excluded

    def maybe_evaluate(self, steps: int, score: Callable[[], float], **extra: float) -> bool:
        """At the first boundary at or past each multiple of eval_every, ``score()``
        (untimed); True once an evaluation reaches 475."""
        if steps < self.next_eval:
            return False
        while self.next_eval <= steps:
            self.next_eval += self.eval_every
        train_time = self.elapsed()
        t0 = time.perf_counter()
        mean = score()
        self.excluded += time.perf_counter() - t0
        self.scores.append((steps, mean))
        if mean >= THRESHOLD and self.first is None:
            self.first = {"steps": steps, "s": train_time, **extra}
        return self.first is not None


def play(act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> float:
    """``optix_core.evaluation.evaluate_policy``'s episodes with gymnasium alone (the
    RLlib environment has no optix): 8 environments seeded from ``seed``, each
    playing a fixed share of the episodes; the mean return."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    n_envs = min(8, episodes)
    targets = np.full(n_envs, episodes // n_envs) + (np.arange(n_envs) < episodes % n_envs)
    envs = SyncVectorEnv([lambda: gym.make(ENV)] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        obs, _ = envs.reset(seed=seed)
        running = np.zeros(n_envs)
        done_count = np.zeros(n_envs, dtype=np.int64)
        returns: list[float] = []
        while (done_count < targets).any():
            obs, rewards, terminated, truncated, _ = envs.step(act(obs))
            running += rewards
            for i in np.flatnonzero(np.logical_or(terminated, truncated)):
                if done_count[i] < targets[i]:
                    returns.append(float(running[i]))
                    done_count[i] += 1
                running[i] = 0.0
    finally:
        envs.close()
    return float(np.mean(returns))


def warm_torch() -> None:
    """torch imports torch._dynamo (about 900 modules) at the first optimizer step a
    process takes: part of the imports, before either side's clock starts."""
    import torch

    torch.set_num_threads(1)
    param = torch.zeros(1, requires_grad=True)
    param.sum().backward()
    torch.optim.Adam([param]).step()


def run_optix(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from optix_core.evaluation import evaluate_policy
    from optix_core.registry import env_spaces
    from optix_core.types import HyperparamSet
    from optix_distributed.impala import make_impala
    from optix_distributed.pipeline import ActorLearnerPipeline

    warm_torch()
    hyperparams = {
        "learning_rate": LR,
        "gamma": GAMMA,
        "rho_bar": 1.0,
        "c_bar": 1.0,
        "entropy_coef": 0.0,
        "vf_coef": VF_COEF,
        "max_grad_norm": MAX_GRAD_NORM,
    }
    obs_space, act_space = env_spaces(ENV)

    def score(agent: Any, episodes: int, seed: int) -> float:
        return float(evaluate_policy(agent, ENV, episodes=episodes, seed=seed).mean)

    clock = Clock(args.eval_every, args.eval_episodes, args.eval_seed)
    agent = make_impala(
        obs_space, act_space, seed=args.seed, device="cpu", hyperparams=HyperparamSet(hyperparams)
    )
    pipeline = ActorLearnerPipeline(
        ENV, N_ENVS, TRAJECTORY, args.seed, n_actors=N_ACTORS, rounds=ROUNDS
    )
    pipeline.bind(agent)
    first = None
    try:
        while pipeline.env_steps < args.steps:
            agent.learn(pipeline.collect())
            steps = pipeline.env_steps
            if first is None:
                first = (steps, clock.elapsed())
            if clock.maybe_evaluate(
                steps, lambda: score(agent, args.eval_episodes, args.eval_seed)
            ):
                break
        end = (pipeline.env_steps, clock.elapsed())
    finally:
        pipeline.close()
    final = score(agent, args.eval_episodes, args.eval_seed + 1)
    # The check that ``play`` (the RLlib side's evaluation) plays the same episodes.
    check = play(
        lambda obs: np.asarray(agent.act(obs, deterministic=True)),
        args.eval_episodes,
        args.eval_seed + 1,
    )
    return {
        **summary(clock, first, end),
        "final_eval": final,
        "final_eval_by_play": check,
        "torch_threads": torch.get_num_threads(),
        "start_method": pipeline.executor.start_method,
    }


def run_rllib(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    import torch
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    warm_torch()
    t0 = time.perf_counter()
    ray.init(
        num_cpus=max(os.cpu_count() or 1, N_ACTORS + 1),
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    ray_init_s = time.perf_counter() - t0
    config = (
        IMPALAConfig()
        .environment(ENV)
        .framework("torch")
        .env_runners(
            num_env_runners=N_ACTORS,
            num_envs_per_env_runner=N_ENVS,
            rollout_fragment_length=TRAJECTORY,
        )
        .learners(num_learners=0)
        .training(
            lr=LR,
            gamma=GAMMA,
            train_batch_size_per_learner=N_ACTORS * N_ENVS * TRAJECTORY,
            vtrace_clip_rho_threshold=1.0,
            vtrace_clip_pg_rho_threshold=1.0,
            entropy_coeff=0.0,
            vf_loss_coeff=2 * VF_COEF,  # RLlib's value loss carries its own 0.5
            grad_clip=MAX_GRAD_NORM,
            grad_clip_by="global_norm",
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False
            )
        )
        .reporting(
            min_time_s_per_iteration=0,
            min_sample_timesteps_per_iteration=args.rllib_iteration_steps,
        )
        .debugging(seed=args.seed, log_level="ERROR")
    )

    def score(module: Any, episodes: int, seed: int) -> float:
        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            out = module.forward_inference({"obs": torch.as_tensor(obs, dtype=torch.float32)})
            return out["action_dist_inputs"].argmax(-1).numpy()

        return play(act, episodes, seed)

    def current_module() -> Any:
        # The driver's own EnvRunner never samples under IMPALA, so its module keeps
        # the initial weights: copy the learner's in first.
        state = algo.learner_group.get_state(
            components="learner/rl_module/default_policy", inference_only=True
        )
        module = algo.get_module()
        module.set_state(state["learner"]["rl_module"]["default_policy"])
        return module

    clock = Clock(args.eval_every, args.eval_episodes, args.eval_seed)
    algo = config.build_algo()
    build_s = clock.elapsed()
    first = None
    trained = trained_first = 0
    try:
        while True:
            result = algo.train()
            steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            trained = int(result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"])
            if first is None:
                first, trained_first = (steps, clock.elapsed()), trained
            if clock.maybe_evaluate(
                steps,
                lambda: score(current_module(), args.eval_episodes, args.eval_seed),
                trained=trained,
            ):
                break
            if steps >= args.steps:
                break
        end = (steps, clock.elapsed())
        final = score(current_module(), args.eval_episodes, args.eval_seed + 1)
        runner_threads = algo.env_runner_group.foreach_env_runner(
            torch_threads, local_env_runner=False
        )
    finally:
        algo.stop()
        ray.shutdown()
    out = summary(clock, first, end)
    return {
        **out,
        "trained": trained,
        "trained_per_s": (trained - trained_first) / (end[1] - out["startup_s"]),
        "final_eval": final,
        "ray_init_s": ray_init_s,
        "build_s": build_s,
        "torch_threads": torch.get_num_threads(),
        "env_runner_torch_threads": runner_threads,
    }


def torch_threads(_: Any) -> int:
    import torch

    return torch.get_num_threads()


def summary(
    clock: Clock, first: tuple[int, float] | None, end: tuple[int, float]
) -> dict[str, Any]:
    assert first is not None
    steady = (end[0] - first[0]) / (end[1] - first[1]) if end[0] > first[0] else float("nan")
    return {
        "steps": end[0],
        "train_s": end[1],
        "startup_s": first[1],
        "startup_steps": first[0],
        "steps_per_s": steady,
        "steps_to_475": clock.first["steps"] if clock.first else None,
        "s_to_475": clock.first["s"] if clock.first else None,
        "trained_at_475": clock.first.get("trained") if clock.first else None,
        "evals": clock.scores,
    }


def child_command(side: str, args: argparse.Namespace, seed: int, out: str) -> list[str]:
    tail = [
        "--child",
        side,
        "--seed",
        str(seed),
        "--out",
        out,
        "--steps",
        str(args.steps),
        "--eval-every",
        str(args.eval_every),
        "--eval-episodes",
        str(args.eval_episodes),
        "--eval-seed",
        str(args.eval_seed),
        "--rllib-iteration-steps",
        str(args.rllib_iteration_steps),
    ]
    if side == "optix":
        return [sys.executable, __file__, *tail]
    return [*rllib_env(args.torch_version), "python", __file__, *tail]


def rllib_env(torch_version: str) -> list[str]:
    return [
        "uv",
        "run",
        "--isolated",
        "--no-project",
        "--python",
        "3.11",
        "--with",
        f"ray[rllib]=={RAY_VERSION}",
        "--with",
        f"torch=={torch_version}",
    ]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return {**env, **ONE_THREAD}


def run_child(side: str, args: argparse.Namespace, seed: int, logs: Path) -> dict[str, Any]:
    out = logs / f"{side}-{seed}.json"
    log = logs / f"{side}-{seed}.log"
    t0 = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(
            child_command(side, args, seed, str(out)),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=child_env(),
            check=False,
        )
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"{side} seed {seed} failed ({proc.returncode}):\n{tail}")
    row = json.loads(out.read_text())
    row["process_s"] = time.perf_counter() - t0
    return row


def child_main(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    row = run_optix(args) if args.child == "optix" else run_rllib(args)
    row.update(seed=args.seed, side=args.child, load_start=load, load_end=os.getloadavg()[0])
    Path(args.out).write_text(json.dumps(row))


def ratios(
    name: str,
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    ratio: Callable[[dict[str, Any], dict[str, Any]], float],
    target: str,
) -> None:
    """optix / RLlib per seed, and their mean."""
    values = [(o["seed"], ratio(o, r)) for o, r in pairs]
    if values:
        print(
            f"{name}, optix / RLlib: "
            + ", ".join(f"seed {seed} {v:.2f}" for seed, v in values)
            + f" (mean {statistics.mean(v for _, v in values):.2f}; target {target})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=500_000, help="step budget per run")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--eval-seed", type=int, default=10_000)
    parser.add_argument(
        "--rllib-iteration-steps",
        type=int,
        default=2048,
        help="RLlib's min_sample_timesteps_per_iteration (its evaluation grain)",
    )
    parser.add_argument("--only", choices=["optix", "rllib"], default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", choices=["optix", "rllib"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    import torch

    args.torch_version = torch.__version__.split("+")[0]
    sides = [args.only] if args.only else ["rllib", "optix"]
    print(
        f"{ENV} IMPALA: {N_ACTORS} actors x {N_ENVS} envs x {TRAJECTORY} steps per update, "
        f"budget {args.steps} steps, evaluation every {args.eval_every} steps "
        f"({args.eval_episodes} episodes, seed {args.eval_seed}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {args.torch_version}, ray {RAY_VERSION}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if "rllib" in sides:
        t0 = time.perf_counter()
        subprocess.run(
            [*rllib_env(args.torch_version), "python", "-c", "import ray.rllib, torch"],
            env=child_env(),
            check=True,
            capture_output=True,
        )
        print(
            f"RLlib's isolated environment ready in {time.perf_counter() - t0:.1f} s "
            "(installs on the first run; not part of any timing)",
            flush=True,
        )
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="impala-vs-rllib-") as tmp:
        for i, seed in enumerate(args.seeds):
            for side in sides if i % 2 == 0 else sides[::-1]:
                row = run_child(side, args, seed, Path(tmp))
                results[side].append(row)
                reach = (
                    f"{row['steps_to_475']} steps in {row['s_to_475']:.1f} s"
                    if row["s_to_475"] is not None
                    else "never"
                )
                extra = (
                    f", trained counter {row['trained_per_s']:,.0f}/s, ray.init "
                    f"{row['ray_init_s']:.1f} s (not timed), build {row['build_s']:.1f} s"
                    if side == "rllib"
                    else f", final by play() {row['final_eval_by_play']:.1f}"
                )
                print(
                    f"seed {seed} {side:5s}: {row['steps_per_s']:7,.0f} env steps/s "
                    f"({row['steps']} steps, {row['train_s']:.1f} s, start-up "
                    f"{row['startup_s']:.1f} s), first eval >= 475: {reach}, final policy "
                    f"{row['final_eval']:.1f}{extra}; load {row['load_start']:.1f} -> "
                    f"{row['load_end']:.1f}",
                    flush=True,
                )
    print(
        f"\n{'side':5s} {'seed':>4s} {'steps/s':>8s} {'start-up s':>10s} {'steps to 475':>12s} "
        f"{'s to 475':>8s} {'after start-up':>14s} {'final':>6s}"
    )
    for side in sides:
        for row in results[side]:
            reached = row["s_to_475"] is not None
            print(
                f"{side:5s} {row['seed']:4d} {row['steps_per_s']:8,.0f} {row['startup_s']:10.1f} "
                f"{row['steps_to_475'] if reached else '-':>12} "
                + (
                    f"{row['s_to_475']:8.1f} {row['s_to_475'] - row['startup_s']:14.1f} "
                    if reached
                    else f"{'-':>8s} {'-':>14s} "
                )
                + f"{row['final_eval']:6.1f}"
            )
    if len(sides) == 2:
        pairs = list(zip(results["optix"], results["rllib"], strict=True))
        both = [(o, r) for o, r in pairs if o["s_to_475"] and r["s_to_475"]]
        ratios("env steps/s", pairs, lambda o, r: o["steps_per_s"] / r["steps_per_s"], ">= 1")
        ratios("time to 475", both, lambda o, r: o["s_to_475"] / r["s_to_475"], "<= 1")
        ratios(
            "time to 475 after start-up",
            both,
            lambda o, r: (o["s_to_475"] - o["startup_s"]) / (r["s_to_475"] - r["startup_s"]),
            "none, for reading",
        )
        ratios("steps to 475", both, lambda o, r: o["steps_to_475"] / r["steps_to_475"], "none")
        missing = [
            f"{side} seed {row['seed']}"
            for side in sides
            for row in results[side]
            if row["s_to_475"] is None
        ]
        if missing:
            print("never reached 475: " + ", ".join(missing))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
