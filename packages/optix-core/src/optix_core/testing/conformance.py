"""The conformance suite: what every registered agent must do.

Subclass ``AgentConformance`` in a test module and set ``algo`` and
``backend``; every test runs once per environment in ``env_ids`` whose
action space the agent declares. The class docstring lists what else a
subclass may declare.
"""

from __future__ import annotations

import math
import pickletools
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.hyperparams import HyperparamError
from optix_core.pipeline import VectorBatchPipeline
from optix_core.registry import action_space_kind, agents, backends, make_agent
from optix_core.search_space import parse_search_space
from optix_core.specs import load_object
from optix_core.types import EpisodeData, HyperparamSet

CONTRACT = ("act", "learn", "get_hyperparams", "set_hyperparams", "save_weights", "load_weights")
PROBES = 256  # observations the policy's deterministic actions are compared on
RTOL = 1e-6  # what "acts the same" allows of continuous actions


class AgentConformance:
    """The contract's tests; a subclass declares the agent and what it needs to learn.

    Required:

    ``algo``, ``backend``
        The registered agent under test.

    Optional (class attributes):

    ``env_ids``
        Environments to test on; those whose action space the agent does not
        declare are skipped. Default: CartPole-v1 and Pendulum-v1.
    ``n_envs``, ``window_size``
        The shape of every window the suite collects with
        ``VectorBatchPipeline``: ``n_envs`` environments stepped
        ``window_size`` times. Default: 2 x 64.
    ``learn_windows``
        How many windows the suite trains on (one pipeline, ``learn()`` after
        each) before it checks that the policy changed and that a checkpoint
        restores it. Default: 1.
    ``learn_hyperparams``
        Hyperparameters every agent the suite builds gets on top of its
        defaults. Default: none.
    ``seed``
        The seed of the agents and environments; the round trip builds its
        second agent with ``seed + 1``. Default: 0.
    ``device``
        The device every agent the suite builds is put on. Default: "cpu".
        ``AcceleratorConformance`` runs the suite on another one.

    ``learn()`` must change the policy's deterministic actions on 256 probe
    observations within ``learn_windows`` windows of ``n_envs`` x
    ``window_size`` steps; without that, neither learning nor a checkpoint
    round trip can be seen. An agent that waits for experience before its
    first update (``learning_starts``, a population of whole episodes)
    declares windows big enough to get past it; prefer that to changing
    hyperparameters in ``learn_hyperparams``, since the suite then tests the
    agent as users build it. Keep it fast: seconds per environment.
    """

    algo: ClassVar[str]
    backend: ClassVar[str]
    env_ids: ClassVar[tuple[str, ...]] = ("CartPole-v1", "Pendulum-v1")
    n_envs: ClassVar[int] = 2
    window_size: ClassVar[int] = 64
    learn_windows: ClassVar[int] = 1
    learn_hyperparams: ClassVar[dict[str, Any]] = {}
    seed: ClassVar[int] = 0
    device: ClassVar[str] = "cpu"

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "env_id" in metafunc.fixturenames:
            spec = self._spec()
            served = [e for e in self.env_ids if _kind(e) in spec.action_spaces]
            metafunc.parametrize("env_id", served)

    # ---- helpers ---------------------------------------------------------

    def _spec(self) -> Any:
        for spec in agents():
            if spec.name == self.algo and spec.backend == self.backend:
                return spec
        raise AssertionError(f"{self.algo!r} on {self.backend!r} is not registered")

    def make(
        self,
        env_id: str,
        hyperparams: dict[str, Any] | None = None,
        seed: int | None = None,
        device: str | None = None,
    ) -> BaseAgent:
        if self.learn_hyperparams or hyperparams is not None:
            hp = HyperparamSet(params={**self.learn_hyperparams, **(hyperparams or {})})
        else:
            hp = None
        return make_agent(
            self.algo,
            env_id,
            backend=self.backend,
            hyperparams=hp,
            device=device or self.device,
            seed=self.seed if seed is None else seed,
        )

    def pipeline(self, agent: BaseAgent, env_id: str) -> VectorBatchPipeline:
        """The suite's pipeline: ``n_envs`` environments, ``window_size`` steps."""
        return VectorBatchPipeline(
            env_id=env_id,
            n_envs=self.n_envs,
            window_size=self.window_size,
            seed=self.seed,
            agent=agent,
        )

    def window(self, agent: BaseAgent, env_id: str) -> EpisodeData:
        pipeline = self.pipeline(agent, env_id)
        try:
            return pipeline.collect()
        finally:
            pipeline.close()

    def train(self, agent: BaseAgent, env_id: str) -> list[EpisodeData]:
        """``learn_windows`` windows from one pipeline, learning from each as it
        comes (as the loop does); returns the windows."""
        pipeline = self.pipeline(agent, env_id)
        windows = []
        try:
            for _ in range(self.learn_windows):
                windows.append(pipeline.collect())
                agent.learn(windows[-1])
        finally:
            pipeline.close()
        return windows

    def deterministic_actions(self, agent: BaseAgent, observations: np.ndarray) -> np.ndarray:
        """The policy's fingerprint: its deterministic actions, from a fresh state."""
        agent.reset_state()
        return np.asarray(agent.act(observations, deterministic=True), dtype=np.float64)

    def _needs_more_experience(self, what: str) -> str:
        return (
            f"{self.algo!r} on {self.backend!r}: {what}. The suite trains on "
            f"learn_windows={self.learn_windows} window(s) of n_envs={self.n_envs} x "
            f"window_size={self.window_size} steps; if the agent waits for more "
            "experience before it updates (learning_starts, a population of whole "
            "episodes), declare a bigger window_size, n_envs or learn_windows on "
            f"{type(self).__name__}"
        )

    def probe_observations(self, env_id: str, n: int = 16) -> Any:
        """``n`` observations sampled from the space (unbounded Box entries within ±3)."""
        env = gym.make(env_id)
        space = env.observation_space
        env.close()
        space.seed(self.seed)
        return _batch([space.sample() for _ in range(n)], space)

    # ---- the contract ------------------------------------------------------

    def test_is_a_base_agent_with_the_six_methods(self, env_id: str) -> None:
        agent = self.make(env_id)
        assert isinstance(agent, BaseAgent)
        for name in CONTRACT:
            assert callable(getattr(agent, name)), name
        assert agent.is_on_policy == self._spec().on_policy

    def test_acts_on_its_declared_spaces(self, env_id: str) -> None:
        agent = self.make(env_id)
        space = gym.make(env_id).action_space
        obs = self.probe_observations(env_id)
        for deterministic in (False, True):
            actions = np.asarray(agent.act(obs, deterministic=deterministic))
            assert len(actions) == _rows(obs)
            assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in actions)
        agent.reset_state()
        again = np.asarray(agent.act(obs, deterministic=True))
        agent.reset_state()
        np.testing.assert_array_equal(again, agent.act(obs, deterministic=True))

    def test_hyperparameters_round_trip(self, env_id: str) -> None:
        agent = self.make(env_id)
        before = agent.get_hyperparams()
        assert set(self._spec().defaults) <= set(before.params)
        changed = dict(before.params)
        for key, spec in self._spec().search_space.items():
            changed[key] = _inside(spec)
        agent.set_hyperparams(HyperparamSet(params=changed))
        after = agent.get_hyperparams().params
        for key in self._spec().search_space:
            assert after[key] == pytest.approx(changed[key]), key

    def test_online_search_space_is_valid_and_round_trips(self, env_id: str) -> None:
        """What the loop tunes while training (the agent's ``search_space``) parses,
        lies inside the agent's declared ``hyperparam_bounds``, and is accepted."""
        agent = self.make(env_id)
        space = agent.search_space
        if not space:
            return  # the agent is not tuned online
        parsed = parse_search_space(space)
        bounds = agent.hyperparam_bounds
        for key, param in parsed.items():
            if key in bounds and param.kind != "categorical":
                for end in (param.low, param.high):
                    assert bounds[key].accepts(end), f"{key}: {end} outside {bounds[key]}"
        changed = {key: _inside(spec) for key, spec in space.items()}
        agent.set_hyperparams(HyperparamSet(params=changed))
        after = agent.get_hyperparams().params
        for key in space:
            assert after[key] == pytest.approx(changed[key]), key

    def test_rejects_unknown_hyperparameters(self, env_id: str) -> None:
        with pytest.raises((HyperparamError, ValueError)):
            self.make(env_id, hyperparams={"no_such_hyperparameter": 1.0})

    def test_learn_changes_the_policy(self, env_id: str) -> None:
        agent = self.make(env_id)
        obs = self.probe_observations(env_id, PROBES)
        before = self.deterministic_actions(agent, obs)
        self.train(agent, env_id)
        after = self.deterministic_actions(agent, obs)
        assert not _same(after, before), self._needs_more_experience(
            f"learning left its deterministic actions on {PROBES} probe observations unchanged"
        )

    def test_save_load_round_trip(self, env_id: str, tmp_path: Path) -> None:
        agent = self.make(env_id)
        self.train(agent, env_id)
        agent.save_weights(str(tmp_path / "agent"))
        obs = self.probe_observations(env_id, PROBES)
        trained = self.deterministic_actions(agent, obs)
        restored = self.make(env_id, seed=self.seed + 1)
        if _same(self.deterministic_actions(restored, obs), trained):
            pytest.fail(
                self._needs_more_experience(
                    f"a fresh agent built with seed {self.seed + 1} already acts like the "
                    f"trained one on {PROBES} probe observations, so this test cannot tell "
                    "whether load_weights restores anything"
                )
            )
        restored.load_weights(str(tmp_path / "agent"))
        np.testing.assert_allclose(
            self.deterministic_actions(restored, obs),
            trained,
            rtol=RTOL,
            err_msg="the restored agent does not act like the one that was saved",
        )
        assert restored.get_hyperparams().params == agent.get_hyperparams().params
        for file in (tmp_path / "agent").rglob("*"):
            if file.is_file():
                assert not _is_pickle(file.read_bytes()), f"{file.name} is a pickle"

    def test_a_checkpoint_taken_mid_episode_continues_them_as_never_saved(
        self, env_id: str, tmp_path: Path
    ) -> None:
        """A resumed run whose pipeline rebuilt the episodes its checkpoint
        interrupted asks the agent to continue them (``continue_episodes``); an
        agent that says it does acts and learns on as the agent never saved."""
        agent = self.make(env_id)
        pipeline = self.pipeline(agent, env_id)
        try:
            for _ in range(self.learn_windows):
                window = pipeline.collect()
                agent.learn(window)
            agent.save_weights(str(tmp_path / "agent"))
            twin = self.make(env_id, seed=self.seed + 1)
            twin.load_weights(str(tmp_path / "agent"))
            if not twin.continue_episodes():
                pytest.skip(f"{self.algo} ({self.backend}) starts new episodes on a resume")
            for _ in range(2):
                starts = np.logical_or(window.terminated[-1], window.truncated[-1])
                window = pipeline.collect()  # acted by the agent never saved
                for t in range(len(window.rewards)):
                    actions, info = twin.act_info(_at(window.observations, t), starts)
                    recorded = {"actions": window.actions[t]}
                    recorded |= {key: window.policy_info[key][t] for key in info}
                    for key, want in recorded.items():  # recurrent states, values, ...
                        got = actions if key == "actions" else info[key]
                        np.testing.assert_allclose(
                            np.asarray(got, dtype=np.float64),
                            np.asarray(want, dtype=np.float64),
                            rtol=RTOL,
                            err_msg=f"the restored agent's {key} differ at step {t}",
                        )
                    starts = np.logical_or(window.terminated[t], window.truncated[t])
                want, got = agent.learn(window), twin.learn(window)
                for key in want:
                    assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
        finally:
            pipeline.close()
        probes = self.probe_observations(env_id, PROBES)
        np.testing.assert_allclose(
            self.deterministic_actions(twin, probes),
            self.deterministic_actions(agent, probes),
            rtol=RTOL,
        )

    def test_learns_from_a_short_window(self, env_id: str) -> None:
        agent = self.make(env_id)
        diagnostics = agent.learn(self.window(agent, env_id))
        assert isinstance(diagnostics, dict)
        for key, value in diagnostics.items():
            assert isinstance(value, int | float | np.number), key
            assert math.isfinite(float(value)), key

    def test_act_does_not_change_what_learn_does(self, env_id: str) -> None:
        """Acting between a rollout and learn() (an evaluation, a dashboard)
        changes nothing about the update."""
        windows = self.train(self.make(env_id), env_id)
        quiet, busy = self.make(env_id), self.make(env_id)
        obs = self.probe_observations(env_id)
        for window in windows:
            for _ in range(5):
                busy.act(obs, deterministic=False)
                busy.act(obs, deterministic=True)
            quiet_diag, busy_diag = quiet.learn(window), busy.learn(window)
            assert quiet_diag.keys() == busy_diag.keys()
            for key in quiet_diag:
                assert busy_diag[key] == pytest.approx(quiet_diag[key], rel=1e-6, abs=1e-9), key
        probes = self.probe_observations(env_id, PROBES)
        np.testing.assert_allclose(
            self.deterministic_actions(busy, probes),
            self.deterministic_actions(quiet, probes),
            rtol=RTOL,
        )


class AcceleratorConformance(AgentConformance):
    """The contract again on an accelerator, and checkpoints crossing to the CPU.

    Put it first among the bases of the CPU suite's class and name the device:

        class TestPPOOnCUDA(AcceleratorConformance, TestPPOConformance):
            device = "cuda"

    Every test builds its agents on ``device``, and each environment adds one:
    a checkpoint saved on the device loads onto the CPU, and one saved on the
    CPU loads back, each acting as the agent that saved it and learning on
    (its optimizer state came along). Every test skips where the backend does
    not have the device, so the class can sit in a suite that runs anywhere.

    Two comparisons are looser than on the CPU, by what the hardware does and
    no more. Accelerators multiply float32 matrices in TF32 (JAX's default on
    a GPU; cuDNN's convolutions in torch), so actions computed on the device
    and on the CPU agree to about 1e-4, not to the last bit. And some GPU
    kernels (cuDNN's convolution gradients) sum in no fixed order, so one
    update repeated on the same window need not repeat to the last bit:
    acting between rollouts may change an update no more than repeating it
    does.
    """

    @pytest.fixture(autouse=True)
    def _skip_without_the_device(self) -> None:
        backend = next(b for b in backends() if b.name == self.backend)
        try:
            load_object(backend.resolve_device)(self.device)
        except ValueError as exc:
            pytest.skip(str(exc))

    def test_act_does_not_change_what_learn_does(self, env_id: str) -> None:
        """As on the CPU, within the device's own spread: a third agent learns the
        same windows without acting, and acting may move each diagnostic no more
        than ten times as far as that repetition moved it."""
        windows = self.train(self.make(env_id), env_id)
        quiet, again, busy = self.make(env_id), self.make(env_id), self.make(env_id)
        obs = self.probe_observations(env_id)
        for window in windows:
            for _ in range(5):
                busy.act(obs, deterministic=False)
                busy.act(obs, deterministic=True)
            quiet_diag, again_diag, busy_diag = (a.learn(window) for a in (quiet, again, busy))
            assert quiet_diag.keys() == busy_diag.keys()
            for key, value in quiet_diag.items():
                spread = abs(again_diag[key] - value)
                allowed = 10 * spread + 1e-6 * abs(value) + 1e-9
                assert abs(busy_diag[key] - value) <= allowed, (
                    f"{key}: {busy_diag[key]} after acting, {value} without, "
                    f"{again_diag[key]} repeated"
                )

    def test_checkpoints_cross_between_the_device_and_the_cpu(
        self, env_id: str, tmp_path: Path
    ) -> None:
        obs = self.probe_observations(env_id, PROBES)
        continuous = _kind(env_id) == "continuous"

        def assert_acts_like(agent: BaseAgent, reference: BaseAgent) -> None:
            _assert_acts_alike(
                self.deterministic_actions(agent, obs),
                self.deterministic_actions(reference, obs),
                continuous,
            )

        trained = self.make(env_id)
        self.train(trained, env_id)
        trained.save_weights(str(tmp_path / "from-device"))
        on_cpu = self.make(env_id, seed=self.seed + 1, device="cpu")
        on_cpu.load_weights(str(tmp_path / "from-device"))
        assert_acts_like(on_cpu, trained)
        self.train(on_cpu, env_id)
        on_cpu.save_weights(str(tmp_path / "from-cpu"))
        back = self.make(env_id, seed=self.seed + 2)
        back.load_weights(str(tmp_path / "from-cpu"))
        assert_acts_like(back, on_cpu)
        self.train(back, env_id)


def _assert_acts_alike(got: np.ndarray, want: np.ndarray, continuous: bool) -> None:
    """Acting alike across devices: with TF32 products on the device, continuous
    actions match to 1e-2 (a wrong checkpoint misses by tenths), and a discrete
    action may flip where two of its values tie that closely (at most 1 probe
    in 100)."""
    if continuous:
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    else:
        assert np.mean(got == want) >= 0.99, "the agent acts unlike the one that saved it"


def _batch(samples: list[Any], space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _batch([s[k] for s in samples], sub) for k, sub in space.spaces.items()}
    obs = np.stack(samples)
    if isinstance(space, gym.spaces.Box):
        bounded = np.isfinite(space.low) & np.isfinite(space.high)
        obs = np.where(bounded, obs, np.clip(obs, -3, 3)).astype(space.dtype)
    return obs


def _at(observations: Any, t: int) -> Any:
    """Step ``t`` of a window's observations (a dict of arrays for Dict spaces)."""
    if isinstance(observations, dict):
        return {k: v[t] for k, v in observations.items()}
    return observations[t]


def _rows(obs: Any) -> int:
    return len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=RTOL, atol=0.0))


def _kind(env_id: str) -> str:
    env = gym.make(env_id)
    try:
        return action_space_kind(env.action_space)
    finally:
        env.close()


def _inside(spec: tuple) -> Any:
    """A value strictly inside a search-space entry, away from the default."""
    kind, *values = spec
    if kind == "categorical":
        return values[-1]
    low, high = values
    if kind in ("log_float", "log_int"):
        value = math.exp(0.3 * math.log(low) + 0.7 * math.log(high))
    else:
        value = low + 0.7 * (high - low)
    return round(value) if kind.endswith("int") else value


def _is_pickle(data: bytes) -> bool:
    """Whether ``data`` is one whole pickle stream, read opcode by opcode with
    pickletools (never unpickled). A safetensors file can start with the byte
    of pickle's PROTO opcode (its header length), so the first byte says nothing."""
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # an unknown opcode, a truncated argument: not a pickle
        return False
    return bool(ops) and ops[-1][0].name == "STOP"
