"""Actors as Ray actors: weights through the object store, trajectories as task results.

The learner puts each published version of the weights into Ray's object store
once (``ray.put``) and hands every actor the same reference: a node fetches a
version once however many of its actors use it, and the learner never sends
weights to actors one by one. Each actor has one ``collect`` task in flight at
all times, so it collects its next trajectory while the learner learns from the
last one (as the local executor's credits allow); the task carries the newest
version, which the actor loads before collecting if it is newer than its own.

An actor whose process or node died is replaced by a new Ray actor, its next
incarnation (fresh seeds; the pipeline starts its columns' episodes afresh),
and counted; the trajectory it was collecting is lost and never counted. An
actor whose environments or policy raised is not replaced (its successor would
fail alike): the learner raises ``ActorFailed`` with the actor's message.

Actors are owned by the learner's process: Ray stops them if it exits, and
``close`` kills them.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import ray
    from ray import exceptions as ray_errors
except ModuleNotFoundError as exc:
    if exc.name != "ray":
        raise
    raise ModuleNotFoundError(
        "executor='ray' needs Ray: pip install 'optix-distributed[ray]'", name="ray"
    ) from exc

from optix_distributed.actor import Actor, ActorFailed, ActorSpec, Trajectory

STOP_GRACE_S = 5.0  # how long close waits for Ray to confirm that killed actors are gone
CONNECT_TIMEOUT_S = 5.0  # how long a cluster's address may take to answer before joining
# An actor that dies this many times in a row without delivering a trajectory dies of
# its own making (it cannot start, or crashes the process): replacing it again won't help.
MAX_DEATHS_IN_A_ROW = 3

log = logging.getLogger(__name__)


@dataclass
class _LocalRay:
    """The Ray instance executors started in this process: every executor that finds it
    running uses it too, and the last one to close shuts it down."""

    generation: int = 0  # which instance: one shut down from outside is not the next one
    users: int = 0


_LOCAL = _LocalRay()


class _ActorHost:
    """The object living in a Ray actor's process: one ``Actor`` (or why it could not be
    built, reported at its first trajectory rather than as a creation failure, which
    Ray would only report as the actor's death)."""

    def __init__(self, spec: ActorSpec, actor_id: int, incarnation: int) -> None:
        self.actor_id = actor_id
        self.actor: Actor | None = None
        self.failure: ActorFailed | None = None
        try:
            self.actor = Actor(spec, actor_id, incarnation)
        except Exception as exc:
            self.failure = _failure(actor_id, exc)

    def pid(self) -> int:
        return os.getpid()

    def collect(self, version: int, weights: np.ndarray) -> Trajectory:
        if self.failure is not None:
            raise self.failure
        assert self.actor is not None
        try:
            if version > self.actor.version:
                # A copy: arrays read from the object store are read-only views of it.
                self.actor.load(version, np.array(weights))
            return self.actor.collect()
        except Exception as exc:
            raise _failure(self.actor_id, exc) from None


def _failure(actor_id: int, exc: Exception) -> ActorFailed:
    message = f"actor {actor_id} failed: {type(exc).__name__}: {exc}"
    return ActorFailed(message, traceback.format_exc())


@dataclass
class _Slot:
    handle: Any
    incarnation: int
    pid: Any  # ObjectRef of the process id, asked for at creation
    pending: Any  # ObjectRef of the trajectory being collected, or None
    deaths: int  # deaths in a row without a trajectory delivered


class RayExecutor:
    """``n_actors`` Ray actors, on the cluster at ``address``.

    ``address``:

    - ``None``: a private local Ray instance, started on demand (no dashboard,
      actors' output not forwarded) and shut down by ``close``; ``RAY_ADDRESS``
      is not consulted.
    - ``"auto"``: the running cluster (``RAY_ADDRESS``, or the last ``ray start``
      on this machine) if one answers, else a local instance as for ``None``.
    - ``"host:port"`` (a head's GCS, e.g. ``"127.0.0.1:6379"``) or
      ``"ray://host:10001"`` (Ray Client): that cluster; ``ConnectionError`` if it
      does not answer, ``ValueError`` if the address is malformed.

    If Ray is already initialised in this process, that connection is used
    whatever ``address`` says, and ``close`` leaves it open; a local instance
    started for executors is shut down when the last of them closes.

    Each actor reserves ``cpus_per_actor`` CPUs: by default 1, or an equal share of
    the cluster's CPUs when it has fewer than ``n_actors`` (acting is light; what
    matters is that every actor gets scheduled rather than left pending).
    """

    name = "ray"

    def __init__(
        self, n_actors: int, address: str | None = None, cpus_per_actor: float | None = None
    ) -> None:
        if n_actors < 1:
            raise ValueError(f"n_actors must be >= 1, got {n_actors}")
        if address is not None and address != "auto":
            _split(address)  # a malformed address fails here, before anything starts
        if cpus_per_actor is not None and cpus_per_actor <= 0:
            raise ValueError(f"cpus_per_actor must be > 0, got {cpus_per_actor}")
        self.n_actors = n_actors
        self.address = address
        self.cpus_per_actor = cpus_per_actor
        self.replaced = 0
        self._slots: list[_Slot] = []
        self._local_generation: int | None = None  # set while this executor uses _LOCAL
        self._version = 0
        self._weights: Any = None
        self._spec: Any = None

    def start(self, spec: ActorSpec, weights: np.ndarray) -> int:
        """Connect to Ray and start every actor; ``weights`` are the first version, returned."""
        self._connect()
        self._cpus = self.cpus_per_actor or _fair_share(self.n_actors)
        self._version = 0
        # Once in the object store: every actor, and every replacement, builds from it.
        self._spec = ray.put(spec)
        self._remote = ray.remote(_ActorHost)
        version = self.publish(weights)
        self._slots = [self._launch(i, 0, deaths=0) for i in range(self.n_actors)]
        return version

    def publish(self, weights: np.ndarray) -> int:
        """Make ``weights`` the version actors load at their next trajectory."""
        self._weights = ray.put(np.asarray(weights, dtype=np.float32))
        self._version += 1
        return self._version

    def collect(self, actor_id: int) -> Trajectory:
        """Actor ``actor_id``'s next trajectory; a dead actor is replaced first. Its
        arrays are read-only views of the object store: copy before writing."""
        while True:
            slot = self._slots[actor_id]
            if slot.pending is None:
                self._submit(slot)
            try:
                trajectory = ray.get(slot.pending)
            except ray_errors.RayTaskError as err:  # raised in the actor: not retried
                slot.pending = None
                raise _reported(actor_id, err) from None
            except ray_errors.RayActorError as err:  # died, or unreachable
                self._replace(actor_id, err)
                continue
            except ray_errors.ObjectLostError:  # its node went before we fetched it
                slot.pending = None
                continue
            slot.deaths = 0
            self._submit(slot)  # the next trajectory is collected while the learner learns
            return trajectory

    def close(self) -> None:
        """Kill every actor (and wait until Ray confirms it); shut Ray down if this
        executor started it."""
        handles = [slot.handle for slot in self._slots]
        self._slots = []
        if handles and ray.is_initialized():
            for handle in handles:
                with suppress(Exception):  # gone already, or the cluster with it
                    ray.kill(handle, no_restart=True)
            # A call to a killed actor fails once Ray knows it is dead: until then
            # its process may still be running (and holding its CPUs).
            probes = [handle.pid.remote() for handle in handles]
            ray.wait(probes, num_returns=len(probes), timeout=STOP_GRACE_S)
        self._spec = self._weights = None
        if self._local_generation is not None:
            if self._local_generation == _LOCAL.generation:
                _LOCAL.users -= 1
                if _LOCAL.users == 0 and ray.is_initialized():
                    ray.shutdown()
            self._local_generation = None

    def pids(self) -> list[int]:
        """The actors' process ids, on their nodes (tests kill them)."""
        return [int(pid) for pid in ray.get([slot.pid for slot in self._slots])]

    def _launch(self, actor_id: int, incarnation: int, deaths: int) -> _Slot:
        # max_restarts=0: Ray would restart an actor with its constructor's arguments
        # again, as the same incarnation, replaying its seeds; a new actor gets the next.
        handle = self._remote.options(
            num_cpus=self._cpus, max_restarts=0, max_task_retries=0
        ).remote(self._spec, actor_id, incarnation)
        slot = _Slot(handle, incarnation, handle.pid.remote(), None, deaths)
        self._submit(slot)
        return slot

    def _submit(self, slot: _Slot) -> None:
        slot.pending = slot.handle.collect.remote(self._version, self._weights)

    def _replace(self, actor_id: int, err: ray_errors.RayActorError) -> None:
        old = self._slots[actor_id]
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if err.actor_init_failed:  # e.g. the spec does not unpickle on that node
            raise ActorFailed(f"actor {actor_id} could not be created on Ray: {err}") from None
        if old.deaths + 1 >= MAX_DEATHS_IN_A_ROW:
            raise ActorFailed(
                f"actor {actor_id} died {old.deaths + 1} times in a row before delivering "
                f"a trajectory (last: {reason})"
            ) from None
        with suppress(Exception):  # unreachable is not dead: make sure it stops collecting
            ray.kill(old.handle, no_restart=True)
        self.replaced += 1
        self._slots[actor_id] = self._launch(actor_id, old.incarnation + 1, old.deaths + 1)

    def _connect(self) -> None:
        if self._local_generation is not None:  # started twice without closing
            return
        if ray.is_initialized():
            if _LOCAL.users:
                _LOCAL.users += 1
                self._local_generation = _LOCAL.generation
            return
        if self.address is None:
            self._start_local()
        elif self.address == "auto":
            found = _running_cluster()
            if found is None:
                log.info("no running Ray cluster found: starting a local Ray instance")
                self._start_local()
            else:
                self._join(found)
        else:
            if not _answers(self.address):
                raise ConnectionError(
                    f"no Ray cluster answers at {self.address!r} (start one with "
                    "`ray start --head`, or give address=None for a local one)"
                )
            self._join(self.address)

    def _start_local(self) -> None:
        # Nothing from here may reach the network: no usage statistics, unless asked.
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        with _workers_run_this_python():
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, 1),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        _LOCAL.generation += 1
        _LOCAL.users = 1
        self._local_generation = _LOCAL.generation

    def _join(self, address: str) -> None:
        try:
            with _workers_run_this_python():
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(
                f"could not join the Ray cluster at {address!r}: {detail} (a cluster with "
                "token authentication also needs RAY_AUTH_MODE=token and its token)"
            ) from exc


@contextmanager
def _workers_run_this_python() -> Iterator[None]:
    """Ray (2.44 and later), on a driver started by ``uv run``, makes its workers
    ``uv run`` too, in an uploaded copy of the working directory: a fresh virtual
    environment per job (gigabytes, minutes before the first trajectory). Actors
    run the interpreter the cluster was started with, like the local executor's;
    to ship an environment with Ray's runtime environments, call ``ray.init``
    before starting the pipeline: its connection is used as it is."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    hooked = bool(getattr(constants, "RAY_ENABLE_UV_RUN_RUNTIME_ENV", False))
    if hooked:
        constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    try:
        yield
    finally:
        if hooked:
            constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = True


def _split(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``"host:port"`` or ``"ray://host:port"``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"address must be None, 'auto', 'host:port' or 'ray://host:port', got {address!r}"
        )
    return host.strip("[]"), int(port)


def _answers(address: str) -> bool:
    """Whether something listens at ``address``: Ray itself would keep retrying for
    minutes before it gives up on an address where nothing does."""
    try:
        socket.create_connection(_split(address), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _running_cluster() -> str | None:
    """The cluster ``"auto"`` joins, if it answers: ``RAY_ADDRESS``'s, or the last
    ``ray start``'s on this machine. Not any Ray process found running, as Ray's own
    ``"auto"`` would: another program's private instance is not a cluster to join."""
    address = os.environ.get("RAY_ADDRESS", "")
    if not address.startswith("ray://"):
        try:
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address(None)
        except ConnectionError:
            return None
        except Exception:  # Ray's internals moved: let ray.init resolve it
            return "auto"
    if address is not None and not _answers(address):
        # The last `ray start`'s address outlives a cluster that was killed.
        log.warning("no Ray cluster answers at %s: starting a local one", address)
        return None
    return address


def _fair_share(n_actors: int) -> float:
    total = ray.cluster_resources().get("CPU", 0.0)
    if total <= 0 or total >= n_actors:  # none yet (autoscaling), or enough for one each
        return 1.0
    return math.floor(total / n_actors * 1e4) / 1e4  # Ray's CPUs are counted in 1e-4


def _reported(actor_id: int, err: ray_errors.RayTaskError) -> ActorFailed:
    """The ``ActorFailed`` the actor raised, or one describing what else did."""
    cause = err.cause
    if isinstance(cause, ActorFailed):
        return ActorFailed(str(cause), cause.trace)
    return ActorFailed(f"actor {actor_id} failed: {type(cause).__name__}: {cause}", str(err))
