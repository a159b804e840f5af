"""Plugin discovery across distributions: the example plugin, a broken one, two in conflict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import optix_core
from optix_core import RLOptimizer, VectorBatchPipeline
from optix_core.evaluation import evaluate_policy
from optix_core.plugins import reset_registry
from optix_core.registry import provider

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "optix-example-plugin"


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


def python(site: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that sees the distributions in ``site``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=120,
    )


AGENT_PLUGIN = """
    from optix_core import AgentSpec, hookimpl

    @hookimpl
    def optix_register_agents(register):
        register(AgentSpec(name="{algo}", backend="example", action_spaces=("discrete",),
                           factory="optix_example_plugin.agent:make_agent"))
"""


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """A directory holding optix-example-plugin installed as pip would install it.

    The plugin is a test fixture, in no dependency group: the tests that need it
    install it here (without dependencies: optix-core is already in this
    environment) and put the directory on the path, rather than counting on the
    environment to hold it.
    """
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the example plugin (pip install uv)")
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [uv, "pip", "install", "-q", "--no-deps", "--target", str(site), str(EXAMPLE_PLUGIN)],
        check=True,
        capture_output=True,
    )
    return site


@pytest.fixture
def example_plugin(example_site, monkeypatch) -> Path:
    """This process sees the example plugin as installed, for one test only."""
    monkeypatch.syspath_prepend(str(example_site))
    reset_registry()
    yield example_site
    reset_registry()  # loaded lazily again after monkeypatch takes the path back


def test_the_example_plugin_is_discovered_listed_built_and_trained(example_plugin):
    spec = next(s for s in optix_core.agents() if s.name == "hill-climb")
    assert provider(spec) == "optix-example-plugin"
    listed = optix(example_plugin, "list")
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.startswith("hill-climb") and "optix-example-plugin" in line
        for line in listed.stdout.splitlines()
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

    # In one process, every later use of the registry fails the same way: it neither
    # loads again into what the failed load left behind nor lists a plugin twice.
    twice = python(
        tmp_path,
        """
        import json
        import optix_core
        from optix_core import plugins
        messages = []
        for _ in range(2):
            try:
                optix_core.agents()
            except plugins.PluginConflictError as exc:
                messages.append(str(exc))
        listed = [p.distribution for p in plugins.get_registry().plugins]
        print(json.dumps({"messages": messages, "plugins": listed}))
        """,
    )
    outcome = json.loads(twice.stdout)
    assert outcome["messages"] == 2 * [message.removeprefix("optix: error: ")]
    assert outcome["plugins"] == []


def test_optix_load_plugins_restricts_what_loads(tmp_path):
    install_fake_distribution(tmp_path, "optix-extra", AGENT_PLUGIN.format(algo="extra"))
    install_fake_distribution(tmp_path, "optix-other", AGENT_PLUGIN.format(algo="other"))
    everything = optix(tmp_path, "list").stdout
    assert {"cem", "extra", "other"} <= {line.split()[0] for line in everything.splitlines()[2:]}
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
