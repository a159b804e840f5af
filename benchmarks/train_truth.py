"""Does `optix train` hand back what it trained? Runs it per seed and tabulates.

For each seed: the best training return the run reported (the best of its
evaluations' raw scores), the checkpoint it chose (window, selection score),
and the final deterministic evaluation on fresh seeds, with its standard
error. Usage:

    uv run python benchmarks/train_truth.py CartPole-v1 --seeds 0 1 2 3 4
    uv run python benchmarks/train_truth.py Acrobot-v1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(env_id: str, seed: int, root: Path, extra: list[str]) -> dict:
    start = time.monotonic()
    command = ["train", env_id, "--seed", str(seed), "--run-dir", str(root), *extra]
    result = subprocess.run(
        [sys.executable, "-m", "optix_core.cli", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{result.stderr}")
    (run_dir,) = [p for p in root.iterdir() if p.is_dir() and "-seed" not in p.name]
    report = json.loads((run_dir / "report.json").read_text())
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    run_dir.rename(root / f"{run_dir.name}-seed{seed}")
    final = report["final_eval"]
    return {
        "seed": seed,
        "windows": report["windows"],
        "env_steps": report["env_steps"],
        "selection_env_steps": report["selection_env_steps"],
        "best_train": max(line["raw"] for line in lines if line["raw"] is not None),
        "best_window": report["best_window"],
        "best_score": report["best_score"],
        "final_mean": final["mean"],
        "final_se": final["std"] / math.sqrt(final["episodes"]),
        "evaluations": len(lines),
        "selection_scores": sum(line["selection"] is not None for line in lines),
        "wall": time.monotonic() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", help="keep the run directories here (default: a temp dir)")
    args, extra = parser.parse_known_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="optix-truth-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        "seed  windows  env_steps  +selection  best_train  best(window)  "
        "final_eval ± se  selection_lines/evals  wall"
    )
    for seed in args.seeds:
        r = run(args.env, seed, root, extra)
        print(
            f"{r['seed']:>4}  {r['windows']:>7}  {r['env_steps']:>9,}  {r['selection_env_steps']:>10,}"
            f"  {r['best_train']:>10.1f}  {r['best_score']:>7.1f} ({r['best_window']:>3})"
            f"  {r['final_mean']:>8.1f} ± {r['final_se']:<5.1f}"
            f"  {r['selection_scores']:>3}/{r['evaluations']:<3}  {r['wall']:>5.0f} s",
            flush=True,
        )
    print(f"run directories: {root}")


if __name__ == "__main__":
    main()
