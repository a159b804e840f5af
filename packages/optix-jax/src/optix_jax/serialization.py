"""Saving and loading Flax NNX state without pickle.

Every variable of every network (``nnx.state(module)``: parameters, batch
statistics, anything an ``nnx.Variable`` holds) goes to
``weights.safetensors``, keyed ``{network}/{path}`` with the path's parts
joined by ``/`` (``actor_critic/actor_head/out/kernel``); each
``nnx.Optimizer``'s state (its step, optax's state: Adam's moments, the
injected learning rate) to ``optimizer-{name}.safetensors`` the same way.
Paths are the attribute names of the modules, so they are the same in every
build of an architecture. Files are written from numpy through
``safetensors.numpy`` and read back the same way, which never unpickles: a
file that is not a safetensors file is refused before anything in it is used.

Loading checks every key, shape and dtype before anything is changed, so a
mismatched checkpoint leaves the agent as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from optix_core.checkpoints import CorruptCheckpointError

WEIGHTS = "weights.safetensors"
FORMAT = "optix-jax/1"
_SHOWN = 3  # problems named in one error message

# A checked restore not yet applied: (object, its new flat state) pairs.
Updates = list[tuple[Any, Any]]


class UnsafeCheckpointError(CorruptCheckpointError):
    """A checkpoint file is not a safetensors file (a pickle, a truncated write): refused unread."""


def optimizer_file(name: str) -> str:
    return f"optimizer-{name}.safetensors"


def flat_state(obj: Any) -> dict[str, Any]:
    """Every variable of an NNX object (a module, an optimizer), under its path key."""
    return {
        "/".join(str(part) for part in path): variable
        for path, variable in nnx.to_flat_state(nnx.state(obj))
    }


# ---- writing -----------------------------------------------------------------


def save_state(file: Path, objects: Mapping[str, Any], kind: str) -> None:
    """The state of each object of ``objects`` under ``{name}/``, in one safetensors file."""
    arrays = {
        f"{name}/{key}": np.array(variable.get_value(), order="C")
        for name, obj in objects.items()
        for key, variable in flat_state(obj).items()
    }
    save_file(arrays, str(file), metadata={"format": FORMAT, "kind": kind})


# ---- reading -----------------------------------------------------------------


def read_state(file: Path, objects: Mapping[str, Any], kind: str, owner: str) -> Updates:
    """The checked new state of each object of ``objects``; nothing is changed yet."""
    arrays = read_safetensors(file, kind)
    updates: Updates = []
    for name, obj in objects.items():
        prefix = f"{name}/"
        mine = flat_state(obj)
        theirs = {k[len(prefix) :]: a for k, a in arrays.items() if k.startswith(prefix)}
        problems = _compare(mine, theirs)
        if mine and not theirs:
            problems = [f"the checkpoint has no {name!r}"]
        if problems:
            raise ValueError(
                f"{owner}: the checkpoint's {name!r} does not match this agent's "
                f"({_join(problems)}) in {file}; build the agent with the same architecture"
            )
        updates.append((obj, [(key, variable, theirs[key]) for key, variable in mine.items()]))
    unknown = sorted({k.partition("/")[0] for k in arrays} - set(objects))
    if unknown:
        raise ValueError(
            f"{owner}: {file} holds state this agent does not have ({_join(unknown)}); "
            f"this agent has {', '.join(sorted(objects))}"
        )
    return updates


def apply(updates: Updates) -> None:
    """Put checked values into the objects (``read_state``'s result)."""
    for obj, values in updates:
        state = nnx.state(obj)
        flat = nnx.to_flat_state(state)
        new = {key: jnp.asarray(array) for key, _, array in values}
        replaced = [
            (path, variable.replace(new["/".join(str(p) for p in path)])) for path, variable in flat
        ]
        nnx.update(obj, nnx.from_flat_state(replaced))


def read_safetensors(file: Path, kind: str) -> dict[str, np.ndarray]:
    """Arrays of an optix-jax safetensors file, never unpickling anything."""
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: the checkpoint is incomplete")
    try:
        with safe_open(str(file), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        looks = " (it looks like a pickle)" if file.read_bytes()[:1] == b"\x80" else ""
        raise UnsafeCheckpointError(
            f"{file} is not a safetensors file{looks}; refused without loading it ({exc})"
        ) from None
    if metadata.get("format") != FORMAT or metadata.get("kind") != kind:
        raise ValueError(
            f"{file} was not written by optix-jax as {kind} (metadata {metadata or 'none'}); "
            "a checkpoint loads only into the backend that wrote it"
        )
    return arrays


def _compare(expected: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    problems = [f"{k} is missing from the checkpoint" for k in expected if k not in arrays]
    problems += [
        f"{k} is in the checkpoint but not in this agent" for k in arrays if k not in expected
    ]
    for key in (k for k in expected if k in arrays):
        value, array = expected[key].get_value(), arrays[key]
        shape = tuple(int(d) for d in np.shape(value))
        if array.shape != shape:
            problems.append(f"{key} has shape {array.shape} in the checkpoint and {shape} here")
        elif array.dtype != np.dtype(value.dtype):
            problems.append(
                f"{key} has dtype {array.dtype} in the checkpoint and {value.dtype} here"
            )
    return problems


def _join(items: Sequence[str]) -> str:
    more = len(items) - _SHOWN
    return "; ".join(items[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
