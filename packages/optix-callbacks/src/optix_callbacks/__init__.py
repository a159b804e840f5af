"""optix-callbacks: watch a run while it trains and afterwards.

``WandbCallback``, ``TensorBoardCallback`` and ``RichDashboardCallback`` are
loop callbacks (tensor-optix 1.10's names); ``optix train`` offers them as
``--wandb PROJECT``, ``--tensorboard [DIR]`` and ``--dashboard``, and ``optix
plot`` draws a finished run with this package's ``plot`` extra. Importing the
package imports none of wandb, tensorboard, rich or matplotlib: each class
loads on first access, and its library when it is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "WandbCallback": "wandb",
    "TensorBoardCallback": "tensorboard",
    "RichDashboardCallback": "dashboard",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optix_callbacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optix_callbacks.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from optix_callbacks.dashboard import RichDashboardCallback
    from optix_callbacks.tensorboard import TensorBoardCallback
    from optix_callbacks.wandb import WandbCallback

__all__ = ["RichDashboardCallback", "TensorBoardCallback", "WandbCallback"]
