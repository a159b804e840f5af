"""``optix export``: an agent's deterministic policy as a file that runs without optix.

The exporter writes what ``agent.policy_module()`` returns (observations →
the environment's deterministic actions, every preprocessing step inside:
uint8 images are scaled, Discrete indices one-hot encoded by the model) as

- ONNX, through ``torch.onnx.export``'s ``torch.export``-based exporter (the
  one torch ≥ 2.9 recommends and defaults to; it needs the ``onnx`` and
  ``onnxscript`` packages, optix-torch's ``onnx`` extra; the older
  TorchScript-based exporter is deprecated and needs ``onnx`` too), or
- TorchScript, through ``torch.jit.trace`` (plain torch, nothing extra).

Both take one input per observation array: ``obs`` for a Box or Discrete
space, one per key of a Dict space in sorted key order, named after its key,
each with a dynamic first (batch) axis and in the dtype the agent's ``act``
feeds its network (float32 for floating Box, uint8 images as uint8, int64
Discrete indices). The output, ``actions``, is the batch of environment
actions. The export is made on the CPU from a copy of the policy (the
agent's own networks are left as they were), through the plain path rather
than ``optix_torch.accel``'s, and written atomically (a temporary file, then
a rename), so an interrupted export never leaves half a model behind.

A trace turns Python numbers into constants. A policy that takes its batch
size from ``len(tensor)`` rather than ``tensor.shape[0]`` is frozen to the
example's batch; both formats are checked for that after export and refused
with the reason, rather than written with a batch axis that only looks free.

This module is optix-torch's ``BackendSpec.export``: ``optix export`` calls
``export_policy`` and turns the ``ValueError`` it raises into a one-line error.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from optix_torch.accel import ENV_SWITCH as ACCEL_SWITCH
from optix_torch.policies import observations as O

FORMATS = ("onnx", "torchscript")
OUTPUT = "actions"
BATCH = "batch"
# Rows of the example batch a model is traced with, and of the batch that then
# checks its batch axis stayed free (they must differ, and export specializes 0 and 1).
TRACE_ROWS, CHECK_ROWS = 2, 3
ONNX_PACKAGES = ("onnx", "onnxscript")
ONNX_HINT = "pip install 'optix-torch[onnx]'"


def export_policy(
    agent: Any, path: str | os.PathLike[str], format: str, observation_space: gym.Space
) -> dict[str, Any]:
    """Write ``agent``'s deterministic policy to ``path`` in ``format``.

    Returns what was written: ``path``, ``format``, ``inputs`` (a list of
    ``{"name", "shape", "dtype"}`` with ``"batch"`` as the first axis) and
    ``output`` (the same for ``actions``). Raises ``ValueError`` with a
    one-line reason for an unknown format, an agent without
    ``policy_module()``, missing ONNX packages (these before any work), or a
    policy the exporter cannot turn into a graph with a free batch axis.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: choose one of {', '.join(FORMATS)}")
    policy = _policy_module(agent)
    if format == "onnx":
        _require_onnx()
    names = input_names(observation_space)
    module = _deployable(policy, names if isinstance(observation_space, gym.spaces.Dict) else None)
    example = example_inputs(observation_space, TRACE_ROWS)
    with torch.no_grad(), _plain_path():
        actions = module(*example)
    writer = _write_onnx if format == "onnx" else _write_torchscript
    with _atomic_path(Path(path)) as tmp:
        writer(module, example, names, tmp, observation_space)
    return {
        "path": str(path),
        "format": format,
        "inputs": [_describe(name, t) for name, t in zip(names, example, strict=True)],
        "output": _describe(OUTPUT, actions),
    }


class PositionalPolicy(nn.Module):
    """The policy with one positional tensor per observation array.

    Exported graphs take flat, named tensors; a Dict observation is rebuilt
    from them here (``keys`` in sorted order), so the policy module itself
    stays the one the agent acts with.
    """

    def __init__(self, policy: nn.Module, keys: list[str] | None) -> None:
        super().__init__()
        self.policy, self.keys = policy, keys

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.keys is None:
            return self.policy(inputs[0])
        return self.policy(dict(zip(self.keys, inputs, strict=True)))


def input_names(space: gym.Space) -> list[str]:
    """``["obs"]``, or a Dict space's keys, sorted: the exported model's inputs in order."""
    if isinstance(space, gym.spaces.Dict):
        return sorted(space.spaces)
    return ["obs"]


def example_inputs(space: gym.Space, rows: int) -> tuple[torch.Tensor, ...]:
    """``rows`` sampled observations as the agent's ``act`` converts them, one
    tensor per input of the exported model, in ``input_names`` order."""
    batch = O.probe_batch(space, torch.device("cpu"), n=rows)
    if isinstance(batch, dict):
        return tuple(batch[name] for name in input_names(space))
    return (batch,)


def _policy_module(agent: Any) -> nn.Module:
    """The agent's deterministic policy, or a ValueError naming its algorithm."""
    make = getattr(agent, "policy_module", None)
    if make is None:
        name = getattr(agent, "algorithm", None) or type(agent).__name__
        raise ValueError(
            f"{name} cannot be exported yet: its agent ({type(agent).__name__}) has no "
            "policy_module() giving its deterministic policy as a torch module"
        )
    return make()


def _deployable(policy: nn.Module, keys: list[str] | None) -> nn.Module:
    """A frozen CPU copy in eval mode: exporting never moves, retrains or
    unfreezes the agent's own networks, and the traced model records no gradients."""
    module = copy.deepcopy(PositionalPolicy(policy, keys)).to("cpu").eval()
    return module.requires_grad_(False)


def _require_onnx() -> None:
    """torch.onnx imports onnxscript (and with it onnx) only once it runs: name
    what to install before any work rather than deep inside a traceback."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"ONNX export needs {' and '.join(missing)}: {ONNX_HINT}")


def _write_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    space: gym.Space,
) -> None:
    batch = torch.export.Dim(BATCH)
    with _quiet(), _plain_path():
        try:
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=names,
                output_names=[OUTPUT],
                # forward(*inputs) has one argument: the tuple of every input
                dynamic_shapes={"inputs": tuple({0: batch} for _ in example)},
                external_data=False,  # one self-contained file
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter's many failure types: one line, and the cause
            raise ValueError(f"torch.onnx could not export the policy: {_first_line(exc)}") from exc
    _check_onnx_batch_axis(path)


def _check_onnx_batch_axis(path: Path) -> None:
    """When ``torch.export`` finds the batch size specialized, torch.onnx falls
    back to a graph of fixed shapes without saying so; refuse that graph."""
    import onnx

    graph = onnx.load(str(path)).graph
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_param:
            raise ValueError(
                _frozen_batch(f"{value.name} has a fixed batch of {dims[0].dim_value}")
            )


def _write_torchscript(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    names: list[str],
    path: Path,
    space: gym.Space,
) -> None:
    with _quiet(), _plain_path(), torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
        _check_traced_batch_axis(module, traced, space)
    traced.save(str(path))


def _check_traced_batch_axis(
    module: nn.Module, traced: torch.jit.ScriptModule, space: gym.Space
) -> None:
    """Run a batch of another size through the module and its trace: a trace
    frozen to the example's batch fails or disagrees."""
    other = example_inputs(space, CHECK_ROWS)
    expected = module(*other)
    try:
        got = traced(*other)
    except RuntimeError as exc:
        raise ValueError(_frozen_batch(_first_line(exc))) from exc
    same = got.shape == expected.shape and torch.allclose(
        got.double(), expected.double(), atol=1e-5, rtol=1e-5
    )
    if not same:
        raise ValueError(_frozen_batch(f"a batch of {CHECK_ROWS} gives other actions"))


def _frozen_batch(symptom: str) -> str:
    return (
        f"the exported policy's batch size is frozen to the example's ({symptom}): the "
        "policy module must take batch sizes from tensor.shape[0], never len(tensor)"
    )


def _describe(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [BATCH, *tensor.shape[1:]],
        "dtype": str(tensor.dtype).removeprefix("torch."),
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it once written and fsynced;
    removed instead when the export fails. The writer creates the file, so it
    gets the usual permissions (mkstemp's would be owner-only)."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _plain_path() -> Iterator[None]:
    """Trace the plain path, not ``optix_torch.accel``'s: a deployed model should be
    ordinary operators, and the accelerator's choices by tensor size (tanh as a
    sigmoid from a size up) would pin the exported graph's batch axis."""
    before = os.environ.get(ACCEL_SWITCH)
    os.environ[ACCEL_SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ACCEL_SWITCH, None)
        else:
            os.environ[ACCEL_SWITCH] = before


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' deprecation notices, tracer chatter and notes about optional
    operator sets (torchvision's) concern torch, not the policy being exported."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
