"""optix-callbacks: watch a run while it trains and afterwards.

``WandbCallback``, ``TensorBoardCallback`` and ``RichDashboardCallback`` are
loop callbacks (tensor-optix 1.10's names); ``optix train`` offers them as
``--wandb PROJECT``, ``--tensorboard [DIR]`` and ``--dashboard``, and ``optix
plot`` draws a finished run with this package's ``plot`` extra. Importing the
package imports none of wandb, tensorboard, rich or matplotlib: each class
loads on first access, and its library when it is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optix_core.lazy import lazy_exports

_EXPORTS = {
    "WandbCallback": ".wandb",
    "TensorBoardCallback": ".tensorboard",
    "RichDashboardCallback": ".dashboard",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from optix_callbacks.dashboard import RichDashboardCallback
    from optix_callbacks.tensorboard import TensorBoardCallback
    from optix_callbacks.wandb import WandbCallback

__all__ = ["RichDashboardCallback", "TensorBoardCallback", "WandbCallback"]
