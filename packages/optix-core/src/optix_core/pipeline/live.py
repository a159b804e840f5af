"""LivePipeline: windows from a live source, cut by time or step count, that survive outages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from optix_core.agent import BaseAgent
from optix_core.pipeline.base import EnvPipeline
from optix_core.pipeline.recorder import WindowRecorder
from optix_core.types import EpisodeData

log = logging.getLogger("optix")

BoundaryFn = Callable[[int, float], bool]


class DataSource(Protocol):
    """A live source with gymnasium's ``reset``/``step``; ``connect`` and
    ``close`` are optional and called around reconnects."""

    def reset(self) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]: ...


class LivePipeline(EnvPipeline):
    """Streams experience from ``data_source`` one step at a time.

    A window ends when ``episode_boundary_fn(steps_in_window, seconds_in_window)``
    says so (see ``every_n_steps`` and ``every_n_seconds``). When the source
    raises, the episode in progress is cut (marked truncated), the source is
    reconnected with exponential backoff, and the window carries on; after
    ``max_reconnects`` failures in a row the error is raised.
    """

    def __init__(
        self,
        data_source: DataSource,
        agent: BaseAgent | None = None,
        episode_boundary_fn: BoundaryFn | None = None,
        *,
        deterministic: bool = False,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 60.0,
        max_reconnects: int = 10,
        stats_window: int = 20,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = data_source
        self.agent = agent
        self.boundary = episode_boundary_fn or LivePipeline.every_n_steps(1024)
        self.deterministic = deterministic
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_reconnects = max_reconnects
        super().__init__(1, stats_window)
        self._sleep = sleep
        self._obs: Any = None
        self.reconnects = 0
        self._failures = 0  # failures in a row; a successful step resets it

    @staticmethod
    def every_n_steps(n: int) -> BoundaryFn:
        if n < 1:
            raise ValueError(f"every_n_steps needs n >= 1, got {n}")
        return lambda steps, seconds: steps >= n

    @staticmethod
    def every_n_seconds(seconds: float) -> BoundaryFn:
        if seconds <= 0:
            raise ValueError(f"every_n_seconds needs seconds > 0, got {seconds}")
        return lambda steps, elapsed: elapsed >= seconds

    def collect(self) -> EpisodeData:
        agent = self._require_agent()
        recorder = WindowRecorder(1, 256)
        start = time.monotonic()
        episode_start = self._obs is None
        while True:
            if self._obs is None:
                self._obs = self._with_reconnect(lambda: self.source.reset())[0]
                episode_start = True
            batch = _batched(self._obs)
            action, info = self.act(agent, batch, np.array([episode_start]))
            action = np.asarray(action)
            try:
                obs, reward, terminated, truncated, _ = self.source.step(action[0])
            except Exception as exc:
                log.warning("live source failed (%s: %s); reconnecting", type(exc).__name__, exc)
                self._reconnect()
                if recorder.size and not episode_start:
                    recorder.mark_cut(0, self._obs)
                self.stats.cut(0)
                self._obs = None
                continue
            self._failures = 0
            done = bool(terminated or truncated)
            finals = {0: obs} if done else {}
            recorder.add(batch, action, [reward], [terminated], [truncated], info, finals)
            self.stats.step(np.array([reward]), np.array([done]))
            self._steps += 1
            self._obs = None if done else obs
            episode_start = done
            if self.boundary(recorder.size, time.monotonic() - start):
                break
        self._windows += 1
        next_obs = _batched(self._obs if self._obs is not None else obs)
        return recorder.finish(next_obs, self.stats.window_infos(), self._windows)

    def _with_reconnect(self, call: Callable[[], Any]) -> Any:
        while True:
            try:
                return call()
            except Exception as exc:
                log.warning("live source failed (%s: %s); reconnecting", type(exc).__name__, exc)
                self._reconnect()

    def _reconnect(self) -> None:
        """Wait, then close and connect again; the wait doubles with every failure
        in a row (a failed connect, or a source that fails again right after)."""
        while True:
            self._failures += 1
            if self._failures > self.max_reconnects:
                raise ConnectionError(
                    f"live source still failing after {self.max_reconnects} reconnect attempts"
                )
            delay = self.reconnect_delay * 2 ** (self._failures - 1)
            self._sleep(min(delay, self.max_reconnect_delay))
            try:
                _call_optional(self.source, "close")
                _call_optional(self.source, "connect")
            except Exception as exc:
                log.warning("reconnect %d/%d failed: %s", self._failures, self.max_reconnects, exc)
                continue
            self.reconnects += 1
            return

    def close(self) -> None:
        _call_optional(self.source, "close")


def _batched(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def _call_optional(obj: Any, name: str) -> None:
    method = getattr(obj, name, None)
    if callable(method):
        method()
