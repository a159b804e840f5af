"""RLOptimizer: the autonomous loop, driven by an agent whose scores are scripted."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from optix_core.agent import BaseAgent
from optix_core.callbacks import HOOKS, CallbackList, LoopCallback
from optix_core.checkpoints import CheckpointRegistry
from optix_core.evaluation import PolicyEvaluation, evaluate_policy
from optix_core.evaluator import BaseEvaluator
from optix_core.loop import RLOptimizer, TrainingDivergedError
from optix_core.optimizer import BaseOptimizer
from optix_core.pipeline import BasePipeline, BatchPipeline, VectorBatchPipeline
from optix_core.registry import make_agent
from optix_core.report import LoopReport
from optix_core.selection import Candidate, EvaluationSelection
from optix_core.types import EpisodeData, EvalMetrics, HyperparamSet, LoopState, PolicySnapshot

# ---- test doubles: a scripted agent, its evaluator, a validation pipeline ----


class ScriptedAgent(BaseAgent):
    """Its one weight, its "skill", follows ``curve(t)`` on the t-th ``learn``.

    The learn counter is not part of the weights, so a rollback restores the
    skill and the script carries on; with ``save_clock=True`` it is saved too,
    as an optimizer's step count would be, so a resumed run replays exactly.
    ``seen`` records the skill each ``learn`` started from.
    """

    def __init__(
        self,
        curve: Callable[[int], float],
        *,
        on_policy: bool = True,
        save_clock: bool = False,
        hyperparams: dict | None = None,
    ) -> None:
        self.curve = curve
        self.on_policy = on_policy
        self.save_clock = save_clock
        self.skill = 0.0
        self.t = 0
        self.seen: list[float] = []
        self.saved: list[float] = []
        self.hp = HyperparamSet(dict(hyperparams or {"learning_rate": 0.1}))

    def act(self, observation, deterministic=False):
        return np.zeros(len(observation), dtype=np.int64)

    def learn(self, episode_data: EpisodeData) -> dict[str, float]:
        assert episode_data.rewards.shape[1] == 1
        self.seen.append(self.skill)
        self.skill = float(self.curve(self.t))
        self.t += 1
        return {"skill": self.skill, "loss": 0.0 if math.isfinite(self.skill) else self.skill}

    def get_hyperparams(self) -> HyperparamSet:
        return self.hp.copy()

    def set_hyperparams(self, hyperparams: HyperparamSet) -> None:
        self.hp = hyperparams.copy()

    def save_weights(self, path: str) -> None:
        self.saved.append(self.skill)
        Path(path).mkdir(parents=True, exist_ok=True)
        state = {"skill": self.skill, **({"t": self.t} if self.save_clock else {})}
        (Path(path) / "skill.json").write_text(json.dumps(state))

    def load_weights(self, path: str) -> None:
        state = json.loads((Path(path) / "skill.json").read_text())
        self.skill = state["skill"]
        self.t = state.get("t", self.t)

    @property
    def is_on_policy(self) -> bool:
        return self.on_policy


class SkillEvaluator(BaseEvaluator):
    """Scores a training window by the skill ``learn`` reported, and a
    validation window (no diagnostics) by its mean reward."""

    def score(self, episode_data, train_diagnostics):
        if "skill" in train_diagnostics:
            score = train_diagnostics["skill"]
        else:
            score = float(np.mean(episode_data.rewards))
        return EvalMetrics(primary_score=score, episode_id=episode_data.episode_id)


class ValidationPipeline(BasePipeline):
    """One-step windows whose reward is the bound agent's skill minus ``gap``."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.windows = 0

    def episodes(self):
        while True:
            agent = self._require_agent()
            self.windows += 1
            zeros = np.zeros((1, 1))
            yield EpisodeData(
                observations=zeros,
                actions=zeros,
                rewards=np.array([[agent.skill - self.gap]]),
                terminated=zeros.astype(bool),
                truncated=zeros.astype(bool),
                episode_id=self.windows,
            )


class Recorder(LoopCallback):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.loop: RLOptimizer | None = None

    def on_loop_start(self, loop):
        self.loop = loop
        self.events.append(("on_loop_start", loop))

    def on_loop_stop(self, report):
        self.events.append(("on_loop_stop", report))

    def on_episode_end(self, episode_id, metrics):
        self.events.append(("on_episode_end", episode_id, metrics))

    def on_improvement(self, snapshot):
        self.events.append(("on_improvement", snapshot))

    def on_plateau(self, episode_id, metrics):
        self.events.append(("on_plateau", episode_id, metrics))

    def on_dormant(self, episode_id):
        self.events.append(("on_dormant", episode_id))

    def on_degradation(self, episode_id, metrics):
        self.events.append(("on_degradation", episode_id, metrics))

    def on_hyperparam_update(self, old, new):
        self.events.append(("on_hyperparam_update", old, new))

    def hooks(self) -> list[str]:
        return [e[0] for e in self.events]

    def of(self, hook: str) -> list[tuple]:
        return [e[1:] for e in self.events if e[0] == hook]

    def scores(self) -> list[float]:
        return [m.primary_score for _, m in self.of("on_episode_end")]


class HalvingOptimizer(BaseOptimizer):
    """Halves the learning rate at every evaluation."""

    def __init__(self, probing: bool = False) -> None:
        self.probing = probing
        self.improvements = 0
        self.plateaus = 0
        self.calls = 0

    def suggest(self, current, metrics):
        self.calls += 1
        return HyperparamSet(
            {**current.params, "learning_rate": current.params["learning_rate"] / 2}
        )

    def on_improvement(self, metrics):
        self.improvements += 1

    def on_plateau(self, metrics):
        self.plateaus += 1

    @property
    def is_probing(self):
        return self.probing

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def script(*values: float, then: float | None = None) -> Callable[[int], float]:
    """The scripted curve: ``values`` in order, then ``then`` (default: the last) forever."""
    last = values[-1] if then is None else then
    return lambda t: values[t] if t < len(values) else last


def pipeline(window_size: int = 2) -> BatchPipeline:
    return BatchPipeline(env_id="CartPole-v1", window_size=window_size, seed=0)


EXACT = {"score_smoothing": 1, "noise_k": 0.0}
DENSE = {**EXACT, "max_interval_episodes": 1}  # evaluate every window


def loop(agent, window_size: int = 2, **kwargs) -> RLOptimizer:
    options = {"evaluator": SkillEvaluator(), **DENSE, **kwargs}
    return RLOptimizer(agent, pipeline(window_size), **options)


# ---- stopping and the best weights -----------------------------------------------


def test_stops_on_dormant_by_itself_holding_the_best_weights():
    agent = ScriptedAgent(script(1, 2, 3, 10, then=2))
    recorder = Recorder()
    report = loop(
        agent,
        plateau_threshold=2,
        dormant_threshold=4,
        max_episodes=1000,
        max_interval_episodes=4,
        callbacks=[recorder],
    ).run()
    assert report.final_state is LoopState.DORMANT
    assert report.stop_reason.startswith("converged")
    assert "nothing was learned" not in report.stop_reason
    # 4 improving windows, then evaluations after 1, 2, 4, 4 more windows.
    assert report.episodes == 4 + 1 + 2 + 4 + 4
    assert report.best_score == 10
    assert report.best_episode == 4
    assert report.env_steps == report.episodes * 2
    assert agent.skill == 10
    assert recorder.of("on_dormant") == [(report.episodes,)]
    assert recorder.hooks()[-1] == "on_loop_stop"


def test_windows_of_a_warming_up_agent_are_not_evaluated():
    """An off-policy learner's random start is flat; read as a plateau it ended
    the run before the agent learned anything."""

    class WarmingUp(ScriptedAgent):
        @property
        def warming_up(self) -> bool:
            return self.t < 6  # the first 6 windows act at random

    agent = WarmingUp(script(0, 0, 0, 0, 0, 0, 1, 2, 3, then=3))
    recorder = Recorder()
    report = loop(
        agent, plateau_threshold=2, dormant_threshold=3, max_episodes=40, callbacks=[recorder]
    ).run()
    assert [args[0] for args in recorder.of("on_episode_end")][:4] == [6, 7, 8, 9]
    assert report.stop_reason.startswith("converged") and report.episodes == 12
    assert agent.skill == 3


def test_no_dormant_while_the_agent_explores_and_the_stop_says_since_when():
    """A flat score while ε falls (DQN on MountainCar): no DORMANT until the
    agent stops exploring at window 20, then 0.5 x 20 windows more."""

    class Exploring(ScriptedAgent):
        @property
        def exploring(self) -> bool:
            return self.t <= 20

    report = loop(
        Exploring(script(1, then=1)),
        plateau_threshold=2,
        dormant_threshold=3,
        relative_patience=0.5,
        max_episodes=1000,
    ).run()
    assert report.episodes == 30
    assert "10 windows since exploration ended (window 20)" in report.stop_reason
    # a flat score that exploration never lifted is said to be one
    assert report.stop_reason.endswith(
        "; the training score never moved from 1: nothing was learned"
    )


@pytest.mark.parametrize(("solved_score", "stops_at"), [(None, 15), (10.0, 15), (20.0, 40)])
def test_dormant_waits_longer_while_the_best_checkpoint_has_not_solved_the_task(
    solved_score, stops_at
):
    """A climb to 10 at window 10, then flat: solved (10 reaches the solved score),
    DORMANT waits 0.5 x 10 windows after the record; unsolved, 3 x 10, and says so."""
    agent = ScriptedAgent(script(*range(1, 11)))
    report = loop(
        agent,
        plateau_threshold=2,
        dormant_threshold=3,
        relative_patience=0.5,
        unsolved_patience=3.0,
        solved_score=solved_score,
        max_episodes=1000,
    ).run()
    assert report.stop_reason.startswith("converged") and report.episodes == stops_at
    unsolved = "unsolved: the best checkpoint scores 10 below the solved score 20"
    assert (unsolved in report.stop_reason) == (stops_at == 40)
    assert agent.skill == 10
    # the climb's last record, in the report as in its reason (the suite reads it)
    assert report.record_window == report.to_dict()["record_window"] == 10
    assert "since the last record (window 10)" in report.stop_reason


@pytest.mark.parametrize(("solved_score", "stops_at"), [(10.0, 15), (20.0, 40)])
def test_a_resumed_run_stops_where_the_whole_run_does(solved_score, stops_at, tmp_path):
    """Whether the task is solved is the best checkpoint's score, which a resumed
    run restores: stopped at window 12 and resumed, it stops where it would have."""
    options = dict(
        plateau_threshold=2,
        dormant_threshold=3,
        relative_patience=0.5,
        unsolved_patience=3.0,
        solved_score=solved_score,
        checkpoint_dir=tmp_path,
    )
    first = loop(ScriptedAgent(script(*range(1, 11)), save_clock=True), max_episodes=12, **options)
    assert first.run().episodes == 12
    agent = ScriptedAgent(script(*range(1, 11)), save_clock=True)
    report = loop(agent, max_episodes=1000, resume=True, **options).run()
    assert report.episodes == stops_at
    assert ("unsolved" in report.stop_reason) == (stops_at == 40)


def test_a_fixed_budget_run_trains_through_dormant_and_holds_the_best_weights():
    agent = ScriptedAgent(script(1, 2, 3, 10, then=2))
    recorder = Recorder()
    report = loop(
        agent,
        plateau_threshold=2,
        dormant_threshold=4,
        max_episodes=30,
        stop_on_dormant=False,
        callbacks=[recorder],
    ).run()
    assert report.stop_reason == "max_episodes (30 windows) reached"
    assert report.episodes == 30
    assert [args for args in recorder.of("on_dormant")] == [(8,), (12,), (16,), (20,), (24,), (28,)]
    assert agent.skill == 10 and report.best_episode == 4
    with pytest.raises(ValueError, match="stop_on_dormant=False needs"):
        loop(ScriptedAgent(script(1)), stop_on_dormant=False)


def test_best_weights_after_max_episodes():
    agent = ScriptedAgent(script(1, 2, 5, 3, 0, then=-1))
    report = loop(agent, max_episodes=8).run()
    assert report.stop_reason == "max_episodes (8 windows) reached"
    assert report.episodes == 8
    assert report.final_state is not LoopState.DORMANT
    assert agent.seen[-1] == -1  # it ended training at -1 ...
    assert agent.skill == 5  # ... and holds the best


def test_best_weights_after_stop_from_a_callback():
    class StopAtSix(LoopCallback):
        def on_loop_start(self, loop):
            self.loop = loop

        def on_episode_end(self, episode_id, metrics):
            if episode_id == 6:
                self.loop.stop("enough")

    agent = ScriptedAgent(script(1, 7, 3, 2, 1, 0, 5, 9))
    report = loop(agent, callbacks=[StopAtSix()]).run()
    assert report.stop_reason == "enough"
    assert report.episodes == 6
    assert agent.skill == 7


def test_best_weights_after_an_exception_mid_run():
    def curve(t):
        if t == 5:
            raise RuntimeError("simulator crashed")
        return [3.0, 8.0, 4.0, 1.0, 0.0][t]

    agent = ScriptedAgent(curve)
    optimizer = loop(agent)
    with pytest.raises(RuntimeError, match="simulator crashed"):
        optimizer.run()
    assert agent.skill == 8
    assert optimizer.episode == 6
    # The temporary checkpoint directory is removed.
    assert optimizer._temp_dir is not None and not optimizer._temp_dir.exists()


def test_best_weights_after_keyboard_interrupt():
    def curve(t):
        if t == 4:
            raise KeyboardInterrupt
        return [3.0, 8.0, 4.0, 1.0][t]

    agent = ScriptedAgent(curve)
    recorder = Recorder()
    report = loop(agent, callbacks=[recorder]).run()
    assert report.stop_reason == "interrupted"
    assert report.episodes == 5
    assert agent.skill == 8
    assert recorder.hooks()[-1] == "on_loop_stop"


def test_temporary_checkpoints_are_removed_after_a_normal_run():
    optimizer = loop(ScriptedAgent(script(1, 2)), max_episodes=3)
    optimizer.run()
    assert optimizer._temp_dir is not None and not optimizer._temp_dir.exists()


# ---- callbacks ----------------------------------------------------------------------


def run_through_every_event(*callbacks: LoopCallback, optimizer=None):
    # Rises to 5, collapses to 0 (degradation), then stays flat: plateau, dormant.
    agent = ScriptedAgent(script(1, 2, 3, 4, 5, then=0))
    report = loop(
        agent,
        window_size=20,  # whole CartPole episodes in every window: evidence for each proposal
        optimizer=optimizer or HalvingOptimizer(),
        plateau_threshold=2,
        dormant_threshold=3,
        min_episodes_before_degradation=1,
        max_episodes=100,
        callbacks=list(callbacks),
    ).run()
    return agent, report


def test_all_eight_hooks_fire():
    recorder = Recorder()
    optimizer = HalvingOptimizer()
    agent, report = run_through_every_event(recorder, optimizer=optimizer)
    hooks = recorder.hooks()
    assert set(hooks) == set(HOOKS)
    assert hooks[0] == "on_loop_start" and hooks[-1] == "on_loop_stop"
    assert recorder.of("on_loop_start") == [(recorder.loop,)]
    (stop_report,) = recorder.of("on_loop_stop")[0]
    assert stop_report is report and isinstance(report, LoopReport)

    assert [e[0] for e in recorder.of("on_episode_end")] == list(range(1, report.episodes + 1))
    improvements = [s for (s,) in recorder.of("on_improvement")]
    assert all(isinstance(s, PolicySnapshot) for s in improvements)
    assert [s.score for s in improvements] == [1, 2, 3, 4, 5]
    assert recorder.of("on_degradation")[0][0] == 6
    assert [e[0] for e in recorder.of("on_plateau")] == [7]
    assert recorder.of("on_dormant") == [(8,)]
    assert report.episodes == 8

    # Proposals come when the hyperparameters in force have episodes of their own.
    updates = recorder.of("on_hyperparam_update")
    assert updates and optimizer.calls == len(updates)
    old, new = updates[0]
    assert (old.params["learning_rate"], new.params["learning_rate"]) == (0.1, 0.05)
    assert agent.get_hyperparams().params["learning_rate"] == pytest.approx(0.1 / 2 ** len(updates))
    assert optimizer.improvements == 5 and optimizer.plateaus == 1


def test_a_callback_that_raises_is_reported_once_and_disabled(caplog):
    class Broken(LoopCallback):
        def on_episode_end(self, episode_id, metrics):
            raise ValueError("broken on_episode_end")

    recorder = Recorder()
    agent, report = run_through_every_event(Broken(), recorder)
    assert report.final_state is LoopState.DORMANT
    assert set(recorder.hooks()) == set(HOOKS)  # the one after it still hears everything
    assert agent.skill == 5
    assert caplog.text.count("callback Broken failed in on_episode_end") == 1
    assert "disabled for the rest of the run" in caplog.text


def test_a_misspelt_hook_is_an_error_not_silence():
    class Misspelt(LoopCallback):
        def on_episode_ended(self, episode_id, metrics): ...

    with pytest.raises(
        ValueError, match="on_episode_ended is not a loop hook; did you mean 'on_episode_end'"
    ):
        loop(ScriptedAgent(script(1)), callbacks=[Misspelt()])
    with pytest.raises(TypeError, match="takes a Hook"):
        CallbackList().fire("on_episode_end", 1, None)


def test_callback_state_is_saved_with_every_window_and_restored_on_resume(tmp_path):
    class Counter(LoopCallback):
        def __init__(self):
            self.seen = 0

        def on_episode_end(self, episode_id, metrics):
            self.seen += 1

        def state_dict(self):
            return {"seen": self.seen}

        def load_state_dict(self, state):
            self.seen = state["seen"]

    first = Counter()
    resumable(tmp_path, 4, callbacks=[first])[1].run()
    second = Counter()
    _, resumed = resumable(tmp_path, 6, resume=True, callbacks=[second])
    resumed.setup()
    assert second.seen == first.seen > 0


# ---- degradation and rollback --------------------------------------------------------


@pytest.mark.parametrize(
    ("on_policy", "rollback", "rolled_back"),
    [(True, True, True), (False, True, False), (True, False, False)],
)
def test_rollback_on_degradation_only_for_on_policy_agents(on_policy, rollback, rolled_back):
    agent = ScriptedAgent(script(1, 2, 10, 3, then=3), on_policy=on_policy)
    recorder = Recorder()
    loop(
        agent,
        rollback_on_degradation=rollback,
        min_episodes_before_degradation=1,
        max_episodes=5,
        callbacks=[recorder],
    ).run()
    assert recorder.of("on_degradation")[0][0] == 4
    # The 5th learn starts from the best weights (10) after a rollback, from
    # the degraded ones (3) otherwise.
    assert agent.seen[4] == (10 if rolled_back else 3)
    assert agent.skill == 10  # run() ends on the best either way


def test_degradation_needs_a_real_drop():
    # 9.6 is within 5 % of 10, 9.4 is not.
    recorder = Recorder()
    loop(
        ScriptedAgent(script(10, 9.6, 9.4)),
        min_episodes_before_degradation=1,
        max_episodes=3,
        callbacks=[recorder],
    ).run()
    assert [e[0] for e in recorder.of("on_degradation")] == [3]


def test_degradation_of_negative_scores():
    # Best -200: a drop to -205 is within 5 %, -215 is not (tensor-optix's
    # best * 0.95 = -190 would flag both).
    recorder = Recorder()
    loop(
        ScriptedAgent(script(-200, -205, -215)),
        min_episodes_before_degradation=1,
        max_episodes=3,
        callbacks=[recorder],
    ).run()
    assert [e[0] for e in recorder.of("on_degradation")] == [3]


def test_degradation_waits_for_min_episodes_before_degradation():
    recorder = Recorder()
    loop(
        ScriptedAgent(script(10, 0, 0, 0, 0, 0)),
        min_episodes_before_degradation=4,
        max_episodes=6,
        callbacks=[recorder],
    ).run()
    assert [e[0] for e in recorder.of("on_degradation")] == [4, 5, 6]


@pytest.mark.parametrize("probing", [True, False])
def test_degradation_check_skipped_while_optimizer_is_probing(probing):
    agent = ScriptedAgent(script(1, 2, 10, 3, then=3))
    recorder = Recorder()
    loop(
        agent,
        optimizer=HalvingOptimizer(probing=probing),
        rollback_on_degradation=True,
        min_episodes_before_degradation=1,
        max_episodes=5,
        callbacks=[recorder],
    ).run()
    assert bool(recorder.of("on_degradation")) is not probing
    assert agent.seen[4] == (3 if probing else 10)


# ---- defaults that depend on the agent ---------------------------------------------------


@pytest.mark.parametrize(
    ("on_policy", "min_dormant", "threshold", "episodes"),
    [
        (True, 0, 20, 21),  # first evaluation improves, then 20 misses
        (False, 1, 15, 16),
        (False, 0, 15, 30),  # off-policy loop_hints: no DORMANT before 30 evaluations
    ],
)
def test_dormant_threshold_defaults_to_20_on_policy_and_15_off_policy(
    on_policy, min_dormant, threshold, episodes
):
    agent = ScriptedAgent(script(1.0), on_policy=on_policy)
    optimizer = loop(
        agent, plateau_threshold=2, min_episodes_before_dormant=min_dormant, max_episodes=500
    )
    optimizer.setup()
    assert optimizer.scheduler.dormant_threshold == threshold
    report = optimizer.run()
    assert report.final_state is LoopState.DORMANT
    assert report.episodes == episodes


class SmallWindowAgent(ScriptedAgent):
    """An agent whose windows are too small to score one by one, as A2C's."""

    @property
    def loop_hints(self):
        return {"steps_per_evaluation": 6}  # three of the 2-step windows


def test_an_agent_with_small_windows_is_evaluated_every_so_many_of_them():
    agent = SmallWindowAgent(script(1, 2, 3, 4, 5, 6, then=6.0))
    recorder = Recorder()
    report = loop(
        agent,
        plateau_threshold=2,
        dormant_threshold=2,
        max_interval_episodes=2,
        max_episodes=100,
        callbacks=[recorder],
    ).run()
    evaluated = [event[0] for event in recorder.of("on_episode_end")]
    # Every third window, then intervals backed off to 2 x 3 windows; DORMANT after two misses.
    assert evaluated == [3, 6, 9, 15]
    assert report.final_state is LoopState.DORMANT


def test_windows_of_varying_size_are_evaluated_one_by_one_whatever_the_hint():
    agent = SmallWindowAgent(script(1, 2, 3, 4, 5, 6, then=6.0))
    recorder = Recorder()
    windows = pipeline()
    windows.window_steps = None  # as a pipeline whose windows vary in size
    RLOptimizer(
        agent, windows, evaluator=SkillEvaluator(), max_episodes=4, callbacks=[recorder], **DENSE
    ).run()
    assert [event[0] for event in recorder.of("on_episode_end")] == [1, 2, 3, 4]


def test_windows_per_evaluation_given_overrides_the_agents():
    agent = SmallWindowAgent(script(1, 2, 3, 4, 5, 6, then=6.0))
    recorder = Recorder()
    loop(agent, windows_per_evaluation=1, max_episodes=4, callbacks=[recorder]).run()
    assert [event[0] for event in recorder.of("on_episode_end")] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="windows_per_evaluation must be >= 1"):
        loop(agent, windows_per_evaluation=0)


def test_explicit_dormant_threshold_wins():
    agent = ScriptedAgent(script(1.0), on_policy=False)
    optimizer = loop(agent, dormant_threshold=7)
    assert optimizer.setup().is_on_policy is False
    assert optimizer.scheduler.dormant_threshold == 7


# ---- numerical trouble ---------------------------------------------------------------------


@pytest.mark.parametrize("on_policy", [True, False])
def test_nan_in_diagnostics_rolls_back_and_is_never_saved(tmp_path, caplog, on_policy):
    # Off-policy agents are never rolled back for a lower score, but broken
    # weights are always replaced.
    agent = ScriptedAgent(
        script(1, 2, 3, math.nan, 2.5, math.inf, 2.0, then=2.0), on_policy=on_policy
    )
    recorder = Recorder()
    report = loop(agent, checkpoint_dir=tmp_path, max_episodes=8, callbacks=[recorder]).run()
    assert report.episodes == 8
    # The windows after the NaN and the inf start from the best weights.
    assert agent.seen[4] == 3
    assert agent.seen[6] == 3
    assert "became NaN/inf; rolled back" in caplog.text
    # The broken windows are not scored ...
    assert [e[0] for e in recorder.of("on_episode_end")] == [1, 2, 3, 5, 7, 8]
    # ... and degradation is reported for them.
    assert [e[0] for e in recorder.of("on_degradation")][:2] == [4, 6]
    assert all(math.isfinite(s) for s in agent.saved)
    registry = CheckpointRegistry(tmp_path)
    for kind in ("best", "latest"):
        for snapshot in registry.snapshots(kind):
            probe = ScriptedAgent(script(0))
            registry.load(probe, snapshot.path)
            assert math.isfinite(probe.skill)
    assert agent.skill == 3


def test_nan_before_any_checkpoint_raises_training_diverged():
    agent = ScriptedAgent(script(math.nan))
    with pytest.raises(TrainingDivergedError, match="before the first checkpoint"):
        loop(agent, max_episodes=5).run()
    assert agent.saved == []


# ---- validation, checkpoint selection ---------------------------------------------------------


def test_val_pipeline_score_is_primary_and_gap_is_train_minus_val():
    agent = ScriptedAgent(script(10, 20, 30, 25))
    recorder = Recorder()
    val = ValidationPipeline(gap=4.0)
    report = RLOptimizer(
        agent,
        pipeline(),
        val_pipeline=val,
        evaluator=SkillEvaluator(),
        **DENSE,
        max_episodes=4,
        callbacks=[recorder],
    ).run()
    assert val.agent is agent
    assert val.windows == 4
    metrics = [m for _, m in recorder.of("on_episode_end")]
    assert [m.primary_score for m in metrics] == [6, 16, 26, 21]
    assert [m.generalization_gap for m in metrics] == [4, 4, 4, 4]
    assert [m.metrics["train_score"] for m in metrics] == [10, 20, 30, 25]
    assert [m.metrics["val_score"] for m in metrics] == [6, 16, 26, 21]
    assert report.val_score == 26
    assert report.generalization_gap == 4
    assert report.best_score == 26


def test_checkpoint_score_fn_selects_the_checkpoints():
    # The scheduler sees a rising score; the user's function prefers skill
    # close to 3.
    agent = ScriptedAgent(script(1, 2, 3, 4, 5, 6))
    recorder = Recorder()
    report = loop(
        agent,
        checkpoint_score_fn=lambda a: -abs(a.skill - 3),
        max_episodes=6,
        callbacks=[recorder],
    ).run()
    assert [s.score for (s,) in recorder.of("on_improvement")] == [-2, -1, 0]
    assert report.best_score == 0
    assert report.best_episode == 3
    assert agent.skill == 3
    last = recorder.of("on_episode_end")[-1][1]
    assert last.metrics["selection_score"] == -3
    assert last.metrics["best_score"] == 0 and last.metrics["best_window"] == 3


# ---- output -----------------------------------------------------------------------------------


LINE = re.compile(
    r"\[loop\] window= *(\d+)  env_steps= *[\d,]+  train= *(-?\d+\.\d)  "
    r"smoothed= *(-?\d+\.\d)  selection= *(-|-?\d+\.\d)  "
    r"best=(-?\d+\.\d \(window \d+\))?  state=(ACTIVE|COOLING|DORMANT)  interval=(\d+)"
)


def test_verbose_line_format(capsys):
    values = {7: 65.7, 15: 208.1}
    agent = ScriptedAgent(lambda t: values.get(t, 0.0))
    RLOptimizer(
        agent,
        pipeline(),
        evaluator=SkillEvaluator(),
        base_interval=8,
        max_interval_episodes=64,
        max_episodes=16,
        verbose=True,
    ).run()
    lines = capsys.readouterr().out.splitlines()
    assert [LINE.fullmatch(line).groups() for line in lines] == [
        ("8", "65.7", "65.7", "65.7", "65.7 (window 8)", "ACTIVE", "8"),
        ("16", "208.1", "136.9", "136.9", "136.9 (window 16)", "ACTIVE", "8"),
    ]


def test_verbose_lines_match_the_pattern_in_every_state(capsys):
    agent = ScriptedAgent(script(-3.25, then=-1000.0))
    loop(agent, plateau_threshold=2, dormant_threshold=3, verbose=True).run()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert all(LINE.fullmatch(line) for line in lines)
    assert lines[0].endswith("state=ACTIVE  interval=1")
    assert "state=COOLING" in lines[2]
    assert "state=DORMANT" in lines[3]


# ---- resume -----------------------------------------------------------------------------------


def resumable(directory, max_episodes, *, resume=False, recorder=None, curve=None, callbacks=None):
    curve = curve or (lambda t: 10.0 * math.sin(t / 3.0) + t / 2.0)
    agent = ScriptedAgent(curve, save_clock=True)
    optimizer = RLOptimizer(
        agent,
        pipeline(),
        evaluator=SkillEvaluator(),
        optimizer=HalvingOptimizer(),
        checkpoint_dir=directory,
        max_episodes=max_episodes,
        resume=resume,
        callbacks=([recorder] if recorder else []) + (callbacks or []),
        score_smoothing=2,
        noise_k=0.5,
        max_interval_episodes=1,
        plateau_threshold=3,
        dormant_threshold=50,
    )
    return agent, optimizer


def test_resume_continues_the_episode_counter_and_scheduler_state(tmp_path):
    straight = Recorder()
    _, whole = resumable(tmp_path / "whole", 30, recorder=straight)
    whole_report = whole.run()

    _, first = resumable(tmp_path / "run", 12)
    first_report = first.run()
    assert first_report.episodes == 12
    scheduler_state = first.scheduler.state_dict()
    env_steps = first.pipeline.env_steps

    resumed = Recorder()
    agent, second = resumable(tmp_path / "run", 30, resume=True, recorder=resumed)
    second.setup()
    assert second.episode == 12
    assert second.scheduler.state_dict() == scheduler_state
    assert second.pipeline.env_steps == env_steps
    assert second.optimizer.calls == first.optimizer.calls >= 1
    assert second.evidence.state_dict() == first.evidence.state_dict()
    assert second.best_snapshot is not None
    assert first_report.best_episode == 6
    assert agent.t == 12  # the latest snapshot, not the best (window 6)
    report = second.run()

    assert report.episodes == 30
    assert report.env_steps == whole_report.env_steps
    assert [e[0] for e in resumed.of("on_episode_end")] == list(range(13, 31))
    # The same decisions as a run that was never interrupted.
    assert resumed.scores() == straight.scores()[12:]
    assert second.scheduler.state_dict() == whole.scheduler.state_dict()
    assert report.best_score == whole_report.best_score
    assert report.best_episode == whole_report.best_episode
    assert agent.skill == whole.agent.skill


def saved_windows(monkeypatch, tmp_path, latest_seconds, interrupt_at=None):
    """The windows each ``latest`` snapshot of a 10-window run held, evaluated every 4th."""
    import optix_core.loop as loop_module

    monkeypatch.setattr(loop_module, "LATEST_SECONDS", latest_seconds)
    saved: list[int] = []
    save = CheckpointRegistry.save

    def recording(self, agent, **kwargs):
        if kwargs["kind"] == "latest":
            saved.append(kwargs["episode_id"])
        return save(self, agent, **kwargs)

    monkeypatch.setattr(CheckpointRegistry, "save", recording)

    def curve(t):
        if t == interrupt_at:
            raise KeyboardInterrupt
        return float(t)

    options = {"windows_per_evaluation": 4, "max_interval_episodes": 1, "max_episodes": 10}
    loop(ScriptedAgent(curve), checkpoint_dir=tmp_path, **options).run()
    return saved


def test_small_windows_are_saved_together_but_every_evaluated_window_and_the_last(
    monkeypatch, tmp_path
):
    # Windows far shorter than LATEST_SECONDS: the first is saved (the run can be
    # resumed at once), then those evaluated (4, 8) and the last.
    assert saved_windows(monkeypatch, tmp_path / "fast", 1e9) == [1, 4, 8, 10]
    # Windows that take longer than it: every one.
    assert saved_windows(monkeypatch, tmp_path / "slow", 0.0) == list(range(1, 11))
    # Interrupted in window 7: the state of window 4 is what a resume starts from.
    assert saved_windows(monkeypatch, tmp_path / "stopped", 1e9, interrupt_at=6) == [1, 4]


def test_a_run_interrupted_between_saves_resumes_as_the_run_never_interrupted(
    monkeypatch, tmp_path
):
    import optix_core.loop as loop_module

    monkeypatch.setattr(loop_module, "LATEST_SECONDS", 1e9)  # only evaluated windows are saved
    options = {
        "evaluator": SkillEvaluator(),
        "windows_per_evaluation": 4,
        "max_interval_episodes": 1,
        "max_episodes": 20,
        **EXACT,
    }

    def curve(t):
        return 10.0 * math.sin(t / 3.0) + t / 2.0

    def interrupted(t):
        if t == 6:
            raise KeyboardInterrupt  # in window 7: windows 5 and 6 were not saved
        return curve(t)

    straight = Recorder()
    whole = RLOptimizer(
        ScriptedAgent(curve, save_clock=True), pipeline(), callbacks=[straight], **options
    )
    whole_report = whole.run()
    RLOptimizer(
        ScriptedAgent(interrupted, save_clock=True), pipeline(), checkpoint_dir=tmp_path, **options
    ).run()

    resumed = Recorder()
    agent = ScriptedAgent(curve, save_clock=True)
    second = RLOptimizer(
        agent, pipeline(), checkpoint_dir=tmp_path, resume=True, callbacks=[resumed], **options
    )
    second.setup()
    assert second.episode == 4 and agent.t == 4
    report = second.run()
    assert [e[0] for e in resumed.of("on_episode_end")] == [8, 12, 16, 20]
    assert resumed.scores() == straight.scores()[1:]
    assert report.env_steps == whole_report.env_steps
    assert (report.best_episode, report.best_score) == (
        whole_report.best_episode,
        whole_report.best_score,
    )
    assert agent.skill == whole.agent.skill


def test_old_snapshots_without_resume_raise_file_exists(tmp_path):
    _, first = resumable(tmp_path, 3)
    first.run()
    _, second = resumable(tmp_path, 6)
    with pytest.raises(FileExistsError, match="resume=True"):
        second.run()


def test_resume_needs_a_checkpoint_dir_and_starts_a_run_that_has_none_yet(tmp_path):
    """A run killed before its first window has nothing to resume: it starts."""
    with pytest.raises(ValueError, match="checkpoint_dir"):
        RLOptimizer(ScriptedAgent(script(1)), pipeline(), resume=True)
    _, optimizer = resumable(tmp_path / "empty", 3, resume=True)
    report = optimizer.run()
    assert report.episodes == 3


# ---- construction ----------------------------------------------------------------------------


def test_agent_factory_builds_the_agent_from_hyperparams_at_run():
    calls = []

    def factory(params):
        calls.append(params)
        return ScriptedAgent(script(1, 2, 3), hyperparams=params)

    optimizer = RLOptimizer(
        agent_factory=factory,
        hyperparams={"learning_rate": 0.5, "gamma": 0.9},
        pipeline=pipeline(),
        evaluator=SkillEvaluator(),
        max_episodes=3,
        **DENSE,
    )
    assert calls == [] and optimizer.agent is None
    report = optimizer.run()
    assert calls == [{"learning_rate": 0.5, "gamma": 0.9}]
    agent = optimizer.agent
    assert isinstance(agent, ScriptedAgent)
    assert optimizer.pipeline.agent is agent
    assert agent.get_hyperparams().params == {"learning_rate": 0.5, "gamma": 0.9}
    assert report.best_score == 3 and agent.skill == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of agent= or agent_factory="),
        ({"agent": "both", "agent_factory": lambda p: None}, "exactly one"),
        ({"agent": "agent", "pipeline": None}, "needs a pipeline"),
        ({"agent": "agent", "max_episodes": 0}, "max_episodes"),
        ({"agent": "agent", "degradation_threshold": 1.5}, "degradation_threshold"),
        ({"agent": "agent", "solved_score": math.inf}, "solved_score"),
    ],
)
def test_invalid_arguments(kwargs, message):
    kwargs = dict(kwargs)
    if kwargs.get("agent") in ("agent", "both"):
        kwargs["agent"] = ScriptedAgent(script(1))
    kwargs.setdefault("pipeline", pipeline())
    with pytest.raises(ValueError, match=message):
        RLOptimizer(**kwargs)


# ---- real learning --------------------------------------------------------------------------


def test_cem_learns_cartpole_and_stops_by_itself():
    agent = make_agent("cem", "CartPole-v1", seed=0)
    pipe = VectorBatchPipeline(env_id="CartPole-v1", n_envs=8, window_size=500, seed=0)
    try:
        report = RLOptimizer(agent, pipe, dormant_threshold=10, max_interval_episodes=8).run()
    finally:
        pipe.close()
    assert report.final_state is LoopState.DORMANT
    assert report.stop_reason.startswith("converged")
    evaluation = evaluate_policy(agent, "CartPole-v1", episodes=20, seed=0)
    assert len(evaluation.returns) == 20
    assert evaluation.mean >= 475, str(evaluation)


# ---- the truth of a run: scores, the best, degradation, validation ----------------------


class EpisodesEvaluatorAgent(ScriptedAgent):
    """Acts with action 0 and counts the calls that could move its training state."""

    def __init__(self, curve):
        super().__init__(curve)
        self.act_info_calls = 0

    def act_info(self, observation, episode_start):
        self.act_info_calls += 1
        return self.act(observation), {"logp": np.zeros(len(observation), dtype=np.float32)}


def test_a_window_that_finished_no_episode_has_no_score():
    """Acrobot's episodes last 500 steps, so a 256-step window ends one at most
    every other window. Window 1's partial reward sum (-256) must not stand as a
    return better than any real one, and window 3, with nothing new, must not
    count as an evaluation without improvement."""
    agent = ScriptedAgent(script(1.0))
    recorder = Recorder()
    pipe = VectorBatchPipeline(env_id="Acrobot-v1", n_envs=1, window_size=256, seed=0)
    loop = RLOptimizer(agent, pipe, max_episodes=4, callbacks=[recorder], **DENSE)
    report = loop.run()
    scored = [episode for episode, _ in recorder.of("on_episode_end")]
    assert scored == [2, 4]  # episodes end at steps 500 and 1000
    first = recorder.of("on_episode_end")[0][1]
    assert first.primary_score == -500.0  # the whole first episode, a real return
    assert report.best_episode == 2
    assert loop.scheduler.n_evaluations == 2


def test_the_best_is_judged_on_fresh_episodes_and_ties_go_to_the_later_policy():
    agent = ScriptedAgent(script(1, 5, 5, 5, 4))
    recorder = Recorder()
    # Always pushing left, MountainCar's every episode scores -200: every candidate ties.
    selection = EvaluationSelection("MountainCar-v0", episodes=2)
    report = RLOptimizer(
        agent,
        pipeline(),
        evaluator=SkillEvaluator(),
        selection=selection,
        final_eval_episodes=3,
        max_episodes=5,
        callbacks=[recorder],
        **DENSE,
    ).run()
    judged = [m.metrics.get("selection_score") for _, m in recorder.of("on_episode_end")]
    assert judged[:4] == [-200.0] * 4 and judged[4] is None  # 4 is below the best 5: no cost
    assert [s.episode_id for (s,) in recorder.of("on_improvement")] == [1, 2, 3, 4]
    assert report.best_episode == 4 and agent.skill == 5  # the last of the tied policies
    # four candidates judged on two episodes, then the runoff of window 4 against
    # window 5 on four: a tie, so the best checkpoint stays
    assert report.selection_env_steps == 4 * 2 * 200 + 2 * 4 * 200
    assert report.runoff is not None and not report.runoff.final_wins
    assert report.final_eval is not None and len(report.final_eval.returns) == 3


class LateBalancer(ScriptedAgent):
    """Its training score follows the script, but its deterministic policy
    balances CartPole only from its ``learns``-th update on (pushing left until
    then), as MountainCarContinuous's greedy policy reaches the flag thousands of
    steps after the exploring one does."""

    def __init__(self, curve, learns: int) -> None:
        super().__init__(curve)
        self.learns = learns

    def act(self, observation, deterministic=False):
        if self.t < self.learns:
            return super().act(observation)
        return (observation[:, 2] + observation[:, 3] > 0).astype(np.int64)


@pytest.mark.parametrize("learns, stops_at", [(5, 8), (100, 5)])
def test_dormant_is_confirmed_on_the_policy_the_run_would_hand_back(learns, stops_at):
    """The training score is flat from window 2, so DORMANT falls due at window 5;
    judging's budget went on window 1, so nothing has judged the policy since.
    The loop judges it before it stops: a policy far better than the best
    checkpoint means learning goes on (and it becomes the best); one that ties
    confirms DORMANT."""
    agent = LateBalancer(script(1, 5), learns)
    selection = EvaluationSelection("CartPole-v1", episodes=2, max_share=1e-3)
    patience = {"dormant_threshold": 3, "plateau_threshold": 3}
    report = loop(agent, selection=selection, **patience).run()
    assert report.stop_reason.startswith("converged") and report.episodes == stops_at
    if learns < stops_at:  # confirmed at window 8, where the policy ties window 5's
        assert report.best_episode == 8 and report.best_score == 500.0
    else:  # the same pushing-left policy on the same episodes: a tie, to the later one
        assert report.best_episode == 5 and report.best_score < 20


class Balancer(ScriptedAgent):
    """Its deterministic policy balances CartPole while its skill is at least
    10, and pushes left (about nine steps an episode) below that."""

    def act(self, observation, deterministic=False):
        if self.skill < 10:
            return super().act(observation)
        return (observation[:, 2] + observation[:, 3] > 0).astype(np.int64)


class LuckyJudgement(EvaluationSelection):
    """A selection whose judgments are scripted by window (the winner's curse:
    window 2's few episodes overstate its policy), and whose runoff plays real
    episodes."""

    def __init__(self, judged: dict[int, float], runoff_episodes: int | None = None) -> None:
        super().__init__("CartPole-v1", episodes=2, runoff_episodes=runoff_episodes)
        self.judged = judged

    def judge(self, agent, window, metrics, decision):
        if window not in self.judged:
            return None
        return Candidate(window, self.judged[window], decision.smoothed, 5, 1.0)


@pytest.mark.parametrize(
    "skills, judged, handed_back",
    [
        # window 2 was judged far above its worth; the final policy balances
        ((1, 1, 1, 1, 10), {2: 1000.0, 4: 100.0}, 5),
        # window 2 balances, and the final policy has collapsed (A2C on LunarLander)
        ((1, 10, 10, 1, 1), {2: 500.0, 3: 400.0}, 2),
    ],
)
def test_the_best_checkpoint_meets_the_final_policy_in_a_runoff(skills, judged, handed_back):
    agent = Balancer(script(*skills))
    recorder = Recorder()
    report = RLOptimizer(
        agent,
        pipeline(),
        evaluator=SkillEvaluator(),
        selection=LuckyJudgement(judged),
        max_episodes=5,
        callbacks=[recorder],
        **DENSE,
    ).run()
    runoff = report.runoff
    assert runoff is not None and (runoff.best_window, runoff.final_window) == (2, 5)
    assert len(runoff.best.returns) == len(runoff.final.returns) == 4  # twice the judging's 2
    assert report.best_episode == handed_back
    assert agent.skill == skills[handed_back - 1]
    assert report.selection_env_steps == runoff.best.env_steps + runoff.final.env_steps
    assert "runoff" in report.format().lower() and report.to_dict()["runoff"]["winner"]
    improved = [s.episode_id for (s,) in recorder.of("on_improvement")]
    assert improved == ([2, 5] if handed_back == 5 else [2])
    if handed_back == 5:  # scored on the runoff's episodes, which are fair to it
        assert report.best_score == runoff.final.mean == 500.0


class TailRunoff(LuckyJudgement):
    """Its runoff's best checkpoint (skill 1) fails one start in ten, where the
    final policy (skill 10) scores a steady -82; it records who played which round."""

    def __init__(self) -> None:
        super().__init__({2: 1000.0})
        self.plays: list[tuple[float, int]] = []

    def runoff(self, agent, number=0):
        self.plays.append((agent.skill, number))
        returns = [-82.0] * 10 if agent.skill == 10 else [-80.0] * 9 + [-500.0]
        return PolicyEvaluation(np.array(returns), np.zeros(10))  # costs no env steps


def test_an_undecided_runoff_plays_more_rounds_each_policy_on_its_own_weights():
    """Ten episodes cannot tell a policy that fails one start in ten from its
    rival; the runoff plays on, and the means of four rounds decide."""
    agent = Balancer(script(1, 1, 1, 1, 10))
    selection = TailRunoff()
    report = RLOptimizer(
        agent, pipeline(), evaluator=SkillEvaluator(), selection=selection, max_episodes=5, **DENSE
    ).run()
    assert selection.plays == [(skill, number) for number in range(4) for skill in (10, 1)]
    assert report.runoff.rounds == 4
    assert report.best_episode == 5 and agent.skill == 10


def test_the_runoff_outcome_is_saved_for_a_resume(tmp_path):
    agent = Balancer(script(1, 1, 1, 1, 10))
    RLOptimizer(
        agent,
        pipeline(),
        evaluator=SkillEvaluator(),
        selection=LuckyJudgement({2: 1000.0}),
        checkpoint_dir=tmp_path,
        max_episodes=5,
        **DENSE,
    ).run()
    registry = CheckpointRegistry(tmp_path)
    latest = json.loads((Path(registry.snapshots("latest")[0].path) / "manifest.json").read_text())
    assert latest["loop_state"]["best"]["window"] == 5
    assert registry.snapshots("best")[0].episode_id == 5


class StopAt(LoopCallback):
    def __init__(self, window: int) -> None:
        self.window = window

    def on_loop_start(self, loop):
        self.loop = loop

    def on_episode_end(self, episode_id, metrics):
        if episode_id == self.window:
            self.loop.stop()


@pytest.mark.parametrize("case", ["no runoff episodes", "stop()", "the best is final"])
def test_no_runoff_without_episodes_on_a_request_to_stop_or_when_the_best_is_final(case):
    final_skill, judged = (
        (20, {2: 1000.0, 5: 2000.0}) if case == "the best is final" else (10, {2: 1000.0})
    )
    report = RLOptimizer(
        Balancer(script(1, 1, 1, 1, final_skill)),
        pipeline(),
        evaluator=SkillEvaluator(),
        selection=LuckyJudgement(judged, runoff_episodes=0 if case.startswith("no") else None),
        max_episodes=10 if case == "stop()" else 5,
        callbacks=[StopAt(5)],
        **DENSE,
    ).run()
    assert report.episodes == 5
    assert report.runoff is None and report.selection_env_steps == 0


def test_a_second_interrupt_during_the_final_evaluation_still_returns_the_report():
    class Impatient(EvaluationSelection):
        def report(self, agent, episodes=20):
            raise KeyboardInterrupt  # Ctrl-C pressed again while the report's episodes run

    def curve(t):
        if t == 3:
            raise KeyboardInterrupt
        return [3.0, 8.0, 4.0][t]

    agent = ScriptedAgent(curve)
    report = RLOptimizer(
        agent,
        pipeline(),
        evaluator=SkillEvaluator(),
        selection=Impatient("CartPole-v1", episodes=1),
        final_eval_episodes=3,
        **DENSE,
    ).run()
    assert report.stop_reason == "interrupted; final evaluation skipped"
    assert report.final_eval is None and report.best_episode == 2
    assert agent.skill == 8  # the best policy is still the one handed back


def test_degradation_is_measured_on_the_training_scale_whatever_the_selection():
    """The selection prefers the window-1 policy; a later collapse of the training
    score is still a degradation (measured against the best training score)."""
    agent = ScriptedAgent(script(1, 10, 10, 10, 10, 10, 10, 1, 1))
    recorder = Recorder()
    loop(
        agent,
        checkpoint_score_fn=lambda a: -abs(a.skill - 1),
        min_episodes_before_degradation=1,
        rollback_on_degradation=True,
        max_episodes=8,
        callbacks=[recorder],
    ).run()
    assert [e for e, _ in recorder.of("on_degradation")] == [8]
    assert agent.skill == 1  # rolled back to, and ending with, the selected policy


def test_a_validation_pipeline_only_acts():
    agent = EpisodesEvaluatorAgent(script(1, 2, 3))
    train = VectorBatchPipeline(env_id="CartPole-v1", n_envs=1, window_size=4, seed=0)
    val = VectorBatchPipeline(env_id="CartPole-v1", n_envs=1, window_size=64, seed=1)
    RLOptimizer(
        agent, train, val_pipeline=val, evaluator=SkillEvaluator(), max_episodes=3, **DENSE
    ).run()
    assert agent.act_info_calls == 3 * 4  # the training windows' steps, none of validation's


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_neither_crashes_a_checkpointed_run_nor_disables_the_margin(
    bad, tmp_path
):
    scores = [1.0, 2.0, 1.5, 0.0, 2.5, 1.0, 2.0]

    class BrokenOnce(SkillEvaluator):
        def score(self, episode_data, train_diagnostics):
            metrics = super().score(episode_data, train_diagnostics)
            if episode_data.episode_id == 4:
                metrics.primary_score = bad
            return metrics

    agent = ScriptedAgent(lambda t: scores[min(t, len(scores) - 1)], save_clock=True)
    optimizer = RLOptimizer(
        agent,
        pipeline(),
        evaluator=BrokenOnce(),
        checkpoint_dir=tmp_path,
        max_episodes=len(scores),
        max_interval_episodes=1,
        noise_k=0.0,
    )
    report = optimizer.run()
    assert report.episodes == len(scores)
    assert all(math.isfinite(x) for x in optimizer.scheduler.state_dict()["raw"])
    assert optimizer.scheduler.noise() > 0  # the margin still rests on the finite scores
    assert report.best_score == pytest.approx(2.0)  # smoothed (1.5 + 2.5) / 2: bad never counted


def test_max_env_steps_stops_at_the_first_window_past_the_budget():
    report = loop(ScriptedAgent(script(1)), max_env_steps=5).run()
    assert report.env_steps == 6 and report.episodes == 3  # windows of 2 steps
    assert report.stop_reason == "max_env_steps (5) reached"


def test_the_agent_ends_with_the_policy_the_selection_chose_not_the_top_score(tmp_path):
    from optix_core.selection import CheckpointSelection

    class NoisyJudge(CheckpointSelection):
        """Judges window w at 10 - w / 4 with a standard error of 1: all tie."""

        def judge(self, agent, window, metrics, decision):
            return Candidate(window, 10.0 - window / 4, decision.smoothed, 5, 1.0)

    agent = ScriptedAgent(script(1, 2, 3, 4), save_clock=True)
    report = loop(agent, selection=NoisyJudge(), checkpoint_dir=tmp_path, max_episodes=4).run()
    assert report.best_episode == 4 and agent.skill == 4  # 9.0 ties the peak 9.75 within 1.41
    assert report.best_score == 9.0
