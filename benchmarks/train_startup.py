"""How long `optix train` takes to begin: from launching the command to its first
`[loop]` line (the first window collected and learned from), for PPO and for
IMPALA with 2 local actors (optix-distributed's target: actors stepping within 5 s).

    uv run python benchmarks/train_startup.py [--repeats 5]

Each run is a fresh process (`uv run` not included: the installed `optix`
entry point is launched directly), with a cold start of torch each time but
warm file-system caches after the first. The first window's own collection
is part of the time, so this is an upper bound on when stepping begins.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "ppo": ["CartPole-v1", "--algo", "ppo"],
    "impala, 2 actors": ["CartPole-v1", "--algo", "impala", "--actors", "2"],
}


def first_line_seconds(optix: str, words: list[str], run_dir: str) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [optix, "train", *words, "--seed", "0", "--max-windows", "1", "--run-dir", run_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[loop]"):
            elapsed = time.perf_counter() - start
            break
    else:
        raise RuntimeError(f"optix train {' '.join(words)} printed no [loop] line")
    proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    optix = shutil.which("optix")
    if optix is None:
        sys.exit("the optix command is not on PATH: run this with `uv run`")
    with tempfile.TemporaryDirectory() as run_dir:
        for name, words in COMMANDS.items():
            times = [first_line_seconds(optix, words, run_dir) for _ in range(args.repeats)]
            print(
                f"{name:>18}: first window after {statistics.median(times):.2f} s median "
                f"(min {min(times):.2f}, max {max(times):.2f}, {args.repeats} runs)"
            )


if __name__ == "__main__":
    main()
