"""How long `optix list` and `optix plot --help` take with every workspace package
installed (targets: < 0.5 s for `optix list`, < 0.3 s for both since optix-callbacks).

    uv run python benchmarks/cli_startup.py [--repeats 20]

Runs the installed `optix` entry point in fresh processes, reports the median
and the spread, and checks that no framework (torch, tensorflow, jax) was imported.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    optix = shutil.which("optix")
    if optix is None:
        sys.exit("the optix command is not on PATH: run this with `uv run`")
    for words in (["plot", "--help"], ["list"]):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([optix, *words], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        times.sort()
        print(
            f"optix {' '.join(words)}: median {statistics.median(times) * 1000:.0f} ms, "
            f"min {times[0] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms over {args.repeats} runs"
        )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from optix_core.cli import main; main(['list']); "
            "print([m for m in ('torch', 'tensorflow', 'jax', 'numpy') if m in sys.modules], file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    print(
        f"modules imported among torch/tensorflow/jax/numpy: {probe.stderr.strip().splitlines()[-1]}"
    )
    start = time.perf_counter()
    for _ in range(args.repeats):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(
        f"bare python start-up for comparison: {(time.perf_counter() - start) / args.repeats * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
