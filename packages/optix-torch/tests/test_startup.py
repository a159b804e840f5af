"""Start-up: a torch run must not pay for machinery it never uses."""

from __future__ import annotations

import subprocess
import sys

TRAIN_AND_SAVE = """
import sys, tempfile
from optix_core import RLOptimizer, VectorBatchPipeline, make_agent
agent = make_agent("ppo", "CartPole-v1", seed=0)
pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=2, window_size=64, seed=0)
with tempfile.TemporaryDirectory() as directory:
    RLOptimizer(agent, pipeline, checkpoint_dir=directory, max_episodes=2).run()
    agent.save_weights(directory + "/w")
    agent.load_weights(directory + "/w")
print("torch._dynamo" in sys.modules)
"""


def test_training_and_checkpoints_never_import_torch_dynamo():
    # torch's optimizers import torch._dynamo (seconds) on first use unless
    # optix_torch.base marks their methods as already shielded from compilation.
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_SAVE], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
