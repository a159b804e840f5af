"""Actors as local processes: weights through shared memory, trajectories through pipes.

Each actor owns a one-way pipe to the learner and a semaphore of credits: it
takes a credit before each trajectory and the learner gives one back for
each trajectory it receives, so an actor runs at most ``CREDITS`` trajectories
ahead of the learner (this bounds the policy lag). Nothing an actor holds
can block the learner: weights are read without a lock (``SharedWeights``),
and a pipe whose actor died reads as end-of-file, whereupon the actor is
replaced (a trajectory cut short by the death is never counted).

Actors ignore SIGINT (Ctrl-C reaches the whole process group; the learner
stops them itself) and exit on their own when the learner's process is gone.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from optix_distributed.actor import Actor, ActorFailed, ActorSpec, Trajectory
from optix_distributed.weights import SharedWeights

CREDITS = 2  # trajectories an actor may have ahead: one being received, one being collected
POLL_S = 0.2  # how often a waiting process looks whether the other side is still there
STOP_GRACE_S = 3.0  # how long a stopping actor may take before it is killed
# An actor that dies this many times in a row before delivering a trajectory dies of
# its own making (it cannot start, or crashes its process): replacing it cannot help.
MAX_DEATHS_IN_A_ROW = 3


def default_start_method() -> str:
    """``fork`` where there is one (Linux): actors start in a fraction of a second,
    and each sets torch to one thread first thing, as torch's DataLoader workers do,
    so an OpenMP pool the learner used is never touched in the child. ``spawn``
    elsewhere (macOS, Windows)."""
    return "fork" if sys.platform.startswith("linux") else "spawn"


@dataclass
class _Slot:
    process: Any
    conn: Connection
    credits: Any
    incarnation: int
    deaths: int = 0  # deaths in a row without a trajectory delivered


class LocalExecutor:
    """``n_actors`` actor processes started with ``start_method`` (``fork``,
    ``forkserver`` or ``spawn``; default ``default_start_method()``)."""

    name = "local"

    def __init__(self, n_actors: int, start_method: str | None = None) -> None:
        if n_actors < 1:
            raise ValueError(f"n_actors must be >= 1, got {n_actors}")
        method = start_method or default_start_method()
        if method not in mp.get_all_start_methods():
            raise ValueError(
                f"start method {method!r} is not available here; use one of "
                f"{mp.get_all_start_methods()}"
            )
        self.n_actors = n_actors
        self.start_method = method
        self.context = mp.get_context(method)
        if method == "forkserver":
            self.context.set_forkserver_preload(["optix_distributed.executors.local"])
        self.replaced = 0
        self._slots: list[_Slot] = []
        self._spec: ActorSpec | None = None

    def start(self, spec: ActorSpec, weights: np.ndarray) -> int:
        """Start every actor; ``weights`` are the first version, returned."""
        self._spec = spec
        self.weights = SharedWeights(len(weights), self.context)
        version = self.weights.publish(weights)
        self._stop = self.context.Event()
        self._slots = [self._launch(i, 0) for i in range(self.n_actors)]
        return version

    def publish(self, weights: np.ndarray) -> int:
        """Make ``weights`` the version actors pick up at their next trajectory."""
        return self.weights.publish(weights)

    def collect(self, actor_id: int) -> Trajectory:
        """Actor ``actor_id``'s next trajectory; a dead actor is replaced first."""
        while True:
            slot = self._slots[actor_id]
            if slot.conn.poll(POLL_S):
                try:
                    trajectory = slot.conn.recv()
                except (EOFError, OSError):  # died, perhaps mid-message: nothing counted
                    self._replace(actor_id)
                    continue
                if isinstance(trajectory, ActorFailed):
                    raise trajectory
                slot.credits.release()
                slot.deaths = 0
                return trajectory
            if not slot.process.is_alive():
                self._replace(actor_id)

    def close(self) -> None:
        """Stop every actor: asked first, then terminated, then killed."""
        if not self._slots:
            return
        self._stop.set()
        for slot in self._slots:
            slot.process.join(STOP_GRACE_S)
            if slot.process.is_alive():
                slot.process.terminate()
                slot.process.join(1.0)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
            slot.conn.close()
        self._slots = []

    def pids(self) -> list[int]:
        """The actor processes' ids (tests kill them)."""
        return [slot.process.pid for slot in self._slots]

    def _launch(self, actor_id: int, incarnation: int) -> _Slot:
        reader, writer = self.context.Pipe(duplex=False)
        credits = self.context.Semaphore(CREDITS)
        process = self.context.Process(
            target=run_actor,
            args=(self._spec, actor_id, incarnation, self.weights, writer, credits, self._stop),
            name=f"optix-actor-{actor_id}",
            daemon=True,
        )
        process.start()
        writer.close()  # the learner's copy: the pipe reads end-of-file once the actor is gone
        return _Slot(process, reader, credits, incarnation)

    def _replace(self, actor_id: int) -> None:
        old = self._slots[actor_id]
        old.process.join(0.1)
        if old.process.is_alive():  # alive but its pipe broke: make sure it is gone
            old.process.kill()
            old.process.join()
        old.conn.close()
        if old.deaths + 1 >= MAX_DEATHS_IN_A_ROW:
            raise ActorFailed(
                f"actor {actor_id} died {old.deaths + 1} times in a row before delivering "
                f"a trajectory (last exit code {old.process.exitcode})"
            )
        self.replaced += 1
        self._slots[actor_id] = self._launch(actor_id, old.incarnation + 1)
        self._slots[actor_id].deaths = old.deaths + 1


def run_actor(
    spec: ActorSpec,
    actor_id: int,
    incarnation: int,
    weights: SharedWeights,
    conn: Connection,
    credits: Any,
    stop: Any,
) -> None:
    """An actor process's life: take a credit, pick up the newest weights, collect,
    send; until stopped or the learner is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the learner's handler, if forked
    parent = os.getppid()  # the learner, or the forkserver that exits with it
    actor = None
    try:
        actor = Actor(spec, actor_id, incarnation)  # environments that fail to build say so
        while _take_credit(credits, stop, parent):
            update = weights.read(actor.version)
            if update is not None:
                actor.load(*update)
            conn.send(actor.collect())
    except (BrokenPipeError, ConnectionResetError):
        pass  # the learner closed its end: it has stopped
    except Exception as exc:  # the environment or the policy failed: the learner says why
        message = f"actor {actor_id} failed: {type(exc).__name__}: {exc}"
        conn.send(ActorFailed(message, traceback.format_exc()))
    finally:
        if actor is not None:
            actor.close()
        conn.close()


def _take_credit(credits: Any, stop: Any, parent: int) -> bool:
    while not stop.is_set():
        if credits.acquire(timeout=POLL_S):
            return True
        if os.getppid() != parent:  # orphaned: the learner was killed
            return False
    return False
