"""Exported policies (ONNX, TorchScript) act exactly as the agent does, without optix.

Every model is run by the runtime a deployment would use (onnxruntime,
``torch.jit.load``) on batches of a size other than the one it was traced
with, and compared with ``agent.act(obs, deterministic=True)``. onnxruntime
is in the workspace's dev group: without it these tests fail, they never skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from optix_core import make_agent
from optix_core.cli import main
from optix_core.cli.args import build_agent, restore_checkpoint
from optix_core.registry import backends
from optix_core.runs import TrainConfig
from optix_core.specs import load_object
from optix_core.testing import toy_envs  # noqa: F401 - registers the optix-tests/ environments
from optix_torch import export
from optix_torch.export import export_policy
from optix_torch.policies import observations as O

# torch 2.15 deprecates TorchScript; loading a model is still what a TorchScript user does.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
FORMATS = ("onnx", "torchscript")
ENVS = [
    "CartPole-v1",  # Box of floats → Discrete
    "Pendulum-v1",  # → Box, squashed Gaussian
    "optix-tests/MultiDiscreteMatch-v0",  # → MultiDiscrete
    "optix-tests/DictGoal-v0",  # Dict of a Discrete index and a Box
    "optix-tests/IndexMatch-v0",  # MultiDiscrete indices, one-hot in the network
    "optix-tests/Catch-v0",  # uint8 image
]


def ppo(env_id: str, algo: str = "ppo") -> tuple[object, gym.Space]:
    """An agent whose weights are scrambled (a fresh policy head acts almost
    uniformly, which would hide a wrong export) and its observation space."""
    env = gym.make(env_id)
    agent = make_agent(algo, env, backend="torch", device="cpu", seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in agent.policy_module().parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return agent, env.observation_space


def observations(space: gym.Space, n: int, seed: int = 1) -> object:
    space.seed(seed)
    return O.stack([space.sample() for _ in range(n)])


def as_inputs(obs: object, space: gym.Space) -> list[np.ndarray]:
    """The exported model's inputs: one array per observation array (a Dict's keys
    sorted), in the dtype ``act`` feeds the network (floating data as float32)."""
    arrays = [obs[k] for k in export.input_names(space)] if isinstance(obs, dict) else [obs]
    return [
        np.asarray(a, np.float32) if np.issubdtype(np.asarray(a).dtype, np.floating) else a
        for a in map(np.asarray, arrays)
    ]


def run_onnx(path: Path, obs: object, space: gym.Space) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == export.input_names(space)
    return session.run(["actions"], dict(zip(names, as_inputs(obs, space), strict=True)))[0]


def run_torchscript(path: Path, obs: object, space: gym.Space) -> np.ndarray:
    model = torch.jit.load(str(path))
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in as_inputs(obs, space))).numpy()


RUNNERS = {"onnx": run_onnx, "torchscript": run_torchscript}


def assert_same_actions(got: np.ndarray, want: np.ndarray, space: gym.Space) -> None:
    assert got.shape == want.shape
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_exported_policy_standardizes_observations_as_the_agent_does(algo, fmt, tmp_path):
    env = gym.make("CartPole-v1")
    hp = {"normalize_observations": True}
    agent = make_agent(algo, env, backend="torch", hyperparams=hp, device="cpu", seed=0)
    space = env.observation_space
    rng = np.random.default_rng(0)
    agent.obs_normalizer.update(rng.normal([1.0, -2.0, 0.1, 3.0], [0.5, 2.0, 0.05, 4.0], (500, 4)))
    path = tmp_path / f"policy.{fmt}"
    export_policy(agent, path, fmt, space)
    obs = rng.normal([1.0, -2.0, 0.1, 3.0], [0.5, 2.0, 0.05, 4.0], (64, 4)).astype(np.float32)
    want = agent.act(obs, deterministic=True)
    assert 0 < want.mean() < 1  # both actions: a policy that ignored its input would not show
    assert_same_actions(RUNNERS[fmt](path, obs, space), want, space)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("env_id", ENVS)
def test_the_exported_policy_acts_as_the_agent_does(env_id, fmt, tmp_path):
    agent, space = ppo(env_id)
    path = tmp_path / f"policy.{fmt}"
    written = export_policy(agent, path, fmt, space)
    assert written["path"] == str(path) and written["format"] == fmt
    assert [i["name"] for i in written["inputs"]] == export.input_names(space)
    assert all(i["shape"][0] == "batch" for i in [*written["inputs"], written["output"]])
    for n in (1, 7):  # neither is the batch it was traced with
        obs = observations(space, n)
        want = agent.act(obs, deterministic=True)
        assert_same_actions(RUNNERS[fmt](path, obs, space), want, space)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_inputs_are_named_after_the_dict_keys_in_the_dtypes_the_env_gives(tmp_path):
    agent, space = ppo("optix-tests/DictGoal-v0")
    written = export_policy(agent, tmp_path / "p.onnx", "onnx", space)
    assert written["inputs"] == [
        {"name": "goal", "shape": ["batch"], "dtype": "int64"},
        {"name": "noise", "shape": ["batch", 2], "dtype": "float32"},
    ]
    assert written["output"] == {"name": "actions", "shape": ["batch"], "dtype": "int64"}
    agent, space = ppo("optix-tests/Catch-v0")
    written = export_policy(agent, tmp_path / "c.pt", "torchscript", space)
    assert written["inputs"] == [{"name": "obs", "shape": ["batch", 10, 5, 1], "dtype": "uint8"}]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("algo", "env_id"),
    [
        ("a2c", "CartPole-v1"),
        ("dqn", "CartPole-v1"),
        ("dqn", "optix-tests/Catch-v0"),  # QNetwork: an image extractor
        ("rainbow", "CartPole-v1"),  # noisy layers at their mean, C51's expected Q
        ("sac", "Pendulum-v1"),  # tanh of the Gaussian's mean, scaled to the bounds
        ("td3", "optix-tests/PointAtImage-v0"),  # an image extractor
    ],
)
def test_the_other_feed_forward_algorithms_export_like_ppo(algo, env_id, fmt, tmp_path):
    agent, space = ppo(env_id, algo=algo)
    export_policy(agent, tmp_path / algo, fmt, space)
    obs = observations(space, 5)
    want = agent.act(obs, deterministic=True)
    assert_same_actions(RUNNERS[fmt](tmp_path / algo, obs, space), want, space)


def test_the_exported_models_run_where_optix_cannot_be_imported(tmp_path):
    agent, space = ppo("optix-tests/DictGoal-v0")
    for fmt in FORMATS:
        export_policy(agent, tmp_path / fmt, fmt, space)
    obs = observations(space, 4)
    np.savez(tmp_path / "obs.npz", goal=obs["goal"], noise=obs["noise"].astype(np.float32))
    script = f"""
import sys
for name in ("optix_core", "optix_torch"):
    sys.modules[name] = None  # any import of optix fails
import json, numpy as np, onnxruntime as ort, torch
d = np.load({str(tmp_path / "obs.npz")!r})
s = ort.InferenceSession({str(tmp_path / "onnx")!r})
onnx = s.run(["actions"], {{"goal": d["goal"], "noise": d["noise"]}})[0]
ts = torch.jit.load({str(tmp_path / "torchscript")!r})(
    torch.from_numpy(d["goal"]), torch.from_numpy(d["noise"]))
print(json.dumps([onnx.tolist(), ts.tolist()]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    want = agent.act(obs, deterministic=True).tolist()
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [want, want]


class NoPolicyAgent:
    """An agent of an algorithm that does not offer ``policy_module()``."""

    algorithm = "recurrent-ppo"


class LenBatch(nn.Module):
    """A policy that takes its batch size from len(): a trace freezes it."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.sum(-1).reshape(len(obs), 1)


class LenBatchAgent:
    algorithm = "len-batch"

    def policy_module(self) -> nn.Module:
        return LenBatch()


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_agent_without_policy_module_is_refused_by_name_before_any_work(fmt, tmp_path):
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(
        ValueError, match=r"^recurrent-ppo cannot be exported yet: .*policy_module\(\)"
    ):
        export_policy(NoPolicyAgent(), tmp_path / "p", fmt, space)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_is_refused(tmp_path):
    agent, space = ppo("CartPole-v1")
    with pytest.raises(ValueError, match="unknown export format 'tflite': choose one of onnx"):
        export_policy(agent, tmp_path / "p", "tflite", space)


def test_missing_onnx_packages_are_named_with_the_extra_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "ONNX_PACKAGES", ("onnx", "no_such_onnx_package"))
    agent, space = ppo("CartPole-v1")
    with pytest.raises(ValueError, match=r"needs no_such_onnx_package: .*optix-torch\[onnx\]"):
        export_policy(agent, tmp_path / "p.onnx", "onnx", space)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_frozen_batch_axis_is_refused_and_the_previous_file_kept(fmt, tmp_path):
    path = tmp_path / "policy"
    path.write_text("the previous export")
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    with pytest.raises(ValueError, match=r"batch size is frozen .*tensor\.shape\[0\]"):
        export_policy(LenBatchAgent(), path, fmt, space)
    assert path.read_text() == "the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["policy"]


def test_exporting_leaves_the_agent_as_it_was(tmp_path):
    agent, space = ppo("optix-tests/Catch-v0")
    obs = observations(space, 6)
    before = agent.act(obs, deterministic=True)
    params = {n: p.detach().clone() for n, p in agent.policy_module().named_parameters()}
    modes = [m.training for m in agent.modules().values()]
    for fmt in FORMATS:
        export_policy(agent, tmp_path / fmt, fmt, space)
    after = dict(agent.policy_module().named_parameters())
    assert all(p.requires_grad and torch.equal(p, params[n]) for n, p in after.items())
    assert [m.training for m in agent.modules().values()] == modes
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), before)


def test_the_torch_backend_registers_its_exporter():
    (spec,) = [s for s in backends() if s.name == "torch"]
    assert spec.export == "optix_torch.export:export_policy"
    assert load_object(spec.export) is export_policy


def test_optix_export_writes_the_best_checkpoint_as_onnx_that_acts_like_it(tmp_path, capsys):
    argv = ["train", "CartPole-v1", "--max-windows", "2", "--selection-episodes", "1"]
    assert main([*argv, "--seed", "0", "--run-dir", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    capsys.readouterr()

    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    path = run_dir / "policy.onnx"
    assert f"onnx: {path}" in out
    assert "input  obs: float32[batch, 4]" in out and "output actions: int64[batch]" in out
    assert "onnxruntime as ort" in out  # the command that runs it

    config = TrainConfig.load(run_dir)
    agent = build_agent(config.algo, config.env_id, config.backend, config.hyperparams, "cpu", 0)
    manifest = restore_checkpoint(agent, run_dir, "best")
    assert f"{manifest['snapshot_id']} (window {manifest['episode_id']})" in out
    space = gym.make("CartPole-v1").observation_space
    obs = observations(space, 64)
    want = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(run_onnx(path, obs, space), want)


def test_optix_export_of_a_run_without_checkpoints_is_a_usage_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    TrainConfig("CartPole-v1", "ppo", "torch", "auto", 0, {}, 1, 8).save(run_dir)
    assert main(["export", str(run_dir), "--format", "torchscript"]) == 2
    assert capsys.readouterr().err == f"optix: error: {run_dir} has no best checkpoint yet\n"
