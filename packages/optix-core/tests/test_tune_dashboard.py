"""A finished sweep's storage opened in optuna-dashboard, as the README shows it.

optuna-dashboard is not a dependency of optix; the test runs where it is
installed (``pip install optuna-dashboard``) and is skipped elsewhere.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("optuna_dashboard")

from optix_core.trials import Sweep

DASHBOARD = Path(sys.executable).with_name("optuna-dashboard")


def parabola(context):
    return -((context.params["x"] - 0.3) ** 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, deadline: float) -> dict:
    """GET ``url`` as JSON, retrying until the server answers or ``deadline`` passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_optuna_dashboard_reads_a_finished_sweep(tmp_path):
    journal = tmp_path / "study.journal"
    sweep = Sweep(
        parabola,
        {"x": ("float", 0.0, 1.0)},
        5,
        run_dir=tmp_path,
        storage=journal,
        study_name="CartPole-v1-cem",
        seed=0,
    )
    sweep.run()
    port = free_port()
    server = subprocess.Popen(
        [str(DASHBOARD), str(journal), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        summaries = get_json(f"http://127.0.0.1:{port}/api/studies", deadline)["study_summaries"]
        (summary,) = summaries
        assert summary["study_name"] == "CartPole-v1-cem"
        study = get_json(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}", deadline)
        assert len(study["trials"]) == 5
        best = max(t["values"][0] for t in study["trials"])
        assert best == pytest.approx(sweep.study.best_value)
    finally:
        server.terminate()
        server.wait(timeout=10)
