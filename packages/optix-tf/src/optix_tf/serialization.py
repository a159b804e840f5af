"""Saving and loading Keras state without pickle.

Every variable of every network (``layer.weights``: trainable and not) goes
to ``weights.safetensors``; every variable of each Keras 3 optimizer
(``optimizer.variables``: iteration count, learning rate, slots) goes to its
own ``optimizer-{name}.safetensors``. Both are written from numpy through
``safetensors.numpy`` and read back the same way, which never unpickles: a
file that is not a safetensors file is refused before anything in it is used.

Keys are stable across two builds of the same architecture in one process or
in two (Keras variable paths are not: a second ``Sequential`` is
``sequential_1/dense_2/kernel``):

- a network's variable is ``{network}/{index}:{name}``, ``index`` its position
  in ``layer.weights`` and ``name`` its short name (``kernel``, ``bias``);
- an optimizer slot is keyed by the network variable it belongs to,
  ``{network}/{index}:{name}:{slot}`` (``actor/0:kernel:momentum``), so the
  order in which the optimizer was built (a lazy build on the first
  ``apply_gradients`` in the update's variable order, or an explicit
  ``optimizer.build``) does not matter; its other variables by their names
  (``iteration``, ``learning_rate``).

Loading checks every key, shape and dtype before assigning anything, so a
mismatched checkpoint leaves the agent as it was.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from optix_core.checkpoints import CorruptCheckpointError

WEIGHTS = "weights.safetensors"
FORMAT = "optix-tf/1"
_SHOWN = 3  # problems named in one error message

Assignments = list[tuple[Any, np.ndarray]]  # (variable, value) pairs, checked, not yet assigned


class UnsafeCheckpointError(CorruptCheckpointError):
    """A checkpoint file is not a safetensors file (a pickle, a truncated write): refused unread."""


def optimizer_file(name: str) -> str:
    return f"optimizer-{name}.safetensors"


# ---- keys ------------------------------------------------------------------


def weight_variables(modules: Mapping[str, Any]) -> dict[str, Any]:
    """Every variable of every network, under its stable key."""
    out: dict[str, Any] = {}
    for module_name, module in modules.items():
        for index, variable in enumerate(module.weights):
            out[f"{module_name}/{index}:{variable.name}"] = variable
    return out


def optimizer_variables(optimizer: Any, modules: Mapping[str, Any]) -> dict[str, Any]:
    """Every variable of a Keras 3 optimizer, under its stable key.

    A slot variable is named by Keras ``{reference.path with / as _}_{slot}``
    (``add_variable_from_reference``); it is matched to the network variable it
    was made for and keyed by that variable's stable key. Variables that match
    no network variable (``iteration``, ``learning_rate``, a slot of a variable
    outside ``modules``) keep their own name.
    """
    stable = {id(v): key for key, v in weight_variables(modules).items()}
    built_on = list(getattr(optimizer, "_trainable_variables", None) or [])
    by_prefix: dict[str, list[str]] = {}
    for variable in built_on:  # in build order: paths that collide pair up in order
        key = stable.get(id(variable))
        if key is not None:
            by_prefix.setdefault(variable.path.replace("/", "_") + "_", []).append(key)
    seen: Counter[tuple[str, str]] = Counter()
    out: dict[str, Any] = {}
    for variable in optimizer.variables:
        name = variable.name
        prefix = max(
            (p for p in by_prefix if name.startswith(p) and len(name) > len(p)),
            key=len,
            default=None,
        )
        key = name
        if prefix is not None:
            slot = name[len(prefix) :]
            k = seen[(prefix, slot)]
            seen[(prefix, slot)] += 1
            if k < len(by_prefix[prefix]):
                key = f"{by_prefix[prefix][k]}:{slot}"
        base, n = key, 1
        while key in out:  # never silently overwrite: number the repeats
            key, n = f"{base}#{n}", n + 1
        out[key] = variable
    return out


def build_optimizer(optimizer: Any, variables: Sequence[Any]) -> None:
    """Create the slots of an optimizer that has not taken a step yet, so that
    its state can be saved or loaded before the first update."""
    if not getattr(optimizer, "built", True) and len(variables):
        optimizer.build(list(variables))


# ---- writing -----------------------------------------------------------------


def save_tensors(path: Path, modules: Mapping[str, Any]) -> None:
    for name, module in modules.items():
        if not module.weights and not getattr(module, "built", True):
            raise ValueError(
                f"network {name!r} has no weights yet: build it (a keras.Input, or call it "
                "once on a batch) before saving"
            )
    _write(path / WEIGHTS, weight_variables(modules), {"kind": "weights"})


def save_optimizer(path: Path, name: str, optimizer: Any, modules: Mapping[str, Any]) -> None:
    _write(
        path / optimizer_file(name),
        optimizer_variables(optimizer, modules),
        {"kind": "optimizer", "optimizer": type(optimizer).__name__},
    )


def _write(file: Path, variables: Mapping[str, Any], metadata: dict[str, str]) -> None:
    arrays = {key: np.array(to_numpy(v), order="C") for key, v in variables.items()}
    paths = json.dumps({key: v.path for key, v in variables.items()})
    save_file(arrays, str(file), metadata={"format": FORMAT, **metadata, "paths": paths})


def to_numpy(variable: Any) -> np.ndarray:
    return np.asarray(variable.numpy())


# ---- reading -----------------------------------------------------------------


def read_tensors(path: Path, modules: Mapping[str, Any], owner: str) -> Assignments:
    """The checked values of every network variable; nothing is assigned yet."""
    file = path / WEIGHTS
    arrays, _ = read_safetensors(file, "weights")
    expected = weight_variables(modules)
    for module_name, module in modules.items():
        prefix = f"{module_name}/"
        mine = {k: v for k, v in expected.items() if k.startswith(prefix)}
        theirs = {k: a for k, a in arrays.items() if k.startswith(prefix)}
        problems = _compare(mine, theirs)
        if mine and not theirs:
            problems = [f"the checkpoint has no {module_name!r} network"]
        elif not module.weights:
            problems.insert(0, f"{module_name!r} is not built yet (no weights)")
        if problems:
            raise ValueError(
                f"{owner}: the checkpoint's {module_name!r} network does not match this "
                f"agent's ({_join(problems)}) in {file}; build the agent with the same "
                "architecture"
            )
    unknown = sorted(k for k in arrays if k.partition("/")[0] not in modules)
    if unknown:
        raise ValueError(
            f"{owner}: {file} holds networks this agent does not have "
            f"({_join(unknown)}); this agent has {', '.join(sorted(modules))}"
        )
    return [(expected[k], arrays[k]) for k in expected]


def read_optimizer(
    path: Path, name: str, optimizer: Any, modules: Mapping[str, Any], owner: str
) -> Assignments:
    """The checked values of every variable of optimizer ``name``; nothing is assigned yet."""
    file = path / optimizer_file(name)
    arrays, metadata = read_safetensors(file, "optimizer")
    saved_class, this_class = metadata.get("optimizer"), type(optimizer).__name__
    if saved_class != this_class:
        raise ValueError(
            f"{owner}: {file} holds the state of a {saved_class} optimizer; this agent's "
            f"{name!r} optimizer is a {this_class}"
        )
    expected = optimizer_variables(optimizer, modules)
    problems = _compare(expected, arrays)
    if problems:
        raise ValueError(
            f"{owner}: the checkpoint's {name!r} optimizer state does not match this agent's "
            f"({_join(problems)}) in {file}; build the agent with the same architecture "
            "and optimizer"
        )
    return [(expected[k], arrays[k]) for k in expected]


def read_safetensors(file: Path, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and metadata of an optix-tf safetensors file, never unpickling anything."""
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
            f"{file} was not written by optix-tf as {kind} (metadata {metadata or 'none'}); "
            "a checkpoint loads only into the backend that wrote it"
        )
    return arrays, metadata


def assign(assignments: Iterable[tuple[Any, np.ndarray]]) -> None:
    for variable, value in assignments:
        variable.assign(value)


def _compare(expected: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    problems = [f"{k} is missing from the checkpoint" for k in expected if k not in arrays]
    problems += [
        f"{k} is in the checkpoint but not in this agent" for k in arrays if k not in expected
    ]
    for key in (k for k in expected if k in arrays):
        variable, array = expected[key], arrays[key]
        shape = tuple(int(d) for d in variable.shape)
        if array.shape != shape:
            problems.append(f"{key} has shape {array.shape} in the checkpoint and {shape} here")
        elif _dtype(variable) is not None and array.dtype != _dtype(variable):
            problems.append(
                f"{key} has dtype {array.dtype} in the checkpoint and {_dtype(variable)} here"
            )
    return problems


def _dtype(variable: Any) -> np.dtype | None:
    try:
        return np.dtype(str(variable.dtype))
    except TypeError:  # a dtype numpy does not name (bfloat16 without ml_dtypes)
        return None


def _join(items: Sequence[str]) -> str:
    more = len(items) - _SHOWN
    return "; ".join(items[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
