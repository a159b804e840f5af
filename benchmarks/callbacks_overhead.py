"""What watching a run costs: PPO on CartPole-v1 with wandb, TensorBoard and the
Rich dashboard all on, against the same run with none, side by side.

    uv run python benchmarks/callbacks_overhead.py [--seeds 0 1 2] [--windows 60] [--repeats 2]

Each seed trains PPO (optix-torch's defaults for CartPole-v1: 8 environments
x 256 steps a window) for ``--windows`` windows, with the three callbacks and
without, ``--repeats`` times each in the order with, without, without, with,
... so that a machine's drift favours neither; a seed's ratio is that of the
medians. The same seed trains the same way on both sides. Both sides evaluate
and checkpoint as ``optix train`` does (the loop's defaults, selection
episodes, snapshots into a temporary directory). The callbacks do their real
work: wandb in offline mode writes its run under a temporary directory (its
``wandb-core`` service is a process of its own, on the same 2 cores),
TensorBoard writes event files, and the dashboard redraws twice a second into
a terminal (``force_terminal``) whose output goes to /dev/null. One torch thread.

Two rates per run, env steps per second of ``loop.run()``:
- whole run: from ``run()`` to its return, so wandb's ``init`` (about 0.8 s
  here, once per run) counts;
- steady: from the moment every callback has started (``on_loop_start``) to
  the end, what the callbacks cost while the run trains.
The agent's construction and wandb's import happen before either clock.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from optix_core import LoopCallback, RLOptimizer, make_agent
from optix_core.cli.train import LOOP_DEFAULTS, SELECTION_EPISODES
from optix_core.registry import registered_agent, window_pipeline
from optix_core.selection import EvaluationSelection

ENV = "CartPole-v1"


class Started(LoopCallback):
    """Last in the list: notes when every other callback has started."""

    def on_loop_start(self, loop: Any) -> None:
        self.time, self.steps = time.perf_counter(), loop.pipeline.env_steps


def watchers(run_dir: Path) -> list[LoopCallback]:
    from rich.console import Console

    from optix_callbacks import RichDashboardCallback, TensorBoardCallback, WandbCallback

    terminal = Console(file=open(os.devnull, "w"), force_terminal=True, width=120)  # noqa: SIM115
    return [
        WandbCallback("optix-bench", run_dir=run_dir, mode="offline"),
        TensorBoardCallback(run_dir=run_dir),
        RichDashboardCallback(refresh_rate=2, console=terminal),
    ]


def rates(seed: int, windows: int, watched: bool) -> tuple[float, float]:
    """Env steps per second over the whole run and once every callback has started."""
    _, rollout = registered_agent("ppo", "torch").settings(ENV)
    with tempfile.TemporaryDirectory() as directory:
        run_dir, started = Path(directory), Started()
        loop = RLOptimizer(
            make_agent("ppo", ENV, seed=seed),
            window_pipeline(ENV, rollout["n_envs"], rollout["window_size"], seed),
            checkpoint_dir=run_dir / "checkpoints",
            selection=EvaluationSelection(ENV, SELECTION_EPISODES),
            max_episodes=windows,
            callbacks=[*(watchers(run_dir) if watched else []), started],
            **LOOP_DEFAULTS,
        )
        loop.setup()
        start = time.perf_counter()
        steps = loop.run().env_steps
        end = time.perf_counter()
        return steps / (end - start), (steps - started.steps) / (end - started.time)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.update(WANDB_SILENT="true", WANDB_CONSOLE="off", WANDB__DISABLE_STATS="true")
    import wandb  # once, before any clock: a run pays it at start-up

    print(
        f"PPO {ENV}, {args.windows} windows per run, {args.repeats} runs a side per seed, "
        f"one torch thread, load {os.getloadavg()[0]:.1f}"
    )
    whole, steady = [], []
    for i, seed in enumerate(args.seeds):
        runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for r in range(args.repeats):
            for watched in (True, False) if (i + r) % 2 == 0 else (False, True):
                runs[watched].append(rates(seed, args.windows, watched))
        on = [statistics.median(x) for x in zip(*runs[True], strict=True)]
        off = [statistics.median(x) for x in zip(*runs[False], strict=True)]
        whole.append(on[0] / off[0])
        steady.append(on[1] / off[1])
        print(
            f"seed {seed}: whole run {on[0]:,.0f} vs {off[0]:,.0f} steps/s ({whole[-1]:.3f}x); "
            f"steady {on[1]:,.0f} vs {off[1]:,.0f} steps/s ({steady[-1]:.3f}x)",
            flush=True,
        )
    wandb.teardown()
    print(
        f"with / without callbacks, median over seeds: whole run {statistics.median(whole):.3f}x, "
        f"steady {statistics.median(steady):.3f}x (target >= 0.95)"
    )


if __name__ == "__main__":
    main()
