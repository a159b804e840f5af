"""How many threads each worker process's frameworks may use.

Two torch runs on a 2-core machine, each with torch's default of one thread
per core, ran CartPole PPO 6x slower than one. So each spawned worker of a
sweep gets its share of the cores, ``cores // n_workers`` (at least 1): the
variables below are set in the environment it starts with, before it
imports anything, and torch, when it is already imported in the worker,
gets ``torch.set_num_threads``. ``threads_per_worker=N`` (``optix tune
--threads-per-worker N``) sets the count; ``0`` leaves every framework its
own default; an ``OMP_NUM_THREADS`` already in the environment is respected
when no count is given.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# torch (intra-op), NumPy's BLAS (OpenBLAS, MKL), TensorFlow (intra-op and inter-op).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(requested: int | None, n_workers: int) -> int | None:
    """The thread count for each of ``n_workers`` workers; None leaves the defaults.

    ``requested`` None: the cores shared out when several workers run side by
    side, unless the user set ``OMP_NUM_THREADS``; 0: the frameworks' defaults.
    """
    if requested is not None:
        return requested or None
    if n_workers == 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, available_cores() // n_workers)


@contextmanager
def thread_environment(threads: int | None) -> Iterator[None]:
    """The thread variables set to ``threads`` for processes started inside the block."""
    if threads is None:
        yield
        return
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def limit_threads(threads: int | None) -> None:
    """In a worker: the thread variables for what is imported later, and torch's pool now.

    Frameworks that are not imported are never imported here.
    """
    if threads is None:
        return
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
