"""optix-core's wheel, installed alone into a fresh virtual environment, as `pip install optix-core` would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("torch", "tensorflow", "jax")


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build and install the wheel (pip install uv)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [uv, "build", "--package", "optix-core", "--wheel", "-o", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("optix_core-*.whl")
    env_dir = out / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), str(wheel)],
        check=True,
        capture_output=True,
    )
    return env_dir


def run(venv: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_no_framework_is_installed_or_imported(venv):
    python = venv / "bin" / "python"
    installed = run(
        venv,
        python,
        "-c",
        f"import importlib.util as u; print([m for m in {FRAMEWORKS!r} if u.find_spec(m)])",
    )
    assert installed.stdout.strip() == "[]"
    listed = run(venv, venv / "bin" / "optix", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith("cem ") for line in listed.stdout.splitlines())


def test_optix_train_cartpole_reaches_475_and_stops_by_itself(venv, tmp_path):
    result = run(venv, venv / "bin" / "optix", "train", "CartPole-v1", "--seed", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["stop_reason"].startswith("converged")
    assert report["final_eval"]["mean"] >= 475
    assert json.loads((run_dir / "config.json").read_text())["algo"] == "cem"

    # Looking at the run needs no framework; drawing it names the extra to install.
    listed = run(venv, venv / "bin" / "optix", "runs", cwd=tmp_path)
    assert listed.returncode == 0 and run_dir.name in listed.stdout
    plotted = run(venv, venv / "bin" / "optix", "plot", run_dir)
    assert plotted.returncode == 2
    assert "pip install 'optix-callbacks[plot]'" in plotted.stderr
    assert len(plotted.stderr.strip().splitlines()) == 1
