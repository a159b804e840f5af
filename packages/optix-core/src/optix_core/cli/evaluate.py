"""``optix eval RUN``: the run's best checkpoint on fresh deterministic episodes.

It only reads the run directory: evaluating a run that is still training
neither locks nor deletes anything of it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from optix_core.cli.args import build_agent, check_at_least
from optix_core.cli.errors import UsageError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a run's best checkpoint")
    p.add_argument("run", help="a run directory written by optix train")
    p.add_argument(
        "--episodes", type=int, default=20, metavar="N", help="episodes to play (default: 20)"
    )
    p.add_argument(
        "--seed", type=int, help="seed of the first episode (default: the report's seeds)"
    )
    p.add_argument("--device", help="where to run the policy (default: the run's device)")
    p.add_argument(
        "--json", action="store_true", help="print the result as one JSON object (for scripts)"
    )
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from optix_core.checkpoints import CheckpointRegistry
    from optix_core.evaluation import evaluate_policy
    from optix_core.runs import CHECKPOINTS, RunError, TrainConfig, resolve_run_dir
    from optix_core.selection import REPORT_SEED

    check_at_least("--episodes", args.episodes, 1)
    check_at_least("--seed", args.seed, 0)
    try:
        run_dir = resolve_run_dir(args.run)
        config = TrainConfig.load(run_dir)
    except RunError as exc:
        raise UsageError(str(exc)) from None
    device = args.device or config.device
    agent = build_agent(
        config.algo,
        config.env_id,
        config.backend,
        config.hyperparams,
        device,
        config.seed,
        config.network,
        config.env_kwargs,
    )
    manifest = CheckpointRegistry(run_dir / CHECKPOINTS).restore(agent, kind="best")
    if manifest is None:
        raise UsageError(
            f"{run_dir} has no best checkpoint to evaluate yet: no window of it was scored "
            "(none ended an episode once the agent learned); optix train --resume continues it"
        )
    seed = REPORT_SEED if args.seed is None else args.seed
    result = evaluate_policy(
        agent, config.env_id, episodes=args.episodes, seed=seed, env_kwargs=config.env_kwargs
    )
    if args.json:
        snapshot = {"snapshot": manifest["snapshot_id"], "window": manifest["episode_id"]}
        print(json.dumps({**snapshot, "seed": seed, **result.to_dict()}))
        return 0
    print(
        f"{config.env_id} {config.algo} ({config.backend}) {manifest['snapshot_id']} "
        f"(window {manifest['episode_id']}): {result}"
    )
    return 0
