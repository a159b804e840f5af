"""``optix export`` in optix-core: arguments, checkpoints and errors, with no framework.

The export itself is the backend's (optix-torch's is tested with onnxruntime
in its own suite); here a test plugin registers a backend named "numpy",
whose exporter writes the CEM agent's deterministic actions as JSON, so the
command's own work is tested on a framework-free run.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from optix_core.cli import main
from optix_core.cli.export import describe, run_command
from optix_core.plugins import get_registry, reset_registry
from optix_core.runs import TrainConfig
from optix_core.specs import BackendSpec

CHECKPOINTS = "checkpoints"


def write_actions(agent, path, format, observation_space) -> dict:
    """The test backend's exporter: the agent's deterministic actions on fixed observations."""
    if format != "onnx":
        raise ValueError(f"the test backend exports onnx only, not {format}")
    space = gym.spaces.Box(-1, 1, observation_space.shape, np.float32, seed=0)
    obs = np.stack([space.sample() for _ in range(8)])
    Path(path).write_text(json.dumps(np.asarray(agent.act(obs, deterministic=True)).tolist()))
    return {
        "path": str(path),
        "format": format,
        "inputs": [{"name": "obs", "shape": ["batch", 4], "dtype": "float32"}],
        "output": {"name": "actions", "shape": ["batch"], "dtype": "int64"},
    }


def backend(export: str | None) -> BackendSpec:
    return BackendSpec(
        name="numpy",
        distribution="test-plugin",
        list_devices="builtins:list",
        resolve_device="builtins:str",
        seed="builtins:int",
        export=export,
    )


@pytest.fixture
def numpy_backend():
    """Registers the test backend (``numpy_backend(export=...)``); forgotten afterwards."""

    def install(export: str | None = f"{__name__}:write_actions") -> None:
        registry = get_registry()
        registry.ensure_loaded()
        registry._registrar(BackendSpec, "test-plugin")(backend(export))

    reset_registry()
    yield install
    reset_registry()


@pytest.fixture(scope="module")
def cem_run(tmp_path_factory) -> Path:
    """A two-window CEM run: one best snapshot, and latest ones after it."""
    root = tmp_path_factory.mktemp("runs")
    argv = ["train", "CartPole-v1", "--algo", "cem", "--max-windows", "2", "--seed", "0"]
    assert main([*argv, "--selection-episodes", "1", "--run-dir", str(root)]) == 0
    (run_dir,) = root.iterdir()
    return run_dir


def snapshots(run_dir: Path, kind: str) -> list[str]:
    return sorted(p.name for p in (run_dir / CHECKPOINTS).glob(f"{kind}-*"))


def export(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_usage_error(result: tuple[int, str, str], says: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("optix: error: "), err
    assert says in err, err


def test_export_writes_the_best_checkpoint_beside_the_run_and_says_how_to_run_it(
    cem_run, numpy_backend, capsys
):
    numpy_backend()
    capsys.readouterr()
    code, out, _ = export(capsys, str(cem_run), "--format", "onnx")
    assert code == 0
    path = cem_run / "policy.onnx"
    assert len(json.loads(path.read_text())) == 8
    best = snapshots(cem_run, "best")[-1]
    assert f"optix: exported CartPole-v1 cem (numpy) {best} (window" in out
    assert f"onnx: {path}" in out
    assert "input  obs: float32[batch, 4]" in out and "output actions: int64[batch]" in out
    assert "python -c" in out and "ort.InferenceSession" in out


def test_checkpoint_picks_latest_or_a_snapshot_by_path_or_name(
    cem_run, numpy_backend, capsys, tmp_path
):
    numpy_backend()
    latest = snapshots(cem_run, "latest")[-1]
    code, out, _ = export(
        capsys, str(cem_run), "--format", "onnx", "--checkpoint", "latest",
        "--output", str(tmp_path / "latest.onnx"),
    )  # fmt: skip
    assert code == 0 and f" {latest} (window" in out
    best = snapshots(cem_run, "best")[-1]
    for given in (best, str(cem_run / CHECKPOINTS / best)):
        output = tmp_path / "by-path.onnx"
        code, out, _ = export(
            capsys, str(cem_run), "--format", "onnx", "--checkpoint", given, "--output", str(output)
        )
        assert code == 0 and f" {best} (window" in out
        assert output.read_text() == (cem_run / "policy.onnx").read_text()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--checkpoint", "no-such-snapshot"], "--checkpoint no-such-snapshot is neither best"),
        (["--output", "no/such/dir/p.onnx"], "directory no/such/dir does not exist"),
        (["--format", "torchscript"], "the test backend exports onnx only, not torchscript"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(extra, says, cem_run, numpy_backend, capsys):
    numpy_backend()
    argv = [str(cem_run), "--format", "onnx", *extra]
    assert_usage_error(export(capsys, *argv), says)


def test_an_output_that_is_a_directory_is_refused(cem_run, numpy_backend, capsys, tmp_path):
    numpy_backend()
    result = export(capsys, str(cem_run), "--format", "onnx", "--output", str(tmp_path))
    assert_usage_error(result, "is a directory; give a file name")


def test_a_tampered_snapshot_is_refused(cem_run, numpy_backend, capsys, tmp_path):
    numpy_backend()
    best = cem_run / CHECKPOINTS / snapshots(cem_run, "best")[-1]
    copy = tmp_path / best.name
    subprocess.run(["cp", "-r", str(best), str(copy)], check=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["score"] = 1e9
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = export(capsys, str(cem_run), "--format", "onnx", "--checkpoint", str(copy))
    assert_usage_error(result, "refused")


def test_a_backend_without_an_exporter_is_named(cem_run, numpy_backend, capsys):
    numpy_backend(export=None)
    result = export(capsys, str(cem_run), "--format", "onnx")
    assert_usage_error(result, "the numpy backend (test-plugin) has no exporter")


def test_an_exporter_that_cannot_be_imported_is_named(cem_run, numpy_backend, capsys):
    numpy_backend(export="no_such_module:export_policy")
    result = export(capsys, str(cem_run), "--format", "onnx")
    assert_usage_error(result, "exporter no_such_module:export_policy failed to load")


def test_a_backend_no_plugin_registers_cannot_export(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    TrainConfig("CartPole-v1", "ppo", "mxnet", "auto", 0, {}, 1, 8).save(run_dir)
    result = export(capsys, str(run_dir), "--format", "onnx")
    assert_usage_error(
        result, "the run's 'mxnet' backend has no exporter: no installed plugin registers"
    )
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]


def test_a_missing_run_is_a_usage_error(tmp_path, capsys):
    result = export(capsys, str(tmp_path / "nope"), "--format", "onnx")
    assert_usage_error(result, "does not exist")


@pytest.mark.parametrize("argv", [["run"], ["run", "--format", "tflite"]])
def test_format_is_required_and_one_of_onnx_or_torchscript(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", *argv])
    assert exc.value.code == 2
    assert "--format" in capsys.readouterr().err


def test_backend_spec_export_must_be_a_module_callable_reference():
    with pytest.raises(ValueError, match="export must be 'module:callable'"):
        backend("optix_torch.export.export_policy")
    assert backend(None).export is None


def test_the_printed_commands_feed_every_input_in_its_dtype():
    written = {
        "path": "runs/it's here/policy.onnx",
        "format": "onnx",
        "inputs": [
            {"name": "goal", "shape": ["batch"], "dtype": "int64"},
            {"name": "image", "shape": ["batch", 10, 5, 1], "dtype": "uint8"},
        ],
        "output": {"name": "actions", "shape": ["batch", 2], "dtype": "float32"},
    }
    assert describe(written).splitlines() == [
        "  onnx: runs/it's here/policy.onnx",
        "  input  goal: int64[batch]",
        "  input  image: uint8[batch, 10, 5, 1]",
        "  output actions: float32[batch, 2]",
    ]
    command = run_command(written)
    assert "np.zeros((1,), dtype=np.int64)" in command
    assert "np.zeros((1, 10, 5, 1), dtype=np.uint8)" in command
    torchscript = run_command({**written, "format": "torchscript"})
    assert "torch.jit.load" in torchscript and "torch.zeros((1,), dtype=torch.int64)" in torchscript
    # the program is one shell word after -c, whatever quotes the path holds
    assert shlex.split(command)[:2] == ["python", "-c"] and len(shlex.split(command)) == 3


def test_the_export_command_imports_no_framework_until_it_runs():
    code = (
        "import sys; from optix_core.cli import _parser; "
        "_parser().parse_args(['export', 'run', '--format', 'onnx']); "
        "print(sorted(m for m in ('numpy', 'torch', 'tensorflow', 'jax') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
