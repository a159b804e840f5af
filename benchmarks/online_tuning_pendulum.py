"""Does online tuning rescue a run started from poor settings?

Runs `optix train Pendulum-v1 --algo ppo` from a deliberately poor learning
rate, with and without `--tune` (SPSA over PPO's search space), on the same
seeds, and tabulates the final deterministic evaluation (20 fresh episodes)
and the hyperparameters the run ended with. Usage:

    uv run python benchmarks/online_tuning_pendulum.py --seeds 0 1 2 --hp learning_rate=1e-5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(seed: int, tune: bool, hp: list[str], root: Path, max_steps: int) -> dict:
    out = root / f"{'tune' if tune else 'fixed'}-{seed}"
    command = ["train", "Pendulum-v1", "--algo", "ppo", "--seed", str(seed), "--run-dir", str(out)]
    command += [f"--hp={pair}" for pair in hp] + ["--max-steps", str(max_steps)]
    command += ["--tune"] if tune else []
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "optix_core.cli", *command], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{command} failed:\n{result.stderr}")
    (run_dir,) = out.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    latest = max((run_dir / "checkpoints").glob("latest-*"), key=lambda p: p.name)
    final_hp = json.loads((latest / "manifest.json").read_text())["hyperparams"]["params"]
    return {
        "final": report["final_eval"]["mean"],
        "env_steps": report["env_steps"],
        "learning_rate": final_hp.get("learning_rate"),
        "wall": time.monotonic() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--max-steps", type=int, default=300_000)
    parser.add_argument("--out", help="keep the run directories here")
    args = parser.parse_args()
    hp = args.hp or ["learning_rate=1e-5"]
    root = Path(args.out or tempfile.mkdtemp(prefix="optix-tune-pendulum-"))
    print(f"Pendulum-v1, PPO from {' '.join(hp)}, at most {args.max_steps:,} env steps per run")
    print("seed  mode   final_eval  env_steps  final learning_rate  wall")
    for seed in args.seeds:
        for tune in (False, True):
            r = train(seed, tune, hp, root, args.max_steps)
            print(
                f"{seed:>4}  {'tune' if tune else 'fixed':<5}  {r['final']:>10.1f}  "
                f"{r['env_steps']:>9,}  {r['learning_rate']:>19.3g}  {r['wall']:>4.0f} s",
                flush=True,
            )
    print(f"run directories: {root}")


if __name__ == "__main__":
    main()
