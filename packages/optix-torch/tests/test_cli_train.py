"""`optix train` with optix-torch installed: PPO by default, to DORMANT, with its report."""

from __future__ import annotations

import itertools
import json

import pytest

from optix_core.cli import main
from optix_core.runs import REPORT, TrainConfig


def train(env_id: str, tmp_path, capsys, *argv: str) -> tuple[dict, TrainConfig, str]:
    code = main(["train", env_id, "--seed", "0", "--run-dir", str(tmp_path), *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    (run_dir,) = tmp_path.iterdir()
    return json.loads((run_dir / REPORT).read_text()), TrainConfig.load(run_dir), out


def test_a_backend_alone_trains_its_preferred_algorithm(tmp_path, capsys) -> None:
    argv = ["train", "CartPole-v1", "--backend", "torch", "--max-windows", "1"]
    assert main([*argv, "--seed", "0", "--run-dir", str(tmp_path)]) == 0
    assert "training ppo (torch) on CartPole-v1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env_id", "algo", "env_kwargs", "said"),
    [
        ("Acrobot-v1", "a2c", [], "a2c uses its tuned settings for Acrobot-v1"),
        ("CartPole-v1", "ppo", [], "ppo uses its tuned settings for CartPole-v1"),
        (
            "CartPole-v1",
            "rainbow",
            [],
            "rainbow has no tuned settings for CartPole-v1 and trains on its defaults; "
            "a2c, dqn, ppo have them (--algo)",
        ),
        ("optix-tests/Catch-v0", "ppo", [], None),  # no algorithm has: nothing to say
        (
            "CartPole-v1",
            "ppo",
            ["max_episode_steps=100"],
            "ppo uses its tuned settings for CartPole-v1, tuned on it as registered, not "
            "with max_episode_steps=100",
        ),
        (  # DQN's LunarLander preset is no help to SAC on continuous LunarLander
            "LunarLander-v3",
            "sac",
            ["continuous=true"],
            "sac has no tuned settings for LunarLander-v3 and trains on its defaults; "
            "a2c, ppo have them (--algo)",
        ),
    ],
)
def test_it_says_whether_the_algorithm_has_tuned_settings_for_the_environment(
    env_id, algo, env_kwargs, said, tmp_path, capsys
) -> None:
    from optix_core.testing import toy_envs  # noqa: F401 - registers optix-tests/*

    argv = ["train", env_id, "--algo", algo, "--max-windows", "1", "--seed", "0"]
    argv += [arg for pair in env_kwargs for arg in ("--env-kwarg", pair)]
    assert main([*argv, "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    if said is None:
        assert "tuned settings" not in out
    else:
        assert said in out
        assert out.index(said) < out.index("optix: training")


@pytest.mark.parametrize(
    ("env_id", "algo", "solved"),
    [("CartPole-v1", "ppo", 475.0), ("CartPole-v1", "dqn", 475.0), ("Pendulum-v1", "sac", None)],
)
def test_every_agent_gets_the_same_patience_and_the_run_keeps_its_solved_score(
    env_id, algo, solved, tmp_path, capsys
) -> None:
    argv = ["train", env_id, "--algo", algo, "--max-windows", "1", "--seed", "0"]
    assert main([*argv, "--run-dir", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    loop = TrainConfig.load(run_dir).loop
    assert (loop["relative_patience"], loop["unsolved_patience"]) == (0.5, 3.0)
    assert loop.get("solved_score") == solved


def test_online_tuning_keeps_the_backed_off_schedule_it_needs(tmp_path) -> None:
    argv = ["train", "Pendulum-v1", "--tune", "--max-windows", "1", "--seed", "0"]
    assert main([*argv, "--run-dir", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    loop = TrainConfig.load(run_dir).loop
    assert (loop["max_interval_episodes"], loop["relative_patience"]) == (8, 0.0)


def test_a_presets_network_is_built_kept_in_the_run_and_rebuilt_to_evaluate(
    tmp_path, capsys
) -> None:
    """MountainCarContinuous's SAC preset is the zoo's, [64, 64] networks and gSDE
    included: the run records the network, and --resume, optix eval and export
    build that one again (a checkpoint refuses any other)."""
    # four windows of 256 steps: the first 999-step episode ends, a checkpoint is judged
    argv = ["train", "MountainCarContinuous-v0", "--algo", "sac", "--max-windows", "4"]
    assert (
        main([*argv, "--seed", "0", "--selection-episodes", "1", "--run-dir", str(tmp_path)]) == 0
    )
    (run_dir,) = tmp_path.iterdir()
    config = TrainConfig.load(run_dir)
    assert config.network == {"hidden": [64, 64]} and config.hyperparams["use_sde"]
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    assert "MountainCarContinuous-v0 sac (torch)" in capsys.readouterr().out
    assert main(["train", "--resume", str(run_dir), "--max-windows", "5"]) == 0


def test_dqn_on_mountaincar_acts_fresh_and_is_scored_every_256_steps(tmp_path, capsys) -> None:
    """The preset's 16-step windows (the zoo's train_freq, so the acting policy is
    as fresh as SB3's) are scored at most once every 256 env steps (each time a
    200-step episode has ended since), not at every window that ends one."""
    report, config, out = train(
        "MountainCar-v0", tmp_path, capsys, "--algo", "dqn", "--max-windows", "160"
    )
    assert "dqn uses its tuned settings for MountainCar-v0" in out
    assert (config.n_envs, config.window_size) == (1, 16)
    assert config.hyperparams["exploration_steps"] == 24_000
    (run_dir,) = tmp_path.iterdir()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [line["env_steps"] for line in lines]
    assert len(steps) >= 4 and all(b - a >= 256 for a, b in itertools.pairwise(steps))
    assert report["stop_reason"].startswith("max_episodes")


@pytest.mark.slow
def test_optix_train_cartpole_runs_torch_ppo_to_dormant_and_reports(tmp_path, capsys) -> None:
    report, config, out = train("CartPole-v1", tmp_path, capsys)
    assert (config.algo, config.backend) == ("ppo", "torch")
    assert report["final_state"] == "DORMANT"
    assert report["stop_reason"].startswith("converged: DORMANT")
    assert "state=DORMANT" in out and "Training Complete" in out
    assert report["final_eval"]["mean"] >= 495
    lines = [json.loads(x) for x in (next(tmp_path.iterdir()) / "metrics.jsonl").open()]
    runoff = report["runoff"]
    if runoff and runoff["winner"] == "final":  # the last policy beat the best checkpoint
        assert report["best_score"] == runoff["final"]["mean"]
    else:
        assert lines[-1]["best"] == report["best_score"]
        chosen = next(line for line in lines if line["window"] == report["best_window"])
        assert chosen["selection"] == report["best_score"]  # judged on its own episodes
    # Judging is held to a quarter of the training env steps, one judgment over at most,
    # plus the one that confirms DORMANT on the policy handed back (once the best scores
    # CartPole's 500 no policy can beat it, so DORMANT is confirmed at its first check)
    # and the runoff's two policies on ten episodes each.
    judging = report["selection_env_steps"]
    assert judging <= 0.25 * report["env_steps"] + 2 * 5 * 500 + 2 * 10 * 500


@pytest.mark.slow
def test_optix_train_pendulum_uses_the_tuned_preset_and_runs_to_dormant(tmp_path, capsys) -> None:
    report, config, out = train("Pendulum-v1", tmp_path, capsys)
    assert "ppo uses its tuned settings for Pendulum-v1" in out
    assert config.hyperparams["gamma"] == 0.9
    assert (config.n_envs, config.window_size) == (4, 1024)
    assert report["final_state"] == "DORMANT"
    assert "Training Complete" in out
    assert report["final_eval"]["mean"] >= -250  # a random policy scores about -1200


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_optix_train_mountaincar_explores_by_gsde_and_reaches_the_flag(
    algo, tmp_path, capsys
) -> None:
    """On their defaults PPO and A2C stand still at 0.0 here (the car never sees the
    flag); the zoo's presets explore by gSDE. Exploring is not finding on every seed:
    PPO's seed 0 reached the flag on one CPU and not on another (float rounding takes
    the runs apart; benchmarks/README.md), so PPO is checked on seed 1, which did on both."""
    seed = {"ppo": "1", "a2c": "0"}[algo]
    report, config, out = train(
        "MountainCarContinuous-v0", tmp_path, capsys, "--algo", algo, "--seed", seed
    )
    assert f"{algo} uses its tuned settings for MountainCarContinuous-v0" in out
    assert config.hyperparams["use_sde"] and config.network == {"ortho_init": False}
    assert report["final_state"] == "DORMANT"
    assert report["final_eval"]["mean"] >= 90  # the flag is worth 100, less the fuel
