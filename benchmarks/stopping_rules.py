"""When to stop: optix's DORMANT test against its peers, on the same learning curves.

    uv run python benchmarks/stopping_rules.py record CartPole-v1 --algo ppo --seeds 0 1 2 \
        --max-steps 200000 --out benchmarks/results/curves-cartpole.json
    uv run python benchmarks/stopping_rules.py replay benchmarks/results/curves-cartpole.json

``record`` trains with ``optix train`` as a user runs it, but with every
window evaluated, every window's policy judged on the deterministic episodes
that choose checkpoints (the same seeds from ``1_000_000`` for every window,
each episode's return kept), and no stop
before ``--max-steps``. Training never depends on the judging, so the curve
is the one any stopping rule would have seen up to the moment it stopped.

``replay`` runs each rule over each curve and reports where it stopped (env
steps, counting every evaluation episode the rule needed), which policy it
hands back and that policy's judged score:

- ``optix``: ``optix train``'s scheduler and checkpoint selection as shipped
  (``LOOP_DEFAULTS``, ``SELECTION_SHARE``, the environment's
  ``reward_threshold`` as the solved score, DORMANT confirmed on the current
  policy); it stops where ``optix train`` stops on the same seed.
- ``optix + trend``: ``optix`` with DORMANT also held while the score still
  climbs by ``--trend-gain`` of what the run has learned per doubling of the
  run (``trend_scheduler``): a rule measured here, not shipped. On the
  training score as the loop sees it, and on every window's judged score,
  which makes judging every window part of its cost.
- ``optix 0.x``: the settings before relative patience: evaluations backing
  off to every 8 windows, DORMANT after 10 without improvement, every
  candidate judged.
- ``SB3``: Stable-Baselines3's ``EvalCallback`` (5 deterministic episodes at
  every window, the best kept) with ``StopTrainingOnNoModelImprovement``
  (``max_no_improvement_evals=3, min_evals=5``, its documentation's example),
  the real class driven by a stand-in for its parent.
- ``Ray Tune``: ``TrialPlateauStopper`` on the training score (its defaults:
  stop once the last 4 results' standard deviation is below 0.01, after a
  grace period of 4), rewritten here from Ray's documented rule because
  ``ray[tune]`` is not in the workspace; Tune hands back the last policy.

The judged score of the policy a rule returns is the mean of its 5 judging
episodes; for rules that pick the best of many judgments it is optimistic in
the same way for each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

JUDGE_EPISODES = 5

RECORDER = """
import json, os, sys
import optix_core.cli.train as train
from optix_core import selection

train.LOOP_DEFAULTS.update(base_interval=1, backoff_factor=1.0, max_interval_episodes=1,
                           plateau_threshold=10**9, dormant_threshold=10**9)
judge = selection.EvaluationSelection.judge

def judge_every_window(self, agent, window, metrics, decision):
    self.max_share = None
    before = self.env_steps
    candidate = judge(self, agent, window, metrics, decision)
    metrics.metrics["judge_steps"] = float(self.env_steps - before)
    with open(os.environ["OPTIX_RECORDER_LOG"], "a") as out:  # metrics.jsonl keeps numbers only
        out.write(json.dumps({"window": window, "returns": candidate.returns}) + "\\n")
    return candidate

selection.EvaluationSelection.is_candidate = lambda self, decision: True
selection.EvaluationSelection.judge = judge_every_window
from optix_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Point:
    window: int
    env_steps: int  # training env steps after this window
    train: float  # the window's training score
    judged: float  # its policy's mean over the judging episodes
    judge_steps: int  # env steps those episodes took
    returns: list[float]  # those episodes' returns, in order


Curve = list[Point]


def run_recorder(recorder: str, args: argparse.Namespace, seed: int) -> tuple[list, list]:
    """``optix train ENV --algo A --seed S --max-steps N`` under ``recorder`` (a
    program that patches the loop, then runs the CLI): the run's metrics.jsonl
    lines and the lines the recorder appended to ``$OPTIX_RECORDER_LOG``."""
    with tempfile.TemporaryDirectory() as root:
        log = Path(root) / "recorder.jsonl"
        command = [sys.executable, "-c", recorder, "train", args.env, "--algo", args.algo]
        command += ["--seed", str(seed), "--max-steps", str(args.max_steps)]
        command += ["--run-dir", str(Path(root) / "runs")]
        print(f"recording {args.env} {args.algo} seed {seed}", flush=True)
        env = {**os.environ, "OPTIX_RECORDER_LOG": str(log)}
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
        (run_dir,) = (Path(root) / "runs").iterdir()
        metrics = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x) for x in metrics], [
            json.loads(x) for x in log.read_text().splitlines()
        ]


def record(args: argparse.Namespace) -> None:
    out = Path(args.out)
    curves = json.loads(out.read_text()) if out.exists() else {}
    for seed in args.seeds:
        lines, judged = run_recorder(RECORDER, args, seed)
        returns = {line["window"]: line["returns"] for line in judged}
        points = []
        for line in lines:
            m = line["metrics"]
            points.append(
                [
                    line["window"],
                    line["env_steps"],
                    line["raw"],
                    m["selection_score"],
                    int(m["judge_steps"]),
                    returns[line["window"]],
                ]
            )
        curves[f"{args.env} {args.algo} seed {seed}"] = points
        out.write_text(json.dumps(curves))
    print(f"wrote {out}")


@dataclass
class Outcome:
    stopped_at: int | None  # the window it stopped after; None: never within the curve
    env_steps: int  # training plus every evaluation episode it used
    returned: int | None  # the window whose policy it hands back
    score: float  # that policy's judged score


def trend_scheduler(trend_gain: float) -> Any:
    """``BackoffScheduler`` whose DORMANT also waits while ``climbing()``: the
    least-squares slope of the scores it is shown (``observe``) against
    log2(window), over the last two doublings of the run (windows from a
    quarter of the way in), less one standard error, is above ``trend_gain``
    of what the run has learned (its record smoothed score above its lowest).
    That is, doubling the run would add more than that share, confidently."""
    from optix_core.scheduler import BackoffScheduler

    class TrendHeldScheduler(BackoffScheduler):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.trend: list[tuple[int, float]] = []

        def observe(self, window: int, score: float) -> None:
            self.trend = [(w, x) for w, x in self.trend if 4 * w >= window]
            self.trend.append((window, score))

        def climbing(self) -> bool:
            if len(self.trend) < 3 or not np.isfinite(self.record_smoothed):
                return False
            windows, scores = (
                np.asarray(v, dtype=np.float64) for v in zip(*self.trend, strict=True)
            )
            x = np.log2(windows)
            spread = np.sum((x - x.mean()) ** 2)
            slope, intercept = np.polyfit(x, scores, 1)
            residuals = scores - (slope * x + intercept)
            se = math.sqrt(np.sum(residuals**2) / (len(scores) - 2) / spread)
            learned = self.record_smoothed - self.lowest_smoothed
            return slope - se > trend_gain * learned

        def converged(self, episode: int, solved: bool = True) -> bool:
            return super().converged(episode, solved) and not self.climbing()

    return TrendHeldScheduler


def optix_rule(
    loop: dict[str, Any],
    share: float | None,
    paired: bool = True,
    trend_on: str | None = None,
    trend_gain: float = 0.005,
) -> Callable[[Curve], Outcome]:
    """The loop's scheduler and checkpoint selection over a recorded curve: a
    window is judged when selection would judge it, and at DORMANT the current
    policy is judged and sends the run on when it clearly beats the best, as
    ``RLOptimizer`` does; the task is solved once the best candidate reaches
    ``loop["solved_score"]`` (when given). Candidates compare by their paired
    episodes' returns when ``paired`` (every window judged on the same episodes).
    ``trend_on`` ("train" or "judged") holds DORMANT while that score still
    climbs by ``trend_gain`` a doubling (``trend_scheduler``); "judged" judges
    every window, each a candidate, and counts it."""
    from optix_core.scheduler import BackoffScheduler
    from optix_core.selection import Candidate, EvaluationSelection
    from optix_core.types import LoopState

    schedule = {k: v for k, v in loop.items() if k != "solved_score"}
    solved_score = loop.get("solved_score")
    make_scheduler = trend_scheduler(trend_gain) if trend_on else BackoffScheduler

    def run(curve: Curve) -> Outcome:
        scheduler = make_scheduler(**schedule)
        selection = EvaluationSelection("unused", JUDGE_EPISODES, max_share=share)
        best: Candidate | None = None
        judging = 0
        for p in curve:
            if not scheduler.should_evaluate(p.window):
                continue
            if trend_on:
                scheduler.observe(p.window, p.judged if trend_on == "judged" else p.train)
            solved = solved_score is None or (best is not None and best.score >= solved_score)
            decision = scheduler.record(p.window, p.train, solved)
            dormant = decision.state is LoopState.DORMANT
            affordable = share is None or judging <= share * p.env_steps
            candidate_judged = selection.is_candidate(decision) and affordable
            if candidate_judged or dormant or trend_on == "judged":
                judging += p.judge_steps
                sem = float(np.std(p.returns) / math.sqrt(len(p.returns)))
                returns = p.returns if paired else []
                candidate = Candidate(
                    p.window, p.judged, decision.smoothed, JUDGE_EPISODES, sem, returns
                )
                if dormant and selection.clearly_beats(candidate, best):
                    scheduler.resume_after_dormant(p.window)
                    dormant = False
                if selection.beats(candidate, best):
                    best = candidate
            if dormant:
                return Outcome(
                    p.window,
                    p.env_steps + judging,
                    best and best.window,
                    best.score if best else math.nan,
                )
        last = curve[-1]
        return Outcome(
            None, last.env_steps + judging, best and best.window, best.score if best else math.nan
        )

    return run


def sb3_rule(curve: Curve) -> Outcome:
    from stable_baselines3.common.callbacks import StopTrainingOnNoModelImprovement

    class EvalCallbackStandIn:  # what StopTrainingOnNoModelImprovement reads of its parent
        best_mean_reward = -math.inf

    parent = EvalCallbackStandIn()
    stopper = StopTrainingOnNoModelImprovement(max_no_improvement_evals=3, min_evals=5)
    stopper.parent = parent
    best_window, evaluating = None, 0
    for p in curve:
        evaluating += p.judge_steps
        if p.judged > parent.best_mean_reward:  # EvalCallback keeps the new best model
            parent.best_mean_reward, best_window = p.judged, p.window
        stopper.n_calls += 1
        if not stopper._on_step():
            return Outcome(p.window, p.env_steps + evaluating, best_window, parent.best_mean_reward)
    return Outcome(None, curve[-1].env_steps + evaluating, best_window, parent.best_mean_reward)


def ray_rule(
    curve: Curve, std: float = 0.01, num_results: int = 4, grace_period: int = 4
) -> Outcome:
    window: deque[float] = deque(maxlen=num_results)
    for i, p in enumerate(curve, start=1):
        window.append(p.train)
        if i >= grace_period and len(window) == num_results and _std(window) < std:
            return Outcome(p.window, p.env_steps, p.window, p.judged)
    last = curve[-1]
    return Outcome(None, last.env_steps, last.window, last.judged)


def _std(values: deque[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # numpy's np.std


def replay(args: argparse.Namespace) -> None:
    from optix_core.cli.train import LOOP_DEFAULTS, SELECTION_SHARE

    old = {
        **LOOP_DEFAULTS,
        "backoff_factor": 2.0,
        "max_interval_episodes": 8,
        "relative_patience": 0.0,
        "unsolved_patience": 0.0,
    }
    curves = {
        name: [Point(*row) for row in rows]
        for name, rows in json.loads(Path(args.curves).read_text()).items()
    }

    def shipped(name: str) -> dict[str, Any]:
        return {**LOOP_DEFAULTS, **loop_hints(name), "solved_score": solved_score(name)}

    rules: dict[str, Callable[[str, Curve], Outcome]] = {
        "optix": lambda name, c: optix_rule(shipped(name), SELECTION_SHARE)(c),
        "optix + trend (training score)": lambda name, c: optix_rule(
            shipped(name), SELECTION_SHARE, trend_on="train", trend_gain=args.trend_gain
        )(c),
        "optix + trend (judged score)": lambda name, c: optix_rule(
            shipped(name), SELECTION_SHARE, trend_on="judged", trend_gain=args.trend_gain
        )(c),
        "optix 0.x": lambda name, c: optix_rule(
            {
                **old,
                "min_episodes_before_dormant": loop_hints(name).get(
                    "min_episodes_before_dormant", 0
                ),
            },
            None,
        )(c),
        "SB3": lambda name, c: sb3_rule(c),
        "Ray Tune": lambda name, c: ray_rule(c),
    }
    print(
        "| curve | rule | stopped after (window) | env steps | returns (window) | its judged score |"
    )
    print("|---|---|---|---|---|---|")
    for name, curve in curves.items():
        for rule, run in rules.items():
            o = run(name, curve)
            stop = "never" if o.stopped_at is None else str(o.stopped_at)
            more = "+" if o.stopped_at is None else ""
            print(
                f"| {name} | {rule} | {stop} | {o.env_steps:,}{more} | {o.returned} | {o.score:.1f} |"
            )


def loop_hints(name: str) -> dict[str, Any]:
    """The loop_hints of the curve's agent (``"CartPole-v1 ppo seed 0"``: torch's PPO
    on CartPole), as ``optix train`` reads them."""
    from optix_core import make_agent

    env_id, algo = name.split()[:2]
    return make_agent(algo, env_id, backend="torch", device="cpu").loop_hints


def solved_score(name: str) -> float | None:
    """The curve's environment's ``reward_threshold``, as ``optix train`` reads it."""
    from optix_core.registry import env_spec, reward_threshold

    return reward_threshold(env_spec(name.split()[0]))


def add_record_command(sub: Any, seeds: list[int]) -> None:
    """The ``record`` command's arguments (``run_recorder`` reads them)."""
    rec = sub.add_parser("record")
    rec.add_argument("env")
    rec.add_argument("--algo", default="ppo")
    rec.add_argument("--seeds", type=int, nargs="+", default=seeds)
    rec.add_argument("--max-steps", type=int, required=True)
    rec.add_argument("--out", required=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_record_command(sub, [0, 1, 2])
    rep = sub.add_parser("replay")
    rep.add_argument("curves")
    rep.add_argument(
        "--trend-gain",
        type=float,
        default=0.005,
        help="the trend hold's share of what the run learned, per doubling (default: 0.005)",
    )
    args = parser.parse_args()
    record(args) if args.command == "record" else replay(args)


if __name__ == "__main__":
    main()
