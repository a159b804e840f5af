"""Prioritized replay: optix's numpy PrioritizedReplayBuffer against cpprb's C++ one.

Both buffers hold the same 1,000,000 LunarLanderContinuous-sized transitions
(obs 8 float32, action 2 float32, reward, done, next obs), use α = 0.6 and
β = 0.4, and run the same loop: sample a batch of 256 with importance weights,
then write new priorities for those 256 indices. The two alternate repeat by
repeat so that machine noise falls on both; the median over repeats is
reported with the ratio optix / cpprb (lower is better; the target is <= 1.5).

    uv run --group bench python benchmarks/per_vs_cpprb.py [--repeats 7] [--iters 1000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from importlib.metadata import version

import numpy as np

from optix_core.buffers import PrioritizedReplayBuffer, transition_fields

CAPACITY = 1_000_000
BATCH = 256
ALPHA, BETA = 0.6, 0.4


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_data(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "observations": rng.standard_normal((n, 8), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.standard_normal(n, dtype=np.float32),
        "next_observations": rng.standard_normal((n, 8), dtype=np.float32),
        "terminated": rng.random(n) < 0.01,
    }


def build_optix(chunks: list[dict[str, np.ndarray]]) -> PrioritizedReplayBuffer:
    buf = PrioritizedReplayBuffer(
        CAPACITY, transition_fields((8,), (2,)), alpha=ALPHA, beta=BETA, seed=1
    )
    for chunk in chunks:
        buf.add(**chunk)
    return buf


def build_cpprb(chunks: list[dict[str, np.ndarray]]):
    import cpprb

    rb = cpprb.PrioritizedReplayBuffer(
        CAPACITY,
        {
            "obs": {"shape": 8},
            "act": {"shape": 2},
            "rew": {},
            "next_obs": {"shape": 8},
            "done": {},
        },
        alpha=ALPHA,
    )
    for c in chunks:
        rb.add(
            obs=c["observations"],
            act=c["actions"],
            rew=c["rewards"],
            next_obs=c["next_observations"],
            done=c["terminated"].astype(np.float32),
        )
    return rb


def run_optix(buf: PrioritizedReplayBuffer, new_priorities: np.ndarray) -> tuple[float, float]:
    t_sample = t_update = 0.0
    for p in new_priorities:
        t0 = time.perf_counter()
        batch = buf.sample(BATCH)
        t1 = time.perf_counter()
        buf.update_priorities(batch["indices"], p)
        t2 = time.perf_counter()
        t_sample += t1 - t0
        t_update += t2 - t1
    return t_sample, t_update


def run_cpprb(rb, new_priorities: np.ndarray) -> tuple[float, float]:
    t_sample = t_update = 0.0
    for p in new_priorities:
        t0 = time.perf_counter()
        batch = rb.sample(BATCH, beta=BETA)
        t1 = time.perf_counter()
        rb.update_priorities(batch["indexes"], p)
        t2 = time.perf_counter()
        t_sample += t1 - t0
        t_update += t2 - t1
    return t_sample, t_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=1000, help="batches per repeat")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    chunks = [make_data(rng, 100_000) for _ in range(CAPACITY // 100_000)]
    optix_buf = build_optix(chunks)
    cpprb_buf = build_cpprb(chunks)
    del chunks
    # Priorities as a learner would write them: |td error| + eps.
    new_p = np.abs(rng.standard_normal((args.iters, BATCH))) + 1e-3

    print(
        f"machine: {cpu_name()}, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print(f"numpy {np.__version__}, cpprb {version('cpprb')}")
    print(f"buffer {CAPACITY:,} transitions, batch {BATCH}, alpha {ALPHA}, beta {BETA}")
    print(f"{args.repeats} repeats x {args.iters} batches (sample + update_priorities)\n")

    run_optix(optix_buf, new_p[:100])  # warm caches and allocator
    run_cpprb(cpprb_buf, new_p[:100])
    rows = []
    for r in range(args.repeats):
        order = (("optix", run_optix, optix_buf), ("cpprb", run_cpprb, cpprb_buf))
        if r % 2:
            order = order[::-1]
        res = {name: fn(buf, new_p) for name, fn, buf in order}
        rows.append(res)
        o, c = (sum(res[n]) / args.iters * 1e6 for n in ("optix", "cpprb"))
        print(f"repeat {r}: optix {o:7.1f} us/batch  cpprb {c:7.1f} us/batch  ratio {o / c:.2f}")

    def med(name: str, part: int | None) -> float:
        vals = [sum(row[name]) if part is None else row[name][part] for row in rows]
        return statistics.median(vals) / args.iters * 1e6

    print("\nmedian over repeats, microseconds per batch of 256:")
    print(f"{'':10s}{'optix':>10s}{'cpprb':>10s}{'ratio':>8s}")
    for label, part in (("sample", 0), ("update", 1), ("total", None)):
        o, c = med("optix", part), med("cpprb", part)
        print(f"{label:10s}{o:10.1f}{c:10.1f}{o / c:8.2f}")
    ratio = med("optix", None) / med("cpprb", None)
    verdict = "meets" if ratio <= 1.5 else "misses"
    print(f"\noptix / cpprb = {ratio:.2f} ({verdict} the <= 1.5 target)")


if __name__ == "__main__":
    main()
