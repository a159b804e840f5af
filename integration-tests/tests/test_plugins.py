"""Plugin discovery across distributions: the example plugin, a broken one, two in conflict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optix_core
from optix_core import RLOptimizer, VectorBatchPipeline
from optix_core.evaluation import evaluate_policy
from optix_core.registry import provider


def install_fake_distribution(site: Path, name: str, module_source: str) -> None:
    """Lay out an installed distribution the way pip does: a module and a
    .dist-info directory whose entry_points.txt names it in the optix group."""
    module = name.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{module}-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text(f"[optix]\n{name} = {module}\n")


def optix(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run(
        [sys.executable, "-m", "optix_core.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


AGENT_PLUGIN = """
    from optix_core import AgentSpec, hookimpl

    @hookimpl
    def optix_register_agents(register):
        register(AgentSpec(name="{algo}", backend="example", action_spaces=("discrete",),
                           factory="optix_example_plugin.agent:make_agent"))
"""


def test_the_example_plugin_is_discovered_listed_built_and_trained():
    spec = next(s for s in optix_core.agents() if s.name == "hill-climb")
    assert provider(spec) == "optix-example-plugin"
    listed = subprocess.run(
        [sys.executable, "-m", "optix_core.cli", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert any(
        line.startswith("hill-climb") and "optix-example-plugin" in line
        for line in listed.splitlines()
    )

    agent = optix_core.make_agent("hill-climb", "CartPole-v1", seed=0)
    before = evaluate_policy(agent, "CartPole-v1", episodes=10, seed=7).mean
    pipeline = VectorBatchPipeline(env_id="CartPole-v1", n_envs=4, window_size=500, seed=0)
    report = RLOptimizer(agent, pipeline, max_episodes=15).run()
    after = evaluate_policy(agent, "CartPole-v1", episodes=10, seed=7).mean
    assert report.episodes == 15 and report.best_snapshot is not None
    assert after > max(before, 100), (before, after)


def test_a_plugin_that_fails_to_import_is_reported_and_skipped(tmp_path):
    install_fake_distribution(tmp_path, "optix-broken", "raise ImportError('needs libfoo 2')")
    result = optix(tmp_path, "plugins")
    assert result.returncode == 0, result.stderr
    broken = next(p for p in json.loads(result.stdout) if p["distribution"] == "optix-broken")
    assert broken["version"] == "0.3.0"
    assert "ImportError: needs libfoo 2" in broken["error"]

    listed = optix(tmp_path, "list")
    assert listed.returncode == 0
    assert any(line.startswith("cem ") for line in listed.stdout.splitlines())
    assert "optix-broken" in listed.stderr and "needs libfoo 2" in listed.stderr

    strict = optix(tmp_path, "list", OPTIX_STRICT_PLUGINS="1")
    assert strict.returncode == 2
    assert "optix-broken" in strict.stderr and "Traceback" not in strict.stderr


def test_a_plugin_whose_hook_raises_is_isolated(tmp_path):
    install_fake_distribution(
        tmp_path,
        "optix-faulty",
        """
        from optix_core import hookimpl

        @hookimpl
        def optix_register_agents(register):
            raise RuntimeError("registry exploded")
    """,
    )
    result = optix(tmp_path, "plugins")
    faulty = next(p for p in json.loads(result.stdout) if p["distribution"] == "optix-faulty")
    assert "registry exploded" in faulty["error"]
    assert optix(tmp_path, "list").returncode == 0


def test_two_plugins_registering_the_same_agent_is_an_error_naming_both(tmp_path):
    install_fake_distribution(tmp_path, "optix-first", AGENT_PLUGIN.format(algo="twin"))
    install_fake_distribution(tmp_path, "optix-second", AGENT_PLUGIN.format(algo="twin"))
    result = optix(tmp_path, "list")
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "twin/example" in message
    assert "'optix-first'" in message and "'optix-second'" in message
    assert "Traceback" not in message


def test_optix_load_plugins_restricts_what_loads(tmp_path):
    install_fake_distribution(tmp_path, "optix-extra", AGENT_PLUGIN.format(algo="extra"))
    everything = optix(tmp_path, "list").stdout
    assert "extra" in everything and "hill-climb" in everything
    only_extra = optix(tmp_path, "list", OPTIX_LOAD_PLUGINS="optix-extra").stdout
    rows = {line.split()[0] for line in only_extra.splitlines()[2:]}
    assert rows == {"cem", "extra"}  # optix-core's own built-ins always load
    none = optix(tmp_path, "list", OPTIX_LOAD_PLUGINS="").stdout
    assert {line.split()[0] for line in none.splitlines()[2:]} == {"cem"}


def test_plugin_loading_is_lazy():
    code = (
        "import sys, optix_core; from optix_core import plugins; "
        "print(plugins.get_registry()._loaded, 'torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
