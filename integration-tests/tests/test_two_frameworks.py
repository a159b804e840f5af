"""TensorFlow and PyTorch in one process (DESIGN.md's known hazard, issue 12 item 5).

With tensorflow imported first, the PyPI torch build's first optimizer loads
triton, whose LLVM collides with TensorFlow's and aborts the process. optix's
own imports handle it (``optix_core.frameworks``). Every case runs in a fresh
interpreter: an abort there is a failed test, not a dead test run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

# argv: the optix packages to import, in order, then the backends to train, in order.
TWO_FRAMEWORKS = """
import sys

from optix_core import VectorBatchPipeline
from optix_core.registry import make_agent

imports, backends = sys.argv[1].split(","), sys.argv[2].split(",")
for package in imports:
    __import__(package)
for backend in backends:
    agent = make_agent("ppo", "CartPole-v1", backend=backend, device="cpu", seed=0)
    pipeline = VectorBatchPipeline(
        env_id="CartPole-v1", n_envs=2, window_size=64, seed=0, agent=agent
    )
    try:
        agent.learn(pipeline.collect())
    finally:
        pipeline.close()
    print(f"{backend}: trained one window", flush=True)
print("loaded:", [m for m in ("optix_tf", "optix_torch") if m in sys.modules])
"""

# A TensorFlow/absl log line ("I0000 00:00:1796245355.014617   29532 port.cc:153] ...")
# or one of the start-up messages TensorFlow's libraries print.
TF_NOISE = re.compile(
    r"^[IWEF]\d{4} |absl|oneDNN|cuda|cuInit|cpu_feature_guard|rebuild TensorFlow",
    re.IGNORECASE | re.MULTILINE,
)


def run_python(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outcome(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("imports", "backends"),
    [
        # TensorFlow loads first, then torch builds its first optimizer (which loads
        # triton): the order that aborts without the guard, in either import order.
        ("optix_tf,optix_torch", "tf,torch"),
        ("optix_torch,optix_tf", "tf,torch"),
        # torch (and triton) first: the order that never collided.
        ("optix_torch,optix_tf", "torch,tf"),
    ],
)
def test_one_process_imports_and_trains_both_frameworks(imports: str, backends: str) -> None:
    result = run_python(TWO_FRAMEWORKS, imports, backends)
    assert result.returncode == 0, outcome(result)
    assert "LLVM ERROR" not in result.stderr
    trained = [f"{backend}: trained one window" for backend in backends.split(",")]
    assert result.stdout.splitlines() == [*trained, "loaded: ['optix_tf', 'optix_torch']"]


@pytest.mark.slow
def test_torch_after_a_users_own_tensorflow_import(monkeypatch) -> None:
    """tensorflow imported before anything of optix, and optix-tf not even loaded:
    too late to load triton first, optix-torch's own guard still keeps the process alive."""
    monkeypatch.setenv("OPTIX_LOAD_PLUGINS", "optix-torch")
    result = run_python("import tensorflow\n" + TWO_FRAMEWORKS, "optix_torch", "torch")
    assert result.returncode == 0, outcome(result)
    assert result.stdout.splitlines() == ["torch: trained one window", "loaded: ['optix_torch']"]


@pytest.mark.parametrize("command", ["list", "plugins", "backends"])
def test_registry_commands_import_no_framework(command: str) -> None:
    code = f"""
        import sys
        from optix_core.cli import main

        status = main([{command!r}])
        loaded = [m for m in ("torch", "tensorflow", "keras", "triton", "jax") if m in sys.modules]
        print("FRAMEWORKS", loaded, file=sys.stderr)
        sys.exit(status)
    """
    result = run_python(code, timeout=120)
    assert result.returncode == 0, outcome(result)
    assert "FRAMEWORKS []" in result.stderr, outcome(result)


def optix_train_tf(*args: str) -> subprocess.CompletedProcess:
    return run_python(
        "import sys; from optix_core.cli import main; sys.exit(main(sys.argv[1:]))",
        "train",
        "CartPole-v1",
        "--backend",
        "tf",
        "--max-windows",
        "2",
        "--seed",
        "0",
        *args,
    )


@pytest.mark.slow
def test_optix_train_tf_prints_no_tensorflow_logs(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    result = optix_train_tf("--run-dir", str(tmp_path))
    assert result.returncode == 0, outcome(result)
    before_training = result.stdout.split("[loop]")[0].splitlines()
    assert all(line.startswith("optix: ") for line in before_training), outcome(result)
    assert "optix: training ppo (tf) on CartPole-v1" in result.stdout, outcome(result)
    for stream in (result.stdout, result.stderr):
        assert TF_NOISE.search(stream) is None, outcome(result)


@pytest.mark.slow
def test_optix_train_tf_verbose_leaves_tensorflow_logs_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    result = optix_train_tf("--run-dir", str(tmp_path), "--verbose")
    assert result.returncode == 0, outcome(result)
    # TensorFlow logs at start-up on every machine (oneDNN, CUDA or CPU features).
    assert TF_NOISE.search(result.stderr) is not None, outcome(result)


KERAS_ON_JAX = """
import sys

import optix_tf

if sys.argv[1] == "user-imports-keras":
    import keras

    assert keras.backend.backend() == "jax"
try:
    from optix_tf import TFPPOAgent
except ImportError as exc:
    print(exc)
    print("tensorflow imported:", "tensorflow" in sys.modules)
else:
    raise SystemExit("optix-tf loaded on Keras's jax backend")
"""


def test_optix_tf_refuses_keras_backend_variable_naming_another(monkeypatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    result = run_python(KERAS_ON_JAX, "-", timeout=120)
    assert result.returncode == 0, outcome(result)
    assert result.stdout.splitlines() == [
        "optix-tf runs Keras 3 on TensorFlow, but KERAS_BACKEND='jax': "
        "set KERAS_BACKEND=tensorflow, or unset it",
        "tensorflow imported: False",
    ]


def test_optix_tf_refuses_keras_already_on_another_backend(tmp_path, monkeypatch) -> None:
    """keras.json picks jax and the user imported keras first: too late to choose."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    result = run_python(KERAS_ON_JAX, "user-imports-keras", timeout=300)
    assert result.returncode == 0, outcome(result)
    assert "already imported on the 'jax' backend (~/.keras/keras.json)" in result.stdout
    assert "set KERAS_BACKEND=tensorflow before anything imports keras" in result.stdout


@pytest.mark.slow
def test_optix_tf_sets_the_tensorflow_backend_when_keras_json_names_another(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    result = run_python(
        "from optix_tf import TFPPOAgent\nimport keras\n"
        "print(keras.backend.backend(), __import__('os').environ['KERAS_BACKEND'])",
        timeout=300,
    )
    assert result.returncode == 0, outcome(result)
    assert result.stdout.splitlines()[-1] == "tensorflow tensorflow"
