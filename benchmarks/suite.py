"""The rl-baselines3-zoo suite: optix's autonomous loop against fixed budgets and SB3.

    uv run python benchmarks/suite.py [--rows CartPole-v1:ppo Pendulum-v1:sac ...]
        [--seeds 0 1 2] [--sides auto budget sb3] [--eval-episodes 100]
        [--sb3-max-steps 100000] [--out benchmarks/results/suite.json]
        [--curves benchmarks/results/curves] [--merge FILE] [--work DIR]
        [--window-size STEPS]

For each row (environment, algorithm, the zoo's budget and published score)
and seed, up to three runs:

- ``auto``: ``optix train ENV --algo A --seed S``, as a user runs it: the
  algorithm's preset for the environment where it has one, no step budget; it
  stops when the scheduler declares the run DORMANT. A safety cap of
  ``--auto-cap`` times the zoo's budget ends a run that never settles (its
  stop reason then says so).
- ``budget``: the same command with ``--max-steps BUDGET --no-early-stop``:
  the zoo's whole budget, DORMANT or not, as SB3 trains.
- ``sb3``: Stable-Baselines3 with the zoo's settings for BUDGET env steps,
  where BUDGET is at most ``--sb3-max-steps`` (the machine's time); otherwise
  the zoo's published score, marked ``published`` (one run, its own
  evaluation).

Each optix run is an ``optix train`` process; the policy it hands back
(its best checkpoint) is evaluated by ``optix eval RUN --json`` on
``--eval-episodes`` deterministic episodes from seed ``EVAL_SEED``, the
episodes ``optix eval`` plays by default, which never choose a checkpoint.
An autonomous run that trained past the budget says why in its stop reason,
with the env steps of its training score's last record (``record_steps``):
still improving past the budget, or past it by DORMANT's patience alone.
SB3's final model plays the same episodes through the same function
(``optix_core.evaluate_policy``); each run records its ``eval_seed``. Env
steps count every step an optix run took, the deterministic episodes that
judged its checkpoints included; SB3's are its budget.

Per row the summary gives each side's mean over seeds and checks the two
targets of issue 16: the autonomous run's score at least the fixed-budget
run's minus one standard error, and the zoo's score reached with at most half
of the zoo's env steps. The results go to ``--out`` as JSON and are printed
as a Markdown table; each row's learning curves, the seeds of a side drawn
together by ``optix plot``, go to ``--curves``.

A row can take longer than one sitting (LunarLanderContinuous SAC: hours a
run). ``--out`` is written after every run, and with ``--work DIR`` the runs
stay in DIR: the same command again evaluates the finished runs there and
resumes the unfinished ones from their last window (``optix train --resume``:
the agent, its replay and the loop as they were, the environments on new
episodes; wall time counts the sittings' training only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optix_core.selection import REPORT_SEED

# Not SELECTION_SEED: every checkpoint candidate plays the episodes from there,
# and results before 2026-12-04 (eval_seed 1,000,000) shared five of them.
EVAL_SEED = REPORT_SEED


@dataclass(frozen=True)
class Row:
    env_id: str
    algo: str
    budget: int  # the zoo's n_timesteps
    zoo_score: float  # rl-baselines3-zoo's benchmark.md (one run, deterministic)
    zoo_std: float
    sb3: dict[str, Any] = field(default_factory=dict)  # the zoo's settings, SB3's names
    differences: str = ""  # where optix's preset cannot match the zoo's setting


def linear(start: float) -> Any:
    return lambda progress: progress * start  # SB3 passes the remaining fraction


SUITE = [
    Row(
        "CartPole-v1",
        "ppo",
        100_000,
        500.0,
        0.0,
        dict(
            n_envs=8,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=linear(1e-3),
            clip_range=linear(0.2),
        ),
        "optix's CartPole PPO uses its defaults (8 x 256 steps a window, constant rates), "
        "not the zoo's 8 x 32 steps with rates annealed over 100k",
    ),
    Row(
        "CartPole-v1",
        "dqn",
        50_000,
        500.0,
        0.0,
        dict(
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=dict(net_arch=[256, 256]),
        ),
    ),
    Row(
        "MountainCar-v0",
        "dqn",
        120_000,
        -100.849,
        9.925,
        dict(
            learning_rate=4e-3,
            batch_size=128,
            buffer_size=10_000,
            learning_starts=1000,
            gamma=0.98,
            target_update_interval=600,
            train_freq=16,
            gradient_steps=8,
            exploration_fraction=0.2,
            exploration_final_eps=0.07,
            policy_kwargs=dict(net_arch=[256, 256]),
        ),
        "optix acts through its 16-step windows with the policy of each window's start",
    ),
    Row(
        "Acrobot-v1",
        "ppo",
        1_000_000,
        -73.506,
        18.201,
        dict(normalize=True, n_envs=16, n_steps=256, gae_lambda=0.94, n_epochs=4, ent_coef=0.0),
    ),
    Row(
        "LunarLander-v3",
        "ppo",
        1_000_000,
        242.119,
        31.823,
        dict(
            n_envs=16,
            n_steps=1024,
            batch_size=64,
            gae_lambda=0.98,
            gamma=0.999,
            n_epochs=4,
            ent_coef=0.01,
        ),
        "the zoo's score is LunarLander-v2's",
    ),
    Row("Pendulum-v1", "sac", 20_000, -156.995, 88.714, dict(learning_rate=1e-3)),
    Row(
        "Pendulum-v1",
        "td3",
        20_000,
        -151.855,
        90.227,
        dict(
            gamma=0.98,
            buffer_size=200_000,
            learning_starts=10_000,
            noise_std=0.1,
            gradient_steps=-1,
            train_freq=(1, "episode"),
            learning_rate=1e-3,
            policy_kwargs=dict(net_arch=[400, 300]),
        ),
    ),
    Row(
        "LunarLanderContinuous-v3",
        "sac",
        500_000,
        260.390,
        65.467,
        dict(
            batch_size=256,
            learning_rate=linear(7.3e-4),
            buffer_size=1_000_000,
            ent_coef="auto",
            gamma=0.99,
            tau=0.01,
            train_freq=1,
            gradient_steps=1,
            learning_starts=10_000,
            policy_kwargs=dict(net_arch=[400, 300]),
        ),
        "optix: a constant learning rate; the zoo's score is -v2's",
    ),
    Row(
        "MountainCarContinuous-v0",
        "sac",
        50_000,
        94.679,
        1.134,
        dict(
            learning_rate=3e-4,
            buffer_size=50_000,
            batch_size=512,
            ent_coef=0.1,
            train_freq=32,
            gradient_steps=32,
            gamma=0.9999,
            tau=0.01,
            learning_starts=0,
            use_sde=True,
            policy_kwargs=dict(log_std_init=-3.67, net_arch=[64, 64]),
        ),
    ),
]


@dataclass
class Result:
    env_id: str
    algo: str
    seed: int
    side: str  # auto, budget, sb3, published
    env_steps: int
    wall_time: float
    eval_mean: float
    eval_std: float
    eval_episodes: int
    eval_seed: int | None  # the first evaluation episode's seed; None: the zoo's own
    stop_reason: str = ""
    runoff: str = ""  # which policy the runoff handed back, "best" or "final"; "": no runoff
    record_steps: int | None = None  # training env steps at the training score's last record


def optix_run(row: Row, seed: int, side: str, args: argparse.Namespace, root: Path) -> Result:
    """One ``optix train`` process writing its run under ``root/SIDE-seedS``, then
    ``optix eval --json`` of what it handed back."""
    cap = row.budget if side == "budget" else int(row.budget * args.auto_cap)
    parent = root / f"{side}-seed{seed}"
    words = [row.env_id, "--algo", row.algo, "--seed", str(seed), "--run-dir", str(parent)]
    if side == "budget":
        words.append("--no-early-stop")  # the whole budget, as SB3 trains
    if args.window_size:
        words += ["--window-size", str(args.window_size)]
    started = time.perf_counter()
    earlier = sorted(parent.iterdir()) if parent.exists() else []
    if not earlier:
        _optix("train", *words, "--max-steps", str(cap), timeout=args.timeout)
    elif not (earlier[0] / "report.json").exists():  # a killed suite's run: resumed
        print(f"  optix {side}: resuming {earlier[0]}", flush=True)
        _optix("train", "--resume", str(earlier[0]), timeout=args.timeout)
    (run_dir,) = parent.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    episodes = ("--episodes", str(args.eval_episodes), "--seed", str(EVAL_SEED))
    final = json.loads(_optix("eval", str(run_dir), "--json", *episodes))
    reason = report["stop_reason"]
    if side == "auto" and reason.startswith("max_env_steps"):
        reason = f"safety cap ({args.auto_cap:g}x the zoo's budget) reached: still improving"
    record_steps = steps_at(run_dir, report.get("record_window"))
    if side == "auto":
        reason += past_the_budget(report["env_steps"], record_steps, row.budget)
    steps = report["env_steps"] + report["selection_env_steps"]
    print(
        f"  optix {side}: {final['mean']:.1f} ± {final['std']:.1f} after {steps:,} env steps, "
        f"{time.perf_counter() - started:.0f} s; {reason}",
        flush=True,
    )
    return Result(
        row.env_id,
        row.algo,
        seed,
        side,
        steps,
        report["wall_time"],
        final["mean"],
        final["std"],
        final["episodes"],
        final["seed"],
        reason,
        (report.get("runoff") or {}).get("winner", ""),
        record_steps,
    )


def past_the_budget(training_steps: int, record_steps: int | None, budget: int) -> str:
    """Why an autonomous run trained past the zoo's budget, if it did: its training
    score still set records there, or DORMANT's patience alone took it past."""
    if record_steps is None or training_steps <= budget:
        return ""
    if record_steps > budget:
        return f"; still improving past the budget: its last record at {record_steps:,} steps"
    return (
        f"; past the budget by DORMANT's patience: its last record at {record_steps:,} "
        "steps, within the budget"
    )


def steps_at(run_dir: Path, window: int | None) -> int | None:
    """The training env steps when evaluation ``window`` ended (``metrics.jsonl``)."""
    if window is None:
        return None
    lines = (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    return next((int(line["env_steps"]) for line in lines if line["window"] == window), None)


def _optix(*words: str, timeout: float | None = None) -> str:
    """Run an optix command; its standard output, or its error in full."""
    optix = shutil.which("optix")
    if optix is None:
        sys.exit("the optix command is not on PATH: run this with `uv run`")
    done = subprocess.run([optix, *words], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"optix {' '.join(words)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def plot_curves(row: Row, root: Path, sides: list[str], curves: Path) -> None:
    """``optix plot`` of each optix side's seeds together (their mean and spread),
    as ``curves/ENV-ALGO-SIDE.png``."""
    curves.mkdir(parents=True, exist_ok=True)
    for side in sides:
        runs = sorted(str(run) for run in root.glob(f"{side}-seed*/*"))
        if not runs:
            continue
        image = curves / f"{row.env_id}-{row.algo}-{side}.png"
        try:
            _optix("plot", *runs, "--output", str(image))
        except RuntimeError as error:  # no optix-callbacks[plot]: the numbers still stand
            print(f"  no curves: {str(error).splitlines()[-1]}", flush=True)
        else:
            print(f"  curves: {image}", flush=True)


def sb3_run(row: Row, seed: int, args: argparse.Namespace) -> Result:
    from optix_core import frameworks

    frameworks.install()  # SB3 may import TensorFlow (through tensorboard) beside torch
    import stable_baselines3 as sb3
    import torch
    from ppo_cartpole_vs_sb3 import SB3Policy
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.common.vec_env import VecNormalize

    from optix_core import evaluate_policy

    torch.set_num_threads(1)
    settings = dict(row.sb3)
    env = make_vec_env(row.env_id, n_envs=settings.pop("n_envs", 1), seed=seed)
    normalize = settings.pop("normalize", False)
    if normalize:
        env = VecNormalize(env)
    if "noise_std" in settings:
        n = env.action_space.shape[0]
        settings["action_noise"] = NormalActionNoise([0.0] * n, [settings.pop("noise_std")] * n)
    model = getattr(sb3, row.algo.upper())("MlpPolicy", env, seed=seed, **settings)
    started = time.perf_counter()
    model.learn(row.budget)
    wall = time.perf_counter() - started
    policy = SB3Policy(model)
    if normalize:  # the statistics the policy learned with, frozen
        env.training = False
        policy = _Normalized(model, env)
    final = evaluate_policy(policy, row.env_id, args.eval_episodes, seed=EVAL_SEED)
    print(f"  sb3: {final.mean:.1f} ± {final.std:.1f}, {wall:.0f} s", flush=True)
    return Result(
        row.env_id,
        row.algo,
        seed,
        "sb3",
        row.budget,
        wall,
        final.mean,
        final.std,
        len(final.returns),
        EVAL_SEED,
    )


class _Normalized:
    """An SB3 model trained under VecNormalize, fed observations as it saw them."""

    def __init__(self, model: Any, env: Any) -> None:
        self.model, self.env = model, env

    def act(self, observation: Any, deterministic: bool = False) -> Any:
        return self.model.predict(self.env.normalize_obs(observation), deterministic=deterministic)[
            0
        ]

    def reset_state(self, mask: Any = None) -> None:
        """A feed-forward policy has no state to reset."""


def published(row: Row) -> Result:
    return Result(
        row.env_id,
        row.algo,
        -1,
        "published",
        row.budget,
        math.nan,
        row.zoo_score,
        row.zoo_std,
        0,
        None,
    )


def summary(row: Row, results: list[Result]) -> dict[str, Any]:
    """Each side's mean over seeds, and the two targets."""
    sides: dict[str, dict[str, Any]] = {}
    for side in ("auto", "budget", "sb3", "published"):
        mine = [r for r in results if r.side == side]
        if not mine:
            continue
        scores = [r.eval_mean for r in mine]
        sides[side] = {
            "score": statistics.mean(scores),
            "se": statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else 0.0,
            "env_steps": statistics.mean(r.env_steps for r in mine),
            "wall_time": statistics.mean(r.wall_time for r in mine),
            "seeds": len(mine),
            "eval_seeds": sorted({r.eval_seed for r in mine if r.eval_seed is not None}),
        }
    targets: dict[str, Any] = {}
    auto, budget = sides.get("auto"), sides.get("budget")
    if auto and budget:
        targets["auto >= budget - 1 SE"] = auto["score"] >= budget["score"] - budget["se"]
    if auto:
        targets["zoo score with <= 50% of its steps"] = (
            auto["score"] >= row.zoo_score and auto["env_steps"] <= row.budget / 2
        )
    return {
        "env_id": row.env_id,
        "algo": row.algo,
        "budget": row.budget,
        "sides": sides,
        "targets": targets,
        "differences": row.differences,
    }


def table(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| env | algo | zoo budget, score | autonomous: score, env steps, time | fixed budget: score, time | SB3 (or published) | targets |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        sides = s["sides"]
        other = (
            _cell(sides, "sb3") if "sb3" in sides else f"{_cell(sides, 'published')} (published)"
        )
        if "sb3" in sides and sides["sb3"]["eval_seeds"] != sides.get("auto", {}).get("eval_seeds"):
            other += f" (episodes from seed {', '.join(map(str, sides['sb3']['eval_seeds']))})"
        targets = "; ".join(f"{k}: {'met' if v else 'missed'}" for k, v in s["targets"].items())
        lines.append(
            f"| {s['env_id']} | {s['algo']} | {s['budget']:,} | {_cell(sides, 'auto', True)} "
            f"| {_cell(sides, 'budget')} | {other} | {targets} |"
        )
    return "\n".join(lines)


def _cell(sides: dict[str, Any], name: str, steps: bool = False) -> str:
    side = sides.get(name)
    if side is None:
        return "-"
    text = f"{side['score']:.1f} ± {side['se']:.1f}"
    if steps:
        text += f", {side['env_steps']:,.0f} steps"
    if not math.isnan(side["wall_time"]):
        text += f", {side['wall_time']:.0f} s"
    return text


def merged(path: Path, new: list[Result]) -> list[Result]:
    """``path``'s runs with those ``new`` reruns replaced, then ``new``."""

    def key(r: Result) -> tuple[str, str, int, str]:
        return (r.env_id, r.algo, r.seed, r.side)

    def result(run: dict[str, Any]) -> Result:  # JSON's null is a NaN score or time
        nan = ("wall_time", "eval_mean", "eval_std")
        return Result(**{k: math.nan if v is None and k in nan else v for k, v in run.items()})

    rerun = {key(r) for r in new}
    old = [result(run) for run in json.loads(path.read_text())["runs"]]
    return [r for r in old if key(r) not in rerun] + new


def _finite(value: Any) -> Any:
    """JSON without NaN: a published score has no wall time of ours."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write(args: argparse.Namespace, rows: list[Row], new: list[Result]) -> list[dict[str, Any]]:
    """``--out``: the runs (``--merge``'s with this command's in place) and each
    row's summary; returns the summaries."""
    results = merged(Path(args.merge), new) if args.merge else new
    chosen = {(row.env_id, row.algo): row for row in rows}  # with a --budget override
    summaries = [
        summary(
            chosen.get((row.env_id, row.algo), row),
            [r for r in results if (r.env_id, r.algo) == (row.env_id, row.algo)],
        )
        for row in SUITE
        if any((r.env_id, r.algo) == (row.env_id, row.algo) for r in results)
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "machine": f"{os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(sys.argv),
        "runs": [asdict(r) for r in results],
        "rows": summaries,
    }
    partial = out.with_name(out.name + ".partial")  # a suite killed while writing keeps the last
    partial.write_text(json.dumps(_finite(data), indent=2) + "\n")
    partial.replace(out)
    return summaries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", nargs="+", metavar="ENV:ALGO", help="default: every row")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sides", nargs="+", default=["auto", "budget", "sb3"])
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--sb3-max-steps", type=int, default=100_000)
    parser.add_argument("--auto-cap", type=float, default=5.0, help="x the zoo's budget")
    parser.add_argument("--budget", type=int, help="override every row's budget (smoke tests)")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per optix run")
    parser.add_argument(
        "--window-size",
        type=int,
        help="optix's windows, in steps of each environment (default: the preset's); an "
        "off-policy agent acts through a window with the policy of its start",
    )
    parser.add_argument("--out", default="benchmarks/results/suite.json")
    parser.add_argument(
        "--curves",
        default="benchmarks/results/curves",
        help="folder for each row's learning curves (optix plot); '' draws none",
    )
    parser.add_argument(
        "--merge",
        metavar="FILE",
        help="start from FILE's runs and replace those this command reruns (a side, a seed)",
    )
    parser.add_argument(
        "--work",
        metavar="DIR",
        help="keep the optix runs in DIR (default: a temporary folder); run again with the "
        "same DIR, a finished run is evaluated again, an unfinished one resumed",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = SUITE
    if args.rows:
        by_name = {f"{r.env_id}:{r.algo}": r for r in SUITE}
        unknown = [name for name in args.rows if name not in by_name]
        if unknown:
            sys.exit(f"unknown rows {unknown}; the suite has {', '.join(by_name)}")
        rows = [by_name[name] for name in args.rows]
    if args.budget is not None:
        rows = [Row(**{**asdict(r), "budget": args.budget}) for r in rows]
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        work = Path(args.work or stack.enter_context(tempfile.TemporaryDirectory()))
        for row in rows:
            root = work / f"{row.env_id}-{row.algo}"
            optix_sides = [side for side in ("auto", "budget") if side in args.sides]
            for seed in args.seeds:
                print(f"{row.env_id} {row.algo} seed {seed}", flush=True)
                for side in optix_sides:
                    results.append(optix_run(row, seed, side, args, root))
                    write(args, rows, results)  # a killed suite keeps what ran
                if "sb3" in args.sides and row.budget <= args.sb3_max_steps:
                    results.append(sb3_run(row, seed, args))
                    write(args, rows, results)
            if args.curves:
                plot_curves(row, root, optix_sides, Path(args.curves))
            if "sb3" in args.sides and row.budget > args.sb3_max_steps:
                results.append(published(row))
    summaries = write(args, rows, results)
    print(table(summaries))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
