"""``optix runs [DIR ...]`` on real run directories, and what ``optix plot`` checks
before it needs matplotlib (drawing itself is tested in optix-callbacks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optix_core.cli import main


def train(env: str, seed: int, run_root: Path, windows: int = 3) -> Path:
    before = set(run_root.iterdir()) if run_root.exists() else set()
    argv = ["train", env, "--algo", "cem", "--max-windows", str(windows), "--seed", str(seed)]
    assert main([*argv, "--run-dir", str(run_root)]) == 0
    (run_dir,) = set(run_root.iterdir()) - before
    return run_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CartPole run, then a Pendulum run, under one directory."""
    root = tmp_path_factory.mktemp("runs")
    return root, train("CartPole-v1", 3, root), train("Pendulum-v1", 4, root)


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by run name, split on its column gaps."""
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["run", "env", "algo"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    return {line.split()[0]: line.split() for line in lines[2:]}


def test_runs_lists_every_run_with_what_it_trained_and_its_best_score(two_runs, capsys):
    root, cartpole, pendulum = two_runs
    assert main(["runs", str(root)]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert list(rows) == [cartpole.name, pendulum.name]  # oldest first
    for run_dir, env, seed in ((cartpole, "CartPole-v1", "3"), (pendulum, "Pendulum-v1", "4")):
        report = json.loads((run_dir / "report.json").read_text())
        row = rows[run_dir.name]
        assert row[1:5] == [env, "cem", "numpy", seed]
        assert row[5] == f"{report['best_score']:.4g}"
        final = report["final_eval"]
        # as the report prints it
        assert row[6:9] == [f"{final['mean']:.1f}", "±", f"{final['std']:.1f}"]
        steps = f"{report['env_steps']:,} + {report['selection_env_steps']:,}"
        assert steps in " ".join(row)
        assert " ".join(row).endswith(f"{report['final_state']}, max windows")


def test_runs_name_the_environments_arguments(tmp_path, capsys):
    """A run trained with --env-kwarg is listed with them: it is another task."""
    argv = ["train", "CartPole-v1", "--algo", "cem", "--max-windows", "1", "--seed", "0"]
    limit = ["--env-kwarg", "max_episode_steps=50"]
    assert main([*argv, *limit, "--run-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["runs", str(tmp_path)]) == 0
    (row,) = table_rows(capsys.readouterr().out).values()
    assert row[1:4] == ["CartPole-v1", "(max_episode_steps=50)", "cem"]


def test_runs_on_a_run_directory_lists_that_run(two_runs, capsys):
    _, cartpole, _ = two_runs
    assert main(["runs", str(cartpole)]) == 0
    assert list(table_rows(capsys.readouterr().out)) == [cartpole.name]


def test_runs_lists_several_folders_in_one_table(two_runs, tmp_path, capsys):
    """Runs of several folders (a suite's seeds) are named with their folder, so
    that each row says where it comes from, or by their path where the folders
    share names too."""
    root, cartpole, pendulum = two_runs
    for folder in ("seed0", "seed1", "a/seed2", "b/seed2"):
        shutil.copytree(cartpole, tmp_path / folder / cartpole.name)
    folders = [tmp_path / f for f in ("seed0", "seed1", "a/seed2", "b/seed2")]
    assert main(["runs", *map(str, folders), str(pendulum), str(root)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert sorted(rows) == sorted(
        [
            f"seed0/{cartpole.name}",
            f"seed1/{cartpole.name}",
            str(tmp_path / "a/seed2" / cartpole.name),
            str(tmp_path / "b/seed2" / cartpole.name),
            f"{root.name}/{cartpole.name}",
            f"{root.name}/{pendulum.name}",  # named twice, listed once
        ]
    )


def test_runs_says_how_each_unfinished_run_stands(two_runs, tmp_path, capsys):
    _, cartpole, _ = two_runs
    root = tmp_path / "runs"
    root.mkdir()

    def copy(name: str) -> Path:
        return Path(shutil.copytree(cartpole, root / name))

    killed = copy("a-killed")
    (killed / "report.json").unlink()
    gone = subprocess.Popen([sys.executable, "-c", ""])  # the writer's pid, no process's now
    gone.wait()
    (killed / "checkpoints" / ".lock").write_text(f"{gone.pid}\n")
    running = copy("b-running")
    (running / "report.json").unlink()
    (running / "checkpoints" / ".lock").write_text(f"{os.getpid()}\n")  # a live writer's pid
    config = json.loads((running / "config.json").read_text())
    (running / "config.json").write_text(json.dumps({**config, "max_env_steps": 1_000_000}))
    interrupted = copy("c-interrupted")
    report = json.loads((interrupted / "report.json").read_text())
    (interrupted / "report.json").write_text(json.dumps({**report, "stop_reason": "interrupted"}))
    damaged = root / "d-damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    (root / "e-not-a-run").mkdir()  # neither config, metrics, report nor checkpoints

    assert main(["runs", str(root)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"a-killed", "b-running", "c-interrupted", "d-damaged"}
    assert rows["a-killed"][-1] == "unfinished"
    assert rows["b-running"][-2:] == ["running", "(ACTIVE)"]
    assert "of 1,000,000" in " ".join(rows["b-running"]), "how far into its --max-steps"
    assert " of " not in " ".join(rows["a-killed"]), "no budget, no 'of'"
    assert rows["c-interrupted"][-1] == "interrupted"
    assert "config.json is damaged (JSONDecodeError" in " ".join(rows["d-damaged"])


def test_runs_are_listed_by_start_time(two_runs, tmp_path, capsys):
    """The time in a run's name (new_run_dir's), else when its config was written."""
    _, cartpole, _ = two_runs
    for name in ("b-run-20250101-120000", "a-run-20250102-090000-1", "c-renamed"):
        shutil.copytree(cartpole, tmp_path / name)
    between = time.mktime(time.strptime("20250101-180000", "%Y%m%d-%H%M%S"))
    os.utime(tmp_path / "c-renamed" / "config.json", (between, between))
    assert main(["runs", str(tmp_path)]) == 0
    order = list(table_rows(capsys.readouterr().out))
    assert order == ["b-run-20250101-120000", "c-renamed", "a-run-20250102-090000-1"]


@pytest.mark.parametrize(("make", "says"), [("missing", "does not exist"), ("file", "is not a")])
def test_runs_on_no_directory_is_one_line_and_exit_2(tmp_path, capsys, make, says):
    path = tmp_path / "nowhere"
    if make == "file":
        path.write_text("")
    assert main(["runs", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"optix: error: {path} {says}")


def test_runs_with_no_runs_says_so(tmp_path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"optix: no run directories under {tmp_path}\n"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_runs_imports_no_numpy_nor_framework(two_runs):
    root, _, _ = two_runs
    result = _python(
        "import sys\n"
        "from optix_core.cli import main\n"
        f"assert main(['runs', {str(root)!r}]) == 0\n"
        "heavy = ('numpy', 'matplotlib', 'torch', 'tensorflow', 'jax', 'gymnasium')\n"
        "print('IMPORTED', sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert "IMPORTED []" in result.stdout


def test_plot_without_its_renderer_names_the_extra_to_install(two_runs):
    """matplotlib hidden, as in an install of optix-core alone: one line, exit 2."""
    _, cartpole, _ = two_runs
    result = _python(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from optix_core.cli import main\n"
        f"sys.exit(main(['plot', {str(cartpole)!r}]))\n"
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "pip install 'optix-callbacks[plot]'" in result.stderr
    assert not (cartpole / "curves.png").exists()
