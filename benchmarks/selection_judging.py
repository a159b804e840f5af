"""Which episodes should judge checkpoints: fresh seeds at every window, or the same ones?

    uv run python benchmarks/selection_judging.py record Pendulum-v1 --algo td3 --seeds 0 1 \
        --max-steps 60000 --out benchmarks/results/judging-pendulum-td3.json
    uv run python benchmarks/selection_judging.py report benchmarks/results/judging-pendulum-td3.json \
        --from-steps 18000

``record`` trains with ``optix train`` as a user runs it, every window
evaluated and no stop before ``--max-steps``, and plays each window's policy
deterministically three times: 5 episodes seeded for that window
(``1_000_000 + 1000 * window``: checkpoint selection before 2026-12-04), 5
episodes on the seeds every window shares (``1_000_000``: selection since),
and 100 episodes on the report's seeds, the policy's "truth". No window is
made a candidate, so training is the run's own.

``report`` tabulates, over the windows from ``--from-steps`` on (the plateau,
where candidates compete): how each 5-episode judgment correlates with the
truth, the truth of the five windows each judgment ranks highest, and what
``optix train``'s loop (``stopping_rules.optix_rule``) stops at and hands back
under each judgment, with the score that judged that policy and its truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from stopping_rules import Point, add_record_command, loop_hints, optix_rule, run_recorder

RECORDER = """
import json, os, sys
import optix_core.cli.train as train
from optix_core import selection
from optix_core.evaluation import evaluate_policy

train.LOOP_DEFAULTS.update(base_interval=1, backoff_factor=1.0, max_interval_episodes=1,
                           plateau_threshold=10**9, dormant_threshold=10**9)

def judge_three_ways(self, agent, window, metrics, decision):
    def play(seed, episodes):
        result = evaluate_policy(agent, self.env, episodes, seed=seed, n_envs=self.n_envs,
                                 env_kwargs=self.env_kwargs)
        return {"returns": result.returns.tolist(), "env_steps": int(result.env_steps)}
    line = {
        "window": window,
        "env_steps": int(metrics.metrics.get("env_steps", 0)),
        "train": decision.raw,
        "fresh": play(self.seed + 1000 * window, 5),
        "shared": play(self.seed, 5),
        "truth": play(self.report_seed, 100)["returns"],
    }
    with open(os.environ["OPTIX_RECORDER_LOG"], "a") as out:
        out.write(json.dumps(line) + "\\n")
    return None

selection.EvaluationSelection.judge = judge_three_ways
from optix_core.cli import main
sys.exit(main(sys.argv[1:]))
"""

JUDGINGS = ("fresh", "shared")


def record(args: argparse.Namespace) -> None:
    out = Path(args.out)
    curves = json.loads(out.read_text()) if out.exists() else {}
    for seed in args.seeds:
        _, judgings = run_recorder(RECORDER, args, seed)
        curves[f"{args.env} {args.algo} seed {seed}"] = judgings
        out.write_text(json.dumps(curves))
    print(f"wrote {out}")


def report(args: argparse.Namespace) -> None:
    from optix_core.cli.train import LOOP_DEFAULTS, SELECTION_SHARE

    print(
        "| curve | judged on | corr. with truth | truth of its top 5 | stops (window, env steps) | hands back (window) | its judged score | its truth |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, lines in json.loads(Path(args.curves).read_text()).items():
        hints = loop_hints(name)
        truth = {line["window"]: float(np.mean(line["truth"])) for line in lines}
        plateau = [line for line in lines if line["env_steps"] >= args.from_steps]
        plateau_truth = np.array([truth[line["window"]] for line in plateau])
        for judging in JUDGINGS:
            judged = np.array([np.mean(line[judging]["returns"]) for line in plateau])
            corr = np.corrcoef(judged, plateau_truth)[0, 1]
            top = plateau_truth[np.argsort(-judged, kind="stable")[:5]]
            curve = [
                Point(
                    line["window"],
                    line["env_steps"],
                    line["train"],
                    float(np.mean(line[judging]["returns"])),
                    line[judging]["env_steps"],
                    line[judging]["returns"],
                )
                for line in lines
            ]
            rule = optix_rule(
                {**LOOP_DEFAULTS, **hints}, SELECTION_SHARE, paired=judging == "shared"
            )
            o = rule(curve)
            stop = "never" if o.stopped_at is None else f"{o.stopped_at}, {o.env_steps:,}"
            print(
                f"| {name} | {judging} seeds | {corr:.2f} | {', '.join(f'{t:.1f}' for t in top)} "
                f"| {stop} | {o.returned} | {o.score:.1f} | {truth[o.returned]:.1f} |"
            )
        print(
            f"| {name} | (truth over {len(plateau)} windows: mean {plateau_truth.mean():.1f}, "
            f"sd {plateau_truth.std():.1f}, best {plateau_truth.max():.1f}) | | | | | | |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_record_command(sub, [0, 1])
    rep = sub.add_parser("report")
    rep.add_argument("curves")
    rep.add_argument("--from-steps", type=int, default=0, help="the plateau's first env step")
    args = parser.parse_args()
    record(args) if args.command == "record" else report(args)


if __name__ == "__main__":
    main()
