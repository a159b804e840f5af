"""Saving and loading torch state without ever unpickling code.

Module weights go to safetensors. Optimizer state (nested dicts of tensors and
numbers) goes through ``torch.save`` and comes back only through
``torch.load(weights_only=True)``, which refuses any pickle that would run
code. Generator states are byte tensors in the same safetensors file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "weights.safetensors"


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file carries something other than plain tensors and numbers."""


def save_tensors(
    path: Path, modules: dict[str, nn.Module], generators: dict[str, torch.Generator]
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous()
    for name, generator in generators.items():
        tensors[f"__generator__.{name}"] = generator.get_state()
    save_file(tensors, str(path / WEIGHTS))


def load_tensors(
    path: Path, modules: dict[str, nn.Module], generators: dict[str, torch.Generator], owner: str
) -> None:
    tensors = load_file(str(path / WEIGHTS), device="cpu")
    for name, module in modules.items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{owner}: the checkpoint's {name!r} network does not match this agent's "
                f"({str(exc).splitlines()[0]}); build the agent with the same architecture"
            ) from None
    for name, generator in generators.items():
        key = f"__generator__.{name}"
        if key in tensors:
            generator.set_state(tensors[key])


def save_optimizer(path: Path, name: str, optimizer: torch.optim.Optimizer) -> None:
    torch.save(optimizer.state_dict(), path / f"optimizer-{name}.pt")


def load_optimizer(
    path: Path, name: str, optimizer: torch.optim.Optimizer, device: torch.device
) -> None:
    file = path / f"optimizer-{name}.pt"
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{file} holds more than tensors and numbers; refused without loading it ({exc})"
        ) from None
    optimizer.load_state_dict(state)
