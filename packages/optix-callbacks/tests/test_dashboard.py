"""RichDashboardCallback: the panel in a real pseudo-terminal, plain lines when piped,
and a dashboard that breaks never takes the run down."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pty
import subprocess
import sys

import pytest
from rich.console import Console

from optix_callbacks import RichDashboardCallback
from optix_callbacks.dashboard import BLOCKS, _title, sparkline

TRAIN = [sys.executable, "-m", "optix_core.cli", "train", "CartPole-v1", "--algo", "cem"]


def test_the_sparkline_scales_scores_from_lowest_to_highest():
    assert sparkline([1.0, 2.0, 3.0]) == "▁▅█"
    assert sparkline([-200.0, -100.0]) == "▁█"
    assert sparkline([5.0, 5.0]) == "▄▄"
    assert sparkline([1.0, math.nan, 3.0]) == "▁ █"


def test_the_panel_shows_state_scores_progress_and_hyperparameters(short_run):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=110, color_system=None)
    loop, _ = short_run([RichDashboardCallback(refresh_rate=20, console=console)])
    panel = out.getvalue().split("╭")[-1]  # the last drawing: the run as it ended
    assert loop.scheduler.state.value in panel
    assert "toward DORMANT" in panel
    assert f"{loop.pipeline.env_steps:,}" in panel
    assert "steps/s" in panel
    line = next(row for row in panel.splitlines() if "scores" in row)
    assert sum(ch in BLOCKS for ch in line) == loop.scheduler.n_evaluations  # one per evaluation
    assert "noise_std" in panel  # the hyperparameters in force, tuned online here
    assert "moved by online tuning" in panel
    assert "since the last record" not in panel  # no relative patience asked for


def test_the_panel_shows_the_relative_patience_when_the_loop_has_one(short_run):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=110, color_system=None)
    loop, _ = short_run(
        [RichDashboardCallback(refresh_rate=20, console=console)], relative_patience=0.5
    )
    panel = out.getvalue().split("╭")[-1]
    record = loop.scheduler.record_episode
    needed = max(1, math.ceil(0.5 * record))
    expected = (
        f"{loop.episode - record} of {needed} windows since the last record (window {record})"
    )
    assert expected in panel


def test_the_panel_shows_the_longer_patience_of_an_unsolved_task(short_run):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    loop, _ = short_run(
        [RichDashboardCallback(refresh_rate=20, console=console)],
        relative_patience=0.5,
        unsolved_patience=3.0,
        solved_score=10_000.0,  # CartPole never scores that
    )
    panel = out.getvalue().split("╭")[-1]
    record = loop.scheduler.record_episode
    expected = (
        f"{loop.episode - record} of {max(1, 3 * record)} windows since the last record "
        f"(window {record}), unsolved (below 10000)"
    )
    assert expected in panel


def test_not_a_terminal_and_a_quiet_loop_get_the_plain_lines(short_run, capsys):
    console = Console(file=io.StringIO(), force_terminal=False)
    loop, _ = short_run([RichDashboardCallback(console=console)])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[loop]")]
    assert len(lines) == loop.scheduler.n_evaluations
    assert console.file.getvalue() == ""  # no panel drawn into a file


def test_a_dashboard_whose_terminal_breaks_is_disabled_and_the_run_goes_on(short_run, caplog):
    class Hangup(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")  # the terminal went away

    console = Console(file=Hangup(), force_terminal=True, width=100)
    with caplog.at_level(logging.ERROR, logger="optix"):
        _, report = short_run([RichDashboardCallback(console=console)], windows=6)
    assert report.episodes == 6 and report.best_score is not None
    reported = [r for r in caplog.records if "RichDashboardCallback failed" in r.getMessage()]
    assert len(reported) == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="refresh_rate"):
        RichDashboardCallback(refresh_rate=0)
    with pytest.raises(ValueError, match="history"):
        RichDashboardCallback(history=1)


def test_the_title_names_the_environment_with_its_arguments(tmp_path):
    config = {"env_id": "CliffWalking-v1", "algo": "dqn", "backend": "torch"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert _title(tmp_path) == "optix · CliffWalking-v1 · dqn (torch)"
    config["env_kwargs"] = {"max_episode_steps": 200}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert _title(tmp_path) == "optix · CliffWalking-v1 (max_episode_steps=200) · dqn (torch)"


def test_optix_train_dashboard_in_a_real_terminal(tmp_path):
    output = _run_in_pty(
        [*TRAIN, "--max-windows", "10", "--seed", "0", "--run-dir", str(tmp_path), "--dashboard"]
    )
    assert "optix · CartPole-v1 · cem (numpy)" in output  # the panel's title, from the run
    assert "toward DORMANT" in output
    assert any(ch in output for ch in BLOCKS[1:-1])  # a sparkline drawn
    assert "[loop] window=" in output  # the loop's lines scroll above the panel
    assert "Final eval" in output  # and the report follows it


def test_optix_train_dashboard_piped_prints_plain_lines(tmp_path):
    done = subprocess.run(
        [*TRAIN, "--max-windows", "6", "--seed", "0", "--run-dir", str(tmp_path), "--dashboard"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "[loop] window=" in done.stdout
    assert "╭" not in done.stdout and "\x1b[" not in done.stdout
    assert "toward DORMANT" not in done.stdout


def _run_in_pty(argv: list[str]) -> str:
    """Everything ``argv`` wrote to a real pseudo-terminal, as text."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdout is the terminal
        os.environ.update(COLUMNS="120", LINES="40", TERM="xterm-256color")
        os.execv(argv[0], argv)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")
