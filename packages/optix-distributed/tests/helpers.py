"""What the distributed tests share: processes that must be gone, and a failing env."""

from __future__ import annotations

import os
import time

import gymnasium as gym


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().split(")")[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


class BrokenCartPole(gym.Wrapper):
    """CartPole whose 50th step raises: an environment bug inside an actor."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 50:
            raise RuntimeError("the simulator lost its state")
        return self.env.step(action)


class OnlyInTheLearner:
    """An environment factory that works in the process that made it (the learner's
    probe) and, in any other (an actor), raises or kills its process."""

    def __init__(self, raise_in_actors: bool) -> None:
        self.home = os.getpid()
        self.raise_in_actors = raise_in_actors

    def __call__(self) -> gym.Env:
        if os.getpid() != self.home:
            if self.raise_in_actors:
                raise OSError("this environment cannot be built in an actor")
            os._exit(3)
        return gym.make("CartPole-v1")
