"""Memory of full replay buffers against the raw bytes of what they hold.

Two cases, each buffer built, filled and measured three ways:

- nbytes: the bytes of every array the buffer allocated (the prioritized one
  includes its sum tree; cpprb exposes no such count);
- tracemalloc: memory allocated while building and filling it and still held
  afterwards (numpy reports its data buffers to tracemalloc);
- RSS: growth of the process's resident set.

1. Vectors: 1,000,000 LunarLanderContinuous transitions (obs 8 float32,
   action 2 float32, reward float32, done bool, next obs 8 float32: 77 bytes,
   77 MB raw), filled by vector inserts of 10,000. Target: at most 1.1x raw.
2. Pixels: 100,000 DQN transitions of 84x84 uint8 frames, fed as the loop
   feeds them: windows of 256 steps of one env, episodes ending with
   probability 1/200 per step, 120,320 steps so every ring wraps. Raw is one
   copy of each transition's observation (705.6 MB). Target (issue 11): at
   most 1.1x. The plain ``ReplayBuffer`` stores ``observations`` and
   ``next_observations`` (2x); ``CompactReplayBuffer`` stores each frame once.
   When cpprb is importable (the workspace's bench group) its
   ``ReplayBuffer(next_of="obs")`` gets the same stream, one ``add`` per
   episode segment and ``on_episode_end()`` after each end, as it requires.
   A third part builds (without filling) buffers of 84x84x4 frame stacks,
   where cpprb's ``stack_compress`` stores one frame per step and the compact
   buffer still stores whole stacks.

    uv run python benchmarks/replay_memory.py                 # without cpprb
    uv run --group bench python benchmarks/replay_memory.py   # with cpprb
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from optix_core.buffers import (
    CompactPrioritizedReplayBuffer,
    CompactReplayBuffer,
    PrioritizedReplayBuffer,
    ReplayBuffer,
    transition_fields,
    window_transitions,
)
from optix_core.types import EpisodeData

try:
    import cpprb
except ImportError:  # not in the default dependency groups
    cpprb = None

VECTOR_CAPACITY = 1_000_000
CHUNK = 10_000
RAW_BYTES_PER_TRANSITION = 8 * 4 + 2 * 4 + 4 + 1 + 8 * 4  # obs, action, reward, done, next obs

PIXEL_CAPACITY = 100_000
FRAME = (84, 84)
WINDOW = 256
PIXEL_STEPS = 470 * WINDOW  # 120,320: every ring wraps
END_PROBABILITY = 1 / 200
GAMMA = 0.99


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(label: str, build: Callable[[], Any], fill: Callable[[Any], None], raw: int) -> None:
    """Print a filled buffer's nbytes, tracemalloc-held bytes and RSS growth against ``raw``."""
    # RSS first, without tracemalloc (whose own bookkeeping would count).
    gc.collect()
    rss0 = rss_bytes()
    buf = build()
    fill(buf)
    gc.collect()
    rss = rss_bytes() - rss0
    nbytes = getattr(buf, "nbytes", None)
    del buf
    gc.collect()
    tracemalloc.start()
    buf = build()
    fill(buf)
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del buf
    print(f"{label}")
    for name, value in (("nbytes", nbytes), ("tracemalloc", traced), ("RSS growth", rss)):
        if value is None:
            print(f"  {name:12s}      n/a")
        else:
            print(f"  {name:12s} {value / 1e6:8.1f} MB   {value / raw:5.3f} x raw")
    worst = max(v for v in (nbytes, traced, rss) if v is not None) / raw
    print(
        f"  worst ratio {worst:.3f} ({'meets' if worst <= 1.1 else 'misses'} the <= 1.1 target)\n"
    )


# -- 1. vectors ------------------------------------------------------------------------


def vectors() -> None:
    rng = np.random.default_rng(0)
    chunk = {
        "observations": rng.standard_normal((CHUNK, 8), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (CHUNK, 2)).astype(np.float32),
        "rewards": rng.standard_normal(CHUNK, dtype=np.float32),
        "next_observations": rng.standard_normal((CHUNK, 8), dtype=np.float32),
        "terminated": rng.random(CHUNK) < 0.01,
    }
    fields = transition_fields((8,), (2,))
    raw = VECTOR_CAPACITY * RAW_BYTES_PER_TRANSITION
    print(
        f"== vectors: {VECTOR_CAPACITY:,} transitions x {RAW_BYTES_PER_TRANSITION} bytes "
        f"= {raw / 1e6:.1f} MB raw\n"
    )

    def fill(buf: ReplayBuffer) -> None:
        for _ in range(VECTOR_CAPACITY // CHUNK):
            buf.add(**chunk)
        assert len(buf) == VECTOR_CAPACITY

    measure("ReplayBuffer", lambda: ReplayBuffer(VECTOR_CAPACITY, fields), fill, raw)
    measure(
        "PrioritizedReplayBuffer",
        lambda: PrioritizedReplayBuffer(VECTOR_CAPACITY, fields),
        fill,
        raw,
    )


# -- 2. pixels -------------------------------------------------------------------------


def pixel_windows() -> Iterator[EpisodeData]:
    """The DQN stream, the same at every call: frames from a pool, each window continuing the last.

    Generated as it is consumed, so the stream's own frames never add to what is measured.
    """
    rng = np.random.default_rng(1)
    pool = rng.integers(0, 256, (1009, *FRAME), dtype=np.uint8)
    frame = 0  # id of the env's current frame; pool[id % len(pool)] is its picture
    for _ in range(PIXEL_STEPS // WINDOW):
        ends = rng.random(WINDOW) < END_PROBABILITY
        # each step moves on one frame, an episode end two (its final frame, then the reset one)
        obs_ids = frame + np.concatenate([[0], np.cumsum(1 + ends[:-1])])
        frame = int(obs_ids[-1] + 1 + ends[-1])
        final = np.zeros((WINDOW, 1, *FRAME), np.uint8)
        final[ends, 0] = pool[(obs_ids[ends] + 1) % len(pool)]
        yield EpisodeData(
            observations=pool[obs_ids % len(pool)][:, None],
            actions=rng.integers(0, 6, (WINDOW, 1)),
            rewards=rng.standard_normal((WINDOW, 1)).astype(np.float32),
            terminated=ends[:, None],
            truncated=np.zeros((WINDOW, 1), bool),
            next_observations=pool[[frame % len(pool)]],
            final_observations=final,
            policy_info={"discounts": np.full((WINDOW, 1), GAMMA, np.float32)},
        )


def fill_optix(buf: ReplayBuffer) -> None:
    for data in pixel_windows():
        buf.add_window(data)
    assert buf.full


def fill_cpprb(rb: Any) -> None:
    """cpprb's next_of needs each episode's steps added before ``on_episode_end()``."""
    for data in pixel_windows():
        steps = window_transitions(data)
        ends = np.flatnonzero(steps["terminated"][:, 0]) + 1
        for seg in np.split(np.arange(WINDOW), ends):
            if seg.size == 0:
                continue
            rb.add(
                obs=steps["observations"][seg, 0],
                act=steps["actions"][seg, 0],
                rew=steps["rewards"][seg, 0],
                next_obs=steps["next_observations"][seg, 0],
                done=steps["terminated"][seg, 0],
                discount=np.full(seg.size, GAMMA, np.float32),
            )
            if steps["terminated"][seg[-1], 0]:
                rb.on_episode_end()
    assert rb.get_stored_size() == PIXEL_CAPACITY


def cpprb_env_dict(obs_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    return {
        "obs": {"shape": obs_shape, "dtype": np.uint8},
        "act": {"dtype": np.int64},
        "rew": {"dtype": np.float32},
        "done": {"dtype": np.bool_},
        "discount": {"dtype": np.float32},
    }


def pixels() -> None:
    raw = PIXEL_CAPACITY * int(np.prod(FRAME))
    print(
        f"== pixels: {PIXEL_CAPACITY:,} transitions of {FRAME[0]}x{FRAME[1]} uint8 frames, "
        f"one copy = {raw / 1e6:.1f} MB raw\n"
    )
    fields = transition_fields(
        FRAME, (), observation_dtype=np.uint8, action_dtype=np.int64, discounts=True
    )
    for cls in (ReplayBuffer, CompactReplayBuffer, CompactPrioritizedReplayBuffer):
        measure(cls.__name__, lambda cls=cls: cls(PIXEL_CAPACITY, fields), fill_optix, raw)
    compact = CompactReplayBuffer(PIXEL_CAPACITY, fields)
    start = compact.observation_capacity
    fill_optix(compact)
    print(
        f"CompactReplayBuffer's ring: {compact.observation_capacity:,} frames "
        f"({'as built' if compact.observation_capacity == start else f'grown from {start:,}'}); "
        f"{compact.observations_written:,} frames written for {PIXEL_STEPS:,} steps\n"
    )
    del compact
    if cpprb is None:
        print("cpprb is not importable: run with `uv run --group bench` to compare it\n")
        return
    measure(
        'cpprb ReplayBuffer(next_of="obs")',
        lambda: cpprb.ReplayBuffer(PIXEL_CAPACITY, cpprb_env_dict(FRAME), next_of="obs"),
        fill_cpprb,
        raw,
    )


def allocated(build: Callable[[], Any]) -> int:
    """Bytes a buffer holds once built, before anything is added."""
    gc.collect()
    tracemalloc.start()
    buf = build()
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del buf
    return held


def frame_stacks() -> None:
    stack = (*FRAME, 4)
    raw = PIXEL_CAPACITY * int(np.prod(stack))
    print(
        f"== frame stacks, built only: {PIXEL_CAPACITY:,} observations of "
        f"{'x'.join(map(str, stack))} uint8, one copy = {raw / 1e6:.1f} MB\n"
    )
    fields = transition_fields(
        stack, (), observation_dtype=np.uint8, action_dtype=np.int64, discounts=True
    )
    builds = {
        "ReplayBuffer": lambda: ReplayBuffer(PIXEL_CAPACITY, fields),
        "CompactReplayBuffer": lambda: CompactReplayBuffer(PIXEL_CAPACITY, fields),
    }
    if cpprb is not None:
        builds['cpprb next_of="obs", stack_compress="obs"'] = lambda: cpprb.ReplayBuffer(
            PIXEL_CAPACITY, cpprb_env_dict(stack), next_of="obs", stack_compress="obs"
        )
    for label, build in builds.items():
        held = allocated(build)
        print(f"  {label:44s} {held / 1e6:8.1f} MB   {held / raw:5.3f} x one copy")
    print()


def main() -> None:
    vectors()
    pixels()
    frame_stacks()


if __name__ == "__main__":
    main()
