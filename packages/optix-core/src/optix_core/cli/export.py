"""``optix export RUN --format onnx|torchscript``: a run's policy as a plain model.

The run's best checkpoint (or ``--checkpoint latest`` or a snapshot
directory) is loaded into the agent its config describes, on the CPU, and
the deterministic policy is written as a model that runs without optix:
ONNX for onnxruntime and other runtimes, TorchScript for ``torch.jit.load``.
optix-core imports no framework: the backend that trained the run writes
the model, through its ``BackendSpec.export`` (optix-torch registers one).
Like ``optix eval`` it only reads the run, so a run that is still training
can be exported; the default output is ``RUN/policy.onnx`` or
``RUN/policy.pt``.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optix_core import registry
from optix_core.cli.args import (
    add_checkpoint_arg,
    add_run_arg,
    build_agent,
    checkpoint_source,
    load_run,
    restore_checkpoint,
)
from optix_core.cli.errors import UsageError, usage_errors

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_NAME = "policy"
# Exports run on the CPU: the file then runs anywhere, and no GPU is needed to write it.
EXPORT_DEVICE = "cpu"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="write a run's deterministic policy as an ONNX or TorchScript model"
    )
    add_run_arg(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="the model's format")
    add_checkpoint_arg(p)
    p.add_argument(
        "--output",
        metavar="FILE",
        help="where to write it (default: RUN/policy.onnx, or RUN/policy.pt for torchscript)",
    )
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    run_dir, config = load_run(args.run)
    reference = exporter_reference(config.backend)
    output = output_path(args.output, run_dir, args.format)
    source = checkpoint_source(run_dir, args.checkpoint)
    exporter = load_exporter(config.backend, reference)  # the first import of a framework
    agent = build_agent(
        config.algo,
        config.env_id,
        config.backend,
        config.hyperparams,
        EXPORT_DEVICE,
        config.seed,
        config.network,
        config.env_kwargs,
    )
    try:
        manifest = restore_checkpoint(agent, run_dir, source)
        with usage_errors(registry.RegistryError):
            observation_space, _ = registry.env_spaces(config.env_id, config.env_kwargs)
        with usage_errors(ValueError):
            written = exporter(agent, output, args.format, observation_space)
    finally:
        agent.teardown()
    print(
        f"optix: exported {config.env_id} {config.algo} ({config.backend}) "
        f"{manifest['snapshot_id']} (window {manifest['episode_id']})"
    )
    print(describe(written))
    print(f"run it without optix:\n  {run_command(written)}")
    return 0


def exporter_reference(backend: str) -> str:
    """The backend's ``"module:callable"`` exporter, or a UsageError saying why
    there is none; imports nothing."""
    spec = next((s for s in registry.backends() if s.name == backend), None)
    if spec is None:
        raise UsageError(
            f"the run's {backend!r} backend has no exporter: no installed plugin registers "
            f"a {backend!r} BackendSpec (optix backends lists those installed)"
        )
    if spec.export is None:
        raise UsageError(
            f"the {backend} backend ({spec.distribution}) has no exporter: optix export "
            "needs a backend whose BackendSpec names one, as optix-torch's does"
        )
    return spec.export


def load_exporter(backend: str, reference: str) -> Callable[..., dict[str, Any]]:
    """Import the exporter (and with it the framework), or say why it cannot be."""
    from optix_core.specs import load_object

    try:
        return load_object(reference)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(
            f"the {backend} backend's exporter {reference} failed to load: {exc}"
        ) from None


def output_path(given: str | None, run_dir: Path, format: str) -> Path:
    """``--output``, or ``RUN/policy.<suffix>``, checked to be a writable file's place."""
    path = Path(given) if given else run_dir / (DEFAULT_NAME + SUFFIXES[format])
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: directory {path.parent} does not exist")
    return path


def describe(written: dict[str, Any]) -> str:
    """What was written: the file, its format, each input and the output."""
    lines = [f"  {written['format']}: {written['path']}"]
    lines += [f"  input  {_signature(spec)}" for spec in written["inputs"]]
    lines.append(f"  output {_signature(written['output'])}")
    return "\n".join(lines)


def run_command(written: dict[str, Any]) -> str:
    """A shell command that runs the model on one observation of zeros, without optix."""
    path, inputs = json.dumps(str(written["path"])), written["inputs"]
    if written["format"] == "onnx":
        feed = ", ".join(f"{json.dumps(spec['name'])}: {_zeros('np', spec)}" for spec in inputs)
        output = json.dumps(written["output"]["name"])
        code = (
            f"import numpy as np, onnxruntime as ort; s = ort.InferenceSession({path}); "
            f"print(s.run([{output}], {{{feed}}})[0])"
        )
    else:
        args = ", ".join(_zeros("torch", spec) for spec in inputs)
        code = f"import torch; m = torch.jit.load({path}); print(m({args}))"
    return f"python -c {shlex.quote(code)}"


def _signature(spec: dict[str, Any]) -> str:
    shape = ", ".join(str(d) for d in spec["shape"])
    return f"{spec['name']}: {spec['dtype']}[{shape}]"


def _zeros(module: str, spec: dict[str, Any]) -> str:
    """``np.zeros((1, 4), np.float32)``: one observation of ``spec``'s shape and dtype."""
    shape = (1, *spec["shape"][1:])
    return f"{module}.zeros({shape!r}, dtype={module}.{spec['dtype']})"
