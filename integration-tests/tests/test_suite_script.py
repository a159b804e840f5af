"""benchmarks/suite.py, one row end to end at a tiny budget: the three sides run,
the result file holds what the README's table is made from, and each optix
side's learning curves are drawn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from optix_core.selection import SELECTION_SEED

ROOT = Path(__file__).resolve().parents[2]


def test_one_row_runs_end_to_end_and_writes_a_well_formed_result(tmp_path):
    out = tmp_path / "suite.json"
    script = [sys.executable, str(ROOT / "benchmarks" / "suite.py"), "--rows", "CartPole-v1:dqn"]
    tiny = ["--seeds", "0", "--budget", "1500", "--auto-cap", "2", "--eval-episodes", "3"]
    done = subprocess.run(
        [*script, *tiny, "--out", str(out), "--curves", str(tmp_path / "curves")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    runs = {run["side"]: run for run in data["runs"]}
    assert set(runs) == {"auto", "budget", "sb3"}
    for run in runs.values():
        assert run["env_id"] == "CartPole-v1" and run["algo"] == "dqn" and run["seed"] == 0
        assert run["eval_episodes"] == 3 and 8 <= run["eval_mean"] <= 500
        # the episodes that report a policy never chose it: none starts where selection's do
        reported = set(range(run["eval_seed"], run["eval_seed"] + 8))
        assert not reported & set(range(SELECTION_SEED, SELECTION_SEED + 8))
    assert runs["budget"]["stop_reason"] == "max_env_steps (1,500) reached"
    assert runs["budget"]["env_steps"] > 1500  # checkpoint selection's episodes count too
    assert runs["auto"]["env_steps"] >= runs["budget"]["env_steps"] or runs["auto"][
        "stop_reason"
    ].startswith("converged")
    (row,) = data["rows"]
    assert set(row["sides"]) == {"auto", "budget", "sb3"}
    assert set(row["targets"]) == {"auto >= budget - 1 SE", "zoo score with <= 50% of its steps"}
    assert "| CartPole-v1 | dqn | 1,500 |" in done.stdout
    for side in ("auto", "budget"):  # optix plot's PNG of each optix side
        image = tmp_path / "curves" / f"CartPole-v1-dqn-{side}.png"
        assert image.read_bytes().startswith(b"\x89PNG")
