"""Memory of a full 1,000,000-transition replay buffer against the raw bytes of its transitions.

A LunarLanderContinuous transition is obs 8 float32, action 2 float32,
reward float32, done bool and next obs 8 float32: 77 bytes, so 77 MB for a
million. Each buffer is built and filled (vector inserts of 10,000) and
measured three ways:

- nbytes: the bytes of every array the buffer allocated (the prioritized one
  includes its sum tree);
- tracemalloc: memory allocated while building and filling it and still held
  afterwards (numpy reports its data buffers to tracemalloc);
- RSS: growth of the process's resident set.

The target is at most 1.1x the raw bytes.

    uv run python benchmarks/replay_memory.py
"""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np

from optix_core.buffers import PrioritizedReplayBuffer, ReplayBuffer, transition_fields

CAPACITY = 1_000_000
CHUNK = 10_000
RAW_BYTES_PER_TRANSITION = 8 * 4 + 2 * 4 + 4 + 1 + 8 * 4  # obs, action, reward, done, next obs


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill(build, chunk: dict[str, np.ndarray]):
    buf = build()
    for _ in range(CAPACITY // CHUNK):
        buf.add(**chunk)
    assert len(buf) == CAPACITY
    return buf


def measure(label: str, build, chunk: dict[str, np.ndarray]) -> None:
    # RSS first, without tracemalloc (whose own bookkeeping would count).
    gc.collect()
    rss0 = rss_bytes()
    buf = fill(build, chunk)
    gc.collect()
    rss = rss_bytes() - rss0
    nbytes = buf.nbytes
    del buf
    gc.collect()
    tracemalloc.start()
    buf = fill(build, chunk)
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del buf
    raw = CAPACITY * RAW_BYTES_PER_TRANSITION
    print(f"{label}")
    for name, value in (("nbytes", nbytes), ("tracemalloc", traced), ("RSS growth", rss)):
        print(f"  {name:12s} {value / 1e6:8.1f} MB   {value / raw:5.3f} x raw")
    worst = max(nbytes, traced, rss) / raw
    print(
        f"  worst ratio {worst:.3f} ({'meets' if worst <= 1.1 else 'misses'} the <= 1.1 target)\n"
    )


def main() -> None:
    rng = np.random.default_rng(0)
    chunk = {
        "observations": rng.standard_normal((CHUNK, 8), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (CHUNK, 2)).astype(np.float32),
        "rewards": rng.standard_normal(CHUNK, dtype=np.float32),
        "next_observations": rng.standard_normal((CHUNK, 8), dtype=np.float32),
        "terminated": rng.random(CHUNK) < 0.01,
    }
    fields = transition_fields((8,), (2,))
    raw = CAPACITY * RAW_BYTES_PER_TRANSITION
    print(f"{CAPACITY:,} transitions x {RAW_BYTES_PER_TRANSITION} bytes = {raw / 1e6:.1f} MB raw\n")
    measure("ReplayBuffer", lambda: ReplayBuffer(CAPACITY, fields), chunk)
    measure("PrioritizedReplayBuffer", lambda: PrioritizedReplayBuffer(CAPACITY, fields), chunk)


if __name__ == "__main__":
    main()
